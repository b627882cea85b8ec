//! Per-key IP allowlists (R64, R69).
//!
//! A key may list up to [`MAX_ALLOWLIST_ENTRIES`] networks (Upbit: "API Key 당 최대 10개의
//! IP"), IPv4 or IPv6. A request is accepted only from a client address inside one of them;
//! the client address is the true one ([`super::proxy::TrustedProxies`], R19), never a header
//! an untrusted peer sent. The attack this stops: a stolen key used from the thief's network.
//!
//! Rules, all applied when an entry is parsed:
//! * An entry is `address` (meaning `/32` or `/128`) or `address/prefix`, at most 64 bytes.
//!   Addresses use the strict `std` grammar: no leading zeros (`010.0.0.1` is refused, since
//!   some parsers read it as octal), no zone ids, no surrounding spaces.
//! * Host bits are cleared: `10.0.0.5/24` is stored and shown as `10.0.0.0/24`. The
//!   normalised list is what the API returns, so the owner sees exactly what is allowed.
//! * IPv4-mapped IPv6 entries (`::ffff:1.2.3.4/128`) become IPv4 (`1.2.3.4/32`); a mapped
//!   prefix shorter than /96 is refused (it would mix address families).
//! * Networks broader than [`MIN_PREFIX_V4`] / [`MIN_PREFIX_V6`] are refused: `0.0.0.0/0`
//!   would satisfy "withdraw needs an allowlist" while restricting nothing. The unspecified
//!   addresses (`0.0.0.0`, `::`) are refused.
//! * Duplicates (after normalisation) collapse; the list is kept sorted.
//!
//! Evaluation ([`IpAllowlist::permits`]): an **empty** list means "no IP restriction" (what
//! read-only keys usually have), but an **unknown** client address is always refused (fail
//! closed), whatever the list. Client addresses are compared in canonical form
//! ([`IpAddr::to_canonical`]), so `::ffff:1.2.3.4` matches `1.2.3.4/32`.

use std::fmt;
use std::net::IpAddr;

use ipnet::IpNet;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Most entries per key.
pub const MAX_ALLOWLIST_ENTRIES: usize = 10;
/// Shortest accepted IPv4 prefix.
pub const MIN_PREFIX_V4: u8 = 16;
/// Shortest accepted IPv6 prefix.
pub const MIN_PREFIX_V6: u8 = 48;
/// Longest accepted entry text.
const MAX_ENTRY_LEN: usize = 64;

/// Why an allowlist was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AllowlistError {
    /// More than [`MAX_ALLOWLIST_ENTRIES`] entries.
    #[error("at most {MAX_ALLOWLIST_ENTRIES} IP allowlist entries")]
    TooMany,
    /// The entry is not an address or CIDR network (shown shortened).
    #[error("invalid IP allowlist entry {0:?}")]
    Invalid(String),
    /// The network is broader than the minimum prefix, or unspecified.
    #[error("IP allowlist entry {0} is too broad")]
    TooBroad(String),
}

/// A key's allowlist, normalised (see the module docs).
#[derive(Clone, Default, PartialEq, Eq, Hash)]
pub struct IpAllowlist(Vec<IpNet>);

/// Parses one entry; `Ok` is the normalised network.
pub fn parse_entry(entry: &str) -> Result<IpNet, AllowlistError> {
    let invalid = || AllowlistError::Invalid(entry.chars().take(MAX_ENTRY_LEN).collect());
    if entry.len() > MAX_ENTRY_LEN {
        return Err(invalid());
    }
    let (addr, prefix) = match entry.split_once('/') {
        None => (entry, None),
        Some((a, p)) => {
            // Decimal digits only, no sign, no leading zero, at most 3 digits.
            let ok = !p.is_empty()
                && p.len() <= 3
                && p.bytes().all(|b| b.is_ascii_digit())
                && (p == "0" || !p.starts_with('0'));
            if !ok {
                return Err(invalid());
            }
            (a, Some(p.parse::<u8>().map_err(|_| invalid())?))
        }
    };
    let ip: IpAddr = addr.parse().map_err(|_| invalid())?;
    let full = if ip.is_ipv4() { 32 } else { 128 };
    let prefix = prefix.unwrap_or(full);
    if prefix > full {
        return Err(invalid());
    }
    // IPv4-mapped IPv6 is IPv4: judge it by the raw address, before host bits are cleared.
    let (ip, prefix) = match ip {
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) if prefix >= 96 => (IpAddr::V4(v4), prefix - 96),
            Some(_) => return Err(invalid()),
            None => (ip, prefix),
        },
        IpAddr::V4(_) => (ip, prefix),
    };
    let net = IpNet::new(ip, prefix).map_err(|_| invalid())?.trunc();
    let min = if net.addr().is_ipv4() { MIN_PREFIX_V4 } else { MIN_PREFIX_V6 };
    if net.prefix_len() < min || net.addr().is_unspecified() {
        return Err(AllowlistError::TooBroad(net.to_string()));
    }
    Ok(net)
}

