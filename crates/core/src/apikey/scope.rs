//! API-key scopes: what a key may do, as a closed set of permission groups (R64).
//!
//! The groups mirror Upbit's API-key permission groups (exchange-auth.md §1.6): view assets,
//! view / place orders, view / make withdrawals, view / make deposits. Binance's coarser flags
//! (`enableReading`, `enableSpotAndMarginTrading`, `enableWithdrawals`, §2.5) map onto them.
//!
//! Invariants:
//! * A [`ScopeSet`] can only hold known scopes: parsing refuses unknown names and duplicates,
//!   and [`ScopeSet::from_bits`] refuses unknown bits, so a typo in a request or a corrupt row
//!   can never be read as "some permission".
//! * New keys are read-only unless more is asked for ([`ScopeSet::read_only_default`]):
//!   trading and withdrawal are off by default (R64; Binance: "by default, an API key cannot
//!   TRADE").
//! * Names are stable `snake_case` strings; they appear in configuration, API bodies and the
//!   audit log and must never be renamed.

use std::fmt;
use std::str::FromStr;

use serde::de::{SeqAccess, Visitor};
use serde::ser::SerializeSeq;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// One permission group.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Scope {
    /// Read balances (Upbit 자산조회, `GET /v1/accounts`; Binance `GET /api/v3/account`).
    ViewAssets,
    /// Read orders and trades (Upbit 주문조회).
    ViewOrders,
    /// Place and cancel orders (Upbit 주문하기; Binance "Spot & Margin Trading").
    PlaceOrders,
    /// Read withdrawals, withdrawal addresses and limits (Upbit 출금조회).
    ViewWithdrawals,
    /// Request and cancel withdrawals (Upbit 출금하기). Needs an IP allowlist and starts locked.
    Withdraw,
    /// Read deposits and deposit addresses (Upbit 입금조회).
    ViewDeposits,
    /// Create deposit addresses and KRW deposits (Upbit 입금하기).
    Deposit,
}

impl Scope {
    /// Every scope, in canonical order (the order of [`ScopeSet`] iteration and serialisation).
    pub const ALL: [Scope; 7] = [
        Scope::ViewAssets,
        Scope::ViewOrders,
        Scope::PlaceOrders,
        Scope::ViewWithdrawals,
        Scope::Withdraw,
        Scope::ViewDeposits,
        Scope::Deposit,
    ];

    /// The stable configuration / API name.
    pub const fn name(self) -> &'static str {
        match self {
            Scope::ViewAssets => "view_assets",
            Scope::ViewOrders => "view_orders",
            Scope::PlaceOrders => "place_orders",
            Scope::ViewWithdrawals => "view_withdrawals",
            Scope::Withdraw => "withdraw",
            Scope::ViewDeposits => "view_deposits",
            Scope::Deposit => "deposit",
        }
    }

    /// The scope called `name` (exact, case-sensitive match).
    pub fn from_name(name: &str) -> Option<Scope> {
        Scope::ALL.into_iter().find(|s| s.name() == name)
    }

    /// True for the read-only scopes.
    pub const fn is_view(self) -> bool {
        matches!(self, Scope::ViewAssets | Scope::ViewOrders | Scope::ViewWithdrawals | Scope::ViewDeposits)
    }

    const fn bit(self) -> u8 {
        1 << (self as u8)
    }
}

impl fmt::Display for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Scope {
    type Err = ScopeError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Scope::from_name(s).ok_or_else(|| ScopeError::Unknown(shorten(s)))
    }
}

impl Serialize for Scope {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.name())
    }
}

impl<'de> Deserialize<'de> for Scope {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// Why a scope name or list was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ScopeError {
    /// Not one of the names of [`Scope::ALL`] (shown shortened to 40 characters).
    #[error("unknown scope {0:?}")]
    Unknown(String),
    /// The same scope was listed twice: refused so that a client bug is noticed.
    #[error("scope {0} listed twice")]
    Duplicate(Scope),
    /// A stored bit pattern has bits no scope uses.
    #[error("invalid scope bits {0:#04x}")]
    InvalidBits(u8),
}

fn shorten(s: &str) -> String {
    s.chars().take(40).collect()
}

/// A set of scopes (a 7-bit set). Serialises as a list of names in canonical order.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct ScopeSet(u8);

impl ScopeSet {
    /// No scope at all.
    pub const EMPTY: ScopeSet = ScopeSet(0);

