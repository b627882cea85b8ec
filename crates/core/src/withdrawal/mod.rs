//! Withdrawals: amounts, address-book entries and transaction-bound intents.
//!
//! gatehouse never moves funds. It decides whether a withdrawal may go and hands a confirmed
//! intent to the exchange back end. The attack this module stops is the silent redirect: a
//! stolen session (or a phished password) that sends funds to an attacker's address. The
//! defences are layered:
//!
//! * a new address book entry is usable only after an activation delay, announced by email with
//!   a cancel link (so the owner has time to notice);
//! * an intent's details are frozen at creation into canonical JSON whose SHA-256 is the
//!   **binding** of the step-up proof (CS Transaction Authorization 2.1: "what you see is what
//!   you sign"); the confirmation must echo that hash;
//! * confirmation is a conditional update from `pending` to `confirmed` (R78: no double
//!   spend), and the intent id is the idempotency key of the delivery to the back end;
//! * withdrawals are refused while the account is frozen or held after a security change.
//!
//! Amounts are decimal strings with at most [`DECIMALS`] fractional digits, held as integer
//! base units so that limits add up exactly (no floating point anywhere).

mod amount;

pub use amount::{Amount, AmountError, DECIMALS};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::clock::Timestamp;
use crate::ids::UserId;

/// Longest address accepted (bech32 and account-style addresses fit comfortably).
pub const MAX_ADDRESS_LEN: usize = 128;
/// Longest address-book label.
pub const MAX_LABEL_LEN: usize = 64;

/// An asset ticker: 2–10 upper-case letters or digits (`BTC`, `USDT`).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Asset(String);

impl Asset {
    /// Validates and upper-cases a ticker.
    pub fn parse(raw: &str) -> Option<Self> {
        let s = raw.trim().to_ascii_uppercase();
        ((2..=10).contains(&s.len()) && s.chars().all(|c| c.is_ascii_alphanumeric())).then_some(Self(s))
    }

    /// The ticker.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A destination address: 8–128 printable ASCII characters from the set used by chain
/// addresses (letters, digits, `:`, `_`, `-`, `.`), case preserved (bech32 and base58 are
/// case-sensitive in different ways, so no normalisation is attempted).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Destination(String);

impl Destination {
    /// Validates an address.
    pub fn parse(raw: &str) -> Option<Self> {
        let s = raw.trim();
        let ok = (8..=MAX_ADDRESS_LEN).contains(&s.len())
            && s.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, ':' | '_' | '-' | '.'));
        ok.then(|| Self(s.to_owned()))
    }

    /// The address.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// Validates an address-book label: 1–64 characters, no control characters.
pub fn parse_label(raw: &str) -> Option<String> {
    let s = raw.trim();
    (!s.is_empty() && s.chars().count() <= MAX_LABEL_LEN && !s.chars().any(char::is_control)).then(|| s.to_owned())
}

/// An address-book entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AddressEntry {
    /// Its id (UUIDv7 text).
    pub id: String,
    /// Owner.
    pub user_id: UserId,
    /// Asset it is for.
    pub asset: Asset,
    /// The address.
    pub address: Destination,
    /// The owner's label.
    pub label: String,
    /// When it was added.
    pub created_at: Timestamp,
    /// When it becomes usable.
    pub active_at: Timestamp,
    /// When it was cancelled, if it was.
    pub cancelled_at: Option<Timestamp>,
}

/// Where an address-book entry stands at an instant.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum AddressState {
    /// Waiting for its activation delay to pass.
    Pending,
    /// Usable.
    Active,
    /// Cancelled by its owner; never usable again.
    Cancelled,
}

impl AddressEntry {
    /// The state at `now`.
    pub fn state(&self, now: Timestamp) -> AddressState {
        if self.cancelled_at.is_some() {
            AddressState::Cancelled
        } else if now >= self.active_at {
            AddressState::Active
        } else {
            AddressState::Pending
        }
    }
}

/// The frozen details of a withdrawal intent: what the owner approves, byte for byte.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IntentDetails {
    /// Format version.
    pub v: u8,
    /// Intent id (also the delivery idempotency key).
    pub id: String,
    /// Owner.
    pub user: String,
    /// Asset.
    pub asset: String,
    /// Canonical decimal amount.
    pub amount: String,
    /// Destination address.
    pub destination: String,
    /// Address-book label, when the destination is in the book.
    pub label: Option<String>,
    /// Creation time, Unix ms.
    pub created_at_ms: i64,
    /// The intent cannot be confirmed at or after this time, Unix ms.
    pub expires_at_ms: i64,
}