impl IpAllowlist {
    /// No restriction.
    pub fn empty() -> Self {
        Self(Vec::new())
    }

    /// Parses and normalises a list of entries.
    pub fn parse<I, S>(entries: I) -> Result<Self, AllowlistError>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        let mut nets = Vec::new();
        for e in entries {
            if nets.len() == MAX_ALLOWLIST_ENTRIES {
                return Err(AllowlistError::TooMany);
            }
            nets.push(parse_entry(e.as_ref())?);
        }
        nets.sort();
        nets.dedup();
        Ok(Self(nets))
    }

    /// Whether the list is empty (no IP restriction).
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Number of networks.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// The networks, normalised and sorted.
    pub fn nets(&self) -> &[IpNet] {
        &self.0
    }

    /// Whether `ip` is inside one of the networks (false for an empty list).
    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = ip.to_canonical();
        self.0.iter().any(|n| n.contains(&ip))
    }

    /// The allowlist decision for a request from `client` (`None`: the server could not
    /// establish the client address). Unknown is refused; an empty list permits any known
    /// address.
    pub fn permits(&self, client: Option<IpAddr>) -> bool {
        match client {
            None => false,
            Some(ip) => self.is_empty() || self.contains(ip),
        }
    }

    /// Whether replacing this list with `new` would let in an address this list refuses
    /// (R69: widening a withdraw key's list is delayed). Going from a restricted list to an
    /// empty one is a widening; from empty to anything is not.
    pub fn is_widened_by(&self, new: &IpAllowlist) -> bool {
        if self.is_empty() {
            return false;
        }
        if new.is_empty() {
            return true;
        }
        let covered = IpNet::aggregate(&self.0);
        !new.0.iter().all(|n| covered.iter().any(|c| c.contains(n)))
    }
}

impl fmt::Debug for IpAllowlist {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.0.iter().map(|n| n.to_string())).finish()
    }
}

impl Serialize for IpAllowlist {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(self.0.iter().map(|n| n.to_string()))
    }
}

impl<'de> Deserialize<'de> for IpAllowlist {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let entries = Vec::<String>::deserialize(d)?;
        if entries.len() > MAX_ALLOWLIST_ENTRIES {
            return Err(serde::de::Error::custom(AllowlistError::TooMany));
        }
        IpAllowlist::parse(entries).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn ip(s: &str) -> IpAddr {
        let Ok(ip) = s.parse() else { unreachable!("{s}") };
        ip
    }

    fn list(entries: &[&str]) -> IpAllowlist {
        let Ok(l) = IpAllowlist::parse(entries) else { unreachable!("{entries:?}") };
        l
    }

    #[test]
    fn entries_are_normalised() {
        let show = |e: &str| parse_entry(e).map(|n| n.to_string());
        assert_eq!(show("203.0.113.7"), Ok("203.0.113.7/32".into()));
        assert_eq!(show("10.0.0.5/24"), Ok("10.0.0.0/24".into()));
        assert_eq!(show("2001:db8::1"), Ok("2001:db8::1/128".into()));
        assert_eq!(show("2001:db8:1:2:3::/64"), Ok("2001:db8:1:2::/64".into()));
        assert_eq!(show("::ffff:198.51.100.9"), Ok("198.51.100.9/32".into()));
        assert_eq!(show("::ffff:198.51.100.0/120"), Ok("198.51.100.0/24".into()));
        assert_eq!(show("127.0.0.1"), Ok("127.0.0.1/32".into()));
    }