    const MASK: u8 = (1 << Scope::ALL.len()) - 1;

    /// What a new key gets when nothing else is asked for: every `view_*` scope, nothing
    /// that changes state (R64).
    pub const fn read_only_default() -> Self {
        ScopeSet::EMPTY
            .with(Scope::ViewAssets)
            .with(Scope::ViewOrders)
            .with(Scope::ViewWithdrawals)
            .with(Scope::ViewDeposits)
    }

    /// Every scope.
    pub const fn all() -> Self {
        ScopeSet(Self::MASK)
    }

    /// This set plus `s`.
    #[must_use]
    pub const fn with(self, s: Scope) -> Self {
        ScopeSet(self.0 | s.bit())
    }

    /// This set without `s`.
    #[must_use]
    pub const fn without(self, s: Scope) -> Self {
        ScopeSet(self.0 & !s.bit())
    }

    /// Adds `s`.
    pub fn insert(&mut self, s: Scope) {
        self.0 |= s.bit();
    }

    /// Removes `s`.
    pub fn remove(&mut self, s: Scope) {
        self.0 &= !s.bit();
    }

    /// Whether `s` is in the set.
    pub const fn contains(self, s: Scope) -> bool {
        self.0 & s.bit() != 0
    }

    /// Whether every scope of `other` is in this set.
    pub const fn is_superset_of(self, other: ScopeSet) -> bool {
        other.0 & !self.0 == 0
    }

    /// The scopes in either set.
    #[must_use]
    pub const fn union(self, other: ScopeSet) -> Self {
        ScopeSet(self.0 | other.0)
    }

    /// The scopes of this set that `other` lacks (what a change would add).
    #[must_use]
    pub const fn difference(self, other: ScopeSet) -> Self {
        ScopeSet(self.0 & !other.0)
    }

    /// Whether the set is empty.
    pub const fn is_empty(self) -> bool {
        self.0 == 0
    }

    /// Number of scopes.
    pub const fn len(self) -> usize {
        self.0.count_ones() as usize
    }

    /// Whether the key may place or cancel orders.
    pub const fn has_trading(self) -> bool {
        self.contains(Scope::PlaceOrders)
    }

    /// Whether the key may request withdrawals.
    pub const fn has_withdraw(self) -> bool {
        self.contains(Scope::Withdraw)
    }

    /// Whether every scope is a `view_*` scope.
    pub const fn is_read_only(self) -> bool {
        self.0 & !Self::read_only_default().0 == 0
    }

    /// The scopes, in canonical order.
    pub fn iter(self) -> impl Iterator<Item = Scope> {
        Scope::ALL.into_iter().filter(move |s| self.contains(*s))
    }

    /// Parses a list of names; refuses unknown names and duplicates.
    pub fn parse_names<I, S>(names: I) -> Result<Self, ScopeError>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        let mut set = ScopeSet::EMPTY;
        for name in names {
            let s: Scope = name.as_ref().parse()?;
            if set.contains(s) {
                return Err(ScopeError::Duplicate(s));
            }
            set.insert(s);
        }
        Ok(set)
    }

    /// The compact storage form (bit `i` is `Scope::ALL[i]`).
    pub const fn bits(self) -> u8 {
        self.0
    }

    /// Rebuilds a set from its storage form; refuses unknown bits.
    pub const fn from_bits(bits: u8) -> Result<Self, ScopeError> {
        if bits & !Self::MASK != 0 {
            return Err(ScopeError::InvalidBits(bits));
        }
        Ok(ScopeSet(bits))
    }
}

impl FromIterator<Scope> for ScopeSet {
    fn from_iter<T: IntoIterator<Item = Scope>>(iter: T) -> Self {
        iter.into_iter().fold(ScopeSet::EMPTY, ScopeSet::with)
    }
}

impl fmt::Debug for ScopeSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_set().entries(self.iter().map(Scope::name)).finish()
    }
}

impl Serialize for ScopeSet {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut seq = s.serialize_seq(Some(self.len()))?;
        for scope in self.iter() {
            seq.serialize_element(scope.name())?;
        }
        seq.end()
    }
}