impl IntentDetails {
    /// The canonical JSON (field order fixed by the struct, no whitespace).
    pub fn canonical_json(&self) -> String {
        serde_json::to_string(self).unwrap_or_default()
    }

    /// SHA-256 of [`Self::canonical_json`]: the step-up binding.
    pub fn hash(&self) -> [u8; 32] {
        hash_canonical(&self.canonical_json())
    }
}

/// SHA-256 of stored canonical intent JSON.
pub fn hash_canonical(json: &str) -> [u8; 32] {
    Sha256::digest(json.as_bytes()).into()
}

/// Lifecycle of an intent (R78: create → confirm → deliver, no skipping).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum IntentState {
    /// Created; waiting for step-up and confirmation.
    Pending,
    /// Confirmed; queued for (or delivered to) the back end.
    Confirmed,
    /// Cancelled by its owner.
    Cancelled,
}

impl IntentState {
    /// Storage form.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Confirmed => "confirmed",
            Self::Cancelled => "cancelled",
        }
    }

    /// Parses the storage form.
    pub fn from_stored(s: &str) -> Option<Self> {
        match s {
            "pending" => Some(Self::Pending),
            "confirmed" => Some(Self::Confirmed),
            "cancelled" => Some(Self::Cancelled),
            _ => None,
        }
    }
}

/// A stored intent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Intent {
    /// Frozen details.
    pub details: IntentDetails,
    /// The canonical JSON exactly as stored (what was hashed).
    pub canonical: String,
    /// Amount in base units (for limits).
    pub units: i64,
    /// State.
    pub state: IntentState,
    /// When it was confirmed.
    pub confirmed_at: Option<Timestamp>,
    /// When the back end acknowledged it.
    pub delivered_at: Option<Timestamp>,
    /// Delivery attempts so far.
    pub attempts: i64,
}

impl Intent {
    /// The owner.
    pub fn user(&self) -> Option<UserId> {
        UserId::parse(&self.details.user)
    }

    /// Whether it can still be confirmed at `now`.
    pub fn is_confirmable(&self, now: Timestamp) -> bool {
        self.state == IntentState::Pending && now.as_millis() < self.details.expires_at_ms
    }
}

/// Why a withdrawal is refused before any step-up.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    /// The account is frozen.
    #[error("the account is frozen")]
    Frozen,
    /// Withdrawals are held after a security change until the given time.
    #[error("withdrawals are held after a security change")]
    Held(Timestamp),
    /// The destination is in the address book but not active yet (or cancelled).
    #[error("the address is not active yet")]
    AddressNotActive(Timestamp),
    /// Allowlist-only mode is on and the destination is not an active book entry.
    #[error("the destination is not in the address book")]
    NotAllowlisted,
    /// The daily limit for the asset would be exceeded.
    #[error("the daily limit would be exceeded")]
    DailyLimit,
}

/// What a withdrawal decision needs to know about the account and destination.
#[derive(Debug, Clone)]
pub struct WithdrawalContext<'a> {
    /// Account frozen?
    pub frozen: bool,
    /// Hold end, if any.
    pub held_until: Option<Timestamp>,
    /// Allowlist-only mode.
    pub allowlist_only: bool,
    /// Book entries of this asset with this exact address (any state).
    pub entries: &'a [AddressEntry],
    /// Base units confirmed in the last 24 h for this asset.
    pub used_today: i64,
    /// The daily limit in base units.
    pub daily_limit: i64,
}

/// Decides whether `amount` may be withdrawn at `now`. Fails closed: any doubt is a refusal.
/// Returns the active book entry used, when there is one.
pub fn check<'a>(ctx: &WithdrawalContext<'a>, units: i64, now: Timestamp) -> Result<Option<&'a AddressEntry>, Refusal> {
    if ctx.frozen {
        return Err(Refusal::Frozen);
    }
    if let Some(until) = ctx.held_until.filter(|u| now < *u) {
        return Err(Refusal::Held(until));
    }
    let active = ctx.entries.iter().find(|e| e.state(now) == AddressState::Active);
    if active.is_none() {
        if let Some(p) = ctx.entries.iter().find(|e| e.state(now) == AddressState::Pending) {
            return Err(Refusal::AddressNotActive(p.active_at));
        }
        if ctx.allowlist_only || !ctx.entries.is_empty() {
            // Only cancelled entries (or none in allowlist-only mode): never send there.
            return Err(Refusal::NotAllowlisted);
        }
    }
    if ctx.used_today.checked_add(units).is_none_or(|t| t > ctx.daily_limit) {
        return Err(Refusal::DailyLimit);
    }
    Ok(active)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // tests fail loudly
mod tests;