    #[test]
    fn malformed_and_broad_entries_are_refused() {
        for bad in [
            "",
            " 1.2.3.4",
            "1.2.3.4 ",
            "010.0.0.1",
            "1.2.3",
            "1.2.3.4/33",
            "1.2.3.4/",
            "1.2.3.4/+8",
            "1.2.3.4/024",
            "1.2.3.4/-1",
            "fe80::1%eth0",
            "2001:db8::/129",
            "::ffff:1.2.3.4/64",
            "example.com",
            "1.2.3.4/24/8",
        ] {
            assert!(matches!(parse_entry(bad), Err(AllowlistError::Invalid(_))), "{bad:?}");
        }
        for broad in ["0.0.0.0/0", "10.0.0.0/8", "2001:db8::/32", "::/0", "0.0.0.0", "::"] {
            assert!(matches!(parse_entry(broad), Err(AllowlistError::TooBroad(_))), "{broad:?}");
        }
        assert!(parse_entry(&"1".repeat(65)).is_err());
    }

    #[test]
    fn at_most_ten_entries_deduplicated() {
        let ten: Vec<String> = (1..=10).map(|i| format!("192.0.2.{i}")).collect();
        assert_eq!(IpAllowlist::parse(&ten).map(|l| l.len()), Ok(10));
        let mut eleven = ten.clone();
        eleven.push("192.0.2.11".into());
        assert_eq!(IpAllowlist::parse(&eleven), Err(AllowlistError::TooMany));
        assert_eq!(list(&["192.0.2.1", "192.0.2.1/32", "::ffff:192.0.2.1"]).len(), 1);
        assert!(serde_json::from_str::<IpAllowlist>(&serde_json::to_string(&eleven).unwrap_or_default()).is_err());
    }

    #[test]
    fn contains_handles_both_families_and_mapped_addresses() {
        let l = list(&["198.51.100.0/24", "2001:db8:1::/48"]);
        assert!(l.contains(ip("198.51.100.200")));
        assert!(l.contains(ip("::ffff:198.51.100.200")));
        assert!(!l.contains(ip("198.51.101.1")));
        assert!(l.contains(ip("2001:db8:1:ffff::1")));
        assert!(!l.contains(ip("2001:db8:2::1")));
        // An IPv4-compatible (not mapped) address is a different IPv6 address.
        assert!(!l.contains(ip("::198.51.100.200")));
    }

    #[test]
    fn unknown_client_is_refused_even_without_a_list() {
        assert!(!IpAllowlist::empty().permits(None));
        assert!(IpAllowlist::empty().permits(Some(ip("203.0.113.1"))));
        let l = list(&["203.0.113.1"]);
        assert!(!l.permits(None));
        assert!(l.permits(Some(ip("203.0.113.1"))));
        assert!(!l.permits(Some(ip("203.0.113.2"))));
    }

    #[test]
    fn widening_is_detected() {
        let old = list(&["192.0.2.0/25", "192.0.2.128/25"]);
        assert!(!old.is_widened_by(&list(&["192.0.2.0/24"])));
        assert!(!old.is_widened_by(&list(&["192.0.2.7"])));
        assert!(old.is_widened_by(&list(&["192.0.2.7", "198.51.100.1"])));
        assert!(old.is_widened_by(&list(&["192.0.0.0/16"])));
        assert!(old.is_widened_by(&IpAllowlist::empty()));
        assert!(!IpAllowlist::empty().is_widened_by(&old));
    }

    #[test]
    fn serde_round_trips_in_normalised_form() {
        let Ok(l) = serde_json::from_str::<IpAllowlist>(r#"["10.1.2.3/16","2001:db8::1"]"#) else { unreachable!() };
        assert_eq!(serde_json::to_string(&l).ok().as_deref(), Some(r#"["10.1.0.0/16","2001:db8::1/128"]"#));
        assert!(serde_json::from_str::<IpAllowlist>(r#"["10.0.0.0/8"]"#).is_err());
    }

    proptest! {
        #[test]
        fn parser_never_panics(s in "\\PC{0,70}") {
            let _ = parse_entry(&s);
        }

        #[test]
        fn parsed_entries_are_normalised_and_reparse_to_themselves(
            a in any::<[u8; 4]>(), p in 0u8..=40, v6 in any::<[u16; 8]>(), p6 in 0u8..=140
        ) {
            let v4 = format!("{}.{}.{}.{}/{p}", a[0], a[1], a[2], a[3]);
            let v6 = format!("{}/{p6}", std::net::Ipv6Addr::from(v6));
            for e in [v4, v6] {
                if let Ok(n) = parse_entry(&e) {
                    prop_assert_eq!(n, n.trunc());
                    prop_assert_eq!(parse_entry(&n.to_string()), Ok(n));
                    prop_assert!(n.contains(&n.addr()));
                }
            }
        }
    }
}