impl<'de> Deserialize<'de> for ScopeSet {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = ScopeSet;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a list of scope names")
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<ScopeSet, A::Error> {
                let mut set = ScopeSet::EMPTY;
                // At most one element per scope plus the first duplicate: bounded work.
                while let Some(name) = seq.next_element::<std::borrow::Cow<'de, str>>()? {
                    let s: Scope = name.parse().map_err(serde::de::Error::custom)?;
                    if set.contains(s) {
                        return Err(serde::de::Error::custom(ScopeError::Duplicate(s)));
                    }
                    set.insert(s);
                }
                Ok(set)
            }
        }
        d.deserialize_seq(V)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_stable_and_round_trip() {
        let names: Vec<_> = Scope::ALL.iter().map(|s| s.name()).collect();
        assert_eq!(
            names,
            ["view_assets", "view_orders", "place_orders", "view_withdrawals", "withdraw", "view_deposits", "deposit"]
        );
        for s in Scope::ALL {
            assert_eq!(s.name().parse::<Scope>(), Ok(s));
        }
        assert!("Withdraw".parse::<Scope>().is_err());
        assert!("withdraw ".parse::<Scope>().is_err());
        assert!("".parse::<Scope>().is_err());
    }

    #[test]
    fn default_is_read_only() {
        let d = ScopeSet::read_only_default();
        assert!(d.is_read_only());
        assert!(!d.has_trading());
        assert!(!d.has_withdraw());
        assert!(!d.contains(Scope::Deposit));
        assert_eq!(d.len(), 4);
        assert!(d.iter().all(Scope::is_view));
        assert!(!ScopeSet::all().is_read_only());
        assert!(ScopeSet::EMPTY.is_read_only());
    }

    #[test]
    fn set_algebra() {
        let a = ScopeSet::EMPTY.with(Scope::ViewAssets).with(Scope::Withdraw);
        assert!(a.has_withdraw());
        assert!(a.is_superset_of(ScopeSet::EMPTY.with(Scope::Withdraw)));
        assert!(!a.is_superset_of(ScopeSet::read_only_default()));
        assert_eq!(a.difference(ScopeSet::read_only_default()), ScopeSet::EMPTY.with(Scope::Withdraw));
        assert_eq!(a.without(Scope::Withdraw), ScopeSet::EMPTY.with(Scope::ViewAssets));
        let mut b = a;
        b.remove(Scope::ViewAssets);
        b.insert(Scope::PlaceOrders);
        assert!(b.has_trading());
        assert_eq!(b.union(a).len(), 3);
        assert_eq!(Scope::ALL.into_iter().collect::<ScopeSet>(), ScopeSet::all());
    }

    #[test]
    fn serde_is_a_list_of_names_and_refuses_unknown_or_duplicate() {
        let s = ScopeSet::EMPTY.with(Scope::Withdraw).with(Scope::ViewAssets);
        let json = serde_json::to_string(&s).unwrap_or_default();
        assert_eq!(json, r#"["view_assets","withdraw"]"#);
        let back: Result<ScopeSet, _> = serde_json::from_str(&json);
        assert_eq!(back.ok(), Some(s));
        assert!(serde_json::from_str::<ScopeSet>(r#"["view_assets","admin"]"#).is_err());
        assert!(serde_json::from_str::<ScopeSet>(r#"["withdraw","withdraw"]"#).is_err());
        assert!(serde_json::from_str::<ScopeSet>(r#""withdraw""#).is_err());
        assert_eq!(serde_json::from_str::<ScopeSet>("[]").ok(), Some(ScopeSet::EMPTY));
    }

    #[test]
    fn parse_names_and_bits() {
        assert_eq!(
            ScopeSet::parse_names(["view_orders", "place_orders"]),
            Ok(ScopeSet::EMPTY.with(Scope::ViewOrders).with(Scope::PlaceOrders))
        );
        assert_eq!(ScopeSet::parse_names(["nope"]), Err(ScopeError::Unknown("nope".into())));
        assert_eq!(ScopeSet::parse_names(["deposit", "deposit"]), Err(ScopeError::Duplicate(Scope::Deposit)));
        let long = "x".repeat(1000);
        let Err(ScopeError::Unknown(shown)) = ScopeSet::parse_names([long.as_str()]) else { unreachable!() };
        assert_eq!(shown.len(), 40);
        for bits in 0..=0x7f {
            assert_eq!(ScopeSet::from_bits(bits).map(ScopeSet::bits), Ok(bits));
        }
        assert_eq!(ScopeSet::from_bits(0x80), Err(ScopeError::InvalidBits(0x80)));
    }
}
