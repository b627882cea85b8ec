//! The API-key record, its creation rules and its life cycle (R63, R64, R69, R71, R74).
//!
//! Everything here is a pure function of the record, the request and `now`; the server
//! persists the result together with an audit event (R72).
//!
//! * **Creation** ([`ApiKey::create`]): at most [`KeyPolicy::max_keys_per_account`] keys per
//!   account; a label of 1–64 visible characters; read-only scopes unless more is asked for;
//!   a key with `withdraw` must have a non-empty IP allowlist and starts
//!   [`ApiKeyStatus::Locked`] (withdrawals refused until its owner unlocks it, with step-up);
//!   an expiry between [`KeyPolicy::min_lifetime_secs`] and [`KeyPolicy::max_lifetime_days`]
//!   (default one year, like Upbit's non-extendable one-year keys).
//! * **Cooling-off** (R74): withdrawals are refused for [`KeyPolicy::withdraw_cooling_off_secs`]
//!   after the `withdraw` scope was granted (at creation, rotation or a scope change).
//! * **Allowlist changes** (R69): immediate, except widening the list of a withdraw key,
//!   which takes effect after [`KeyPolicy::allowlist_widening_delay_secs`]. A thief who got
//!   past step-up cannot add his own address and withdraw at once; the owner gets a day to
//!   notice the notification.
//! * **Rotation** (R71): a successor key is created; the predecessor stays valid until
//!   `min(its expiry, now + grace)` (grace default 24 h, at most 7 days), then is expired.
//! * **Suspension** lifts back to `Locked` for a withdraw key: the owner re-unlocks after any
//!   suspension, so a suspension can never silently re-open withdrawals.

use std::net::IpAddr;

use serde::{Deserialize, Serialize};

use super::allowlist::IpAllowlist;
use super::scope::{Scope, ScopeSet};
use crate::clock::{Span, Timestamp};
use crate::ids::UserId;
use crate::rng::{SecureRng, random_bytes};

/// An API key's id: a random UUIDv4. It is public (clients send it with every request), so
/// unlike the other ids it carries no creation time (R63: "the key ID is public and random").
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct ApiKeyId(uuid::Uuid);

impl ApiKeyId {
    /// A new random id.
    pub fn generate(rng: &dyn SecureRng) -> Self {
        Self(uuid::Builder::from_random_bytes(random_bytes::<16>(rng)).into_uuid())
    }

    /// Parses the hyphenated text form (exactly 36 characters).
    pub fn parse(s: &str) -> Option<Self> {
        if s.len() != 36 {
            return None;
        }
        uuid::Uuid::try_parse(s).ok().map(Self)
    }

    /// The underlying UUID.
    pub fn as_uuid(&self) -> uuid::Uuid {
        self.0
    }
}

impl std::fmt::Display for ApiKeyId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.hyphenated().fmt(f)
    }
}

/// How requests made with the key are signed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum KeyKind {
    /// Shared secret (HMAC-SHA-256/512; Upbit JWT HS256/HS512, Binance HMAC). The server
    /// keeps the secret envelope-encrypted.
    Hmac,
    /// Ed25519 public key (preferred, R63: the server holds nothing that can sign).
    Ed25519,
    /// RSA public key (Binance RSA keys; PKCS#1 v1.5 with SHA-256).
    Rsa,
}

impl KeyKind {
    /// Whether the server holds only a public key.
    pub const fn is_asymmetric(self) -> bool {
        !matches!(self, KeyKind::Hmac)
    }
}

/// Where a key is in its life cycle.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ApiKeyStatus {
    /// Usable for everything its scopes allow.
    Active,
    /// Usable, except that withdrawal routes are refused (withdraw safety lock, Upbit
    /// "출금 안심차단": 403 `open_api_withdraw_locked`).
    Locked,
    /// Temporarily unusable (by its owner, the security team or the risk engine).
    Suspended,
    /// Permanently unusable.
    Revoked,
}

/// A key label: 1–64 characters, no control or invisible formatting characters (bidi
/// overrides could make a label read differently in a notification), no leading or trailing
/// whitespace.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct KeyLabel(String);

/// Longest label, in characters.
pub const MAX_LABEL_CHARS: usize = 64;

/// Why a label was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum LabelError {
    /// Empty.
    #[error("label is empty")]
    Empty,
    /// Over [`MAX_LABEL_CHARS`] characters.
    #[error("label is longer than 64 characters")]
    TooLong,
    /// Leading or trailing whitespace.
    #[error("label has leading or trailing whitespace")]
    Whitespace,
    /// A control or invisible formatting character.
    #[error("label contains a control or formatting character")]
    ForbiddenChar,
}

fn is_invisible_format(c: char) -> bool {
    matches!(c,
        '\u{00AD}' | '\u{061C}' | '\u{180E}' | '\u{200B}'..='\u{200F}' | '\u{202A}'..='\u{202E}'
        | '\u{2060}'..='\u{206F}' | '\u{FEFF}' | '\u{FFF9}'..='\u{FFFB}')
}

impl KeyLabel {
    /// Validates a label.
    pub fn parse(s: &str) -> Result<Self, LabelError> {
        if s.is_empty() {
            return Err(LabelError::Empty);
        }
        if s.chars().count() > MAX_LABEL_CHARS {
            return Err(LabelError::TooLong);
        }
        if s.starts_with(char::is_whitespace) || s.ends_with(char::is_whitespace) {
            return Err(LabelError::Whitespace);
        }
        if s.chars().any(|c| c.is_control() || is_invisible_format(c)) {
            return Err(LabelError::ForbiddenChar);
        }
        Ok(Self(s.to_owned()))
    }

    /// The label.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for KeyLabel {
    type Error = LabelError;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        Self::parse(&s)
    }
}

impl From<KeyLabel> for String {
    fn from(l: KeyLabel) -> Self {
        l.0
    }
}

/// API-key rules. Defaults follow R64, R69, R71, R74 and Upbit §1.6.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct KeyPolicy {
    /// Keys per account (Upbit: 10).
    pub max_keys_per_account: u32,
    /// Lifetime when the request names none, in days.
    pub default_lifetime_days: i64,
    /// Longest lifetime, in days (at most 365).
    pub max_lifetime_days: i64,
    /// Shortest lifetime, in seconds.
    pub min_lifetime_secs: i64,
    /// How long a rotated key keeps working, in seconds (R71: at most 7 days).
    pub rotation_grace_secs: i64,
    /// Withdrawals refused for this long after `withdraw` is granted, in seconds (R74).
    pub withdraw_cooling_off_secs: i64,
    /// Delay before a wider allowlist applies to a withdraw key, in seconds (R69).
    pub allowlist_widening_delay_secs: i64,
    /// Refuse `withdraw` on HMAC keys (exchange-auth.md §2.6 suggests asymmetric keys for
    /// withdrawals). Off by default because the Upbit dialect only has HMAC keys. Checked
    /// when the scope is granted.
    pub withdraw_requires_asymmetric: bool,
}

impl Default for KeyPolicy {
    fn default() -> Self {
        Self {
            max_keys_per_account: 10,
            default_lifetime_days: 365,
            max_lifetime_days: 365,
            min_lifetime_secs: 3600,
            rotation_grace_secs: 24 * 3600,
            withdraw_cooling_off_secs: 24 * 3600,
            allowlist_widening_delay_secs: 24 * 3600,
            withdraw_requires_asymmetric: false,
        }
    }
}

impl KeyPolicy {
    /// Refuses values outside the standards' bounds.
    pub fn validate(&self) -> Result<(), &'static str> {
        if !(1..=100).contains(&self.max_keys_per_account) {
            return Err("apikey.max_keys_per_account must be 1..=100");
        }
        if !(1..=365).contains(&self.max_lifetime_days)
            || !(1..=self.max_lifetime_days).contains(&self.default_lifetime_days)
        {
            return Err("apikey lifetimes must satisfy 1 <= default_lifetime_days <= max_lifetime_days <= 365");
        }
        if self.min_lifetime_secs < 60 || self.min_lifetime_secs > self.default_lifetime_days * 86_400 {
            return Err("apikey.min_lifetime_secs must be at least 60 and at most the default lifetime");
        }
        if !(0..=7 * 86_400).contains(&self.rotation_grace_secs) {
            return Err("apikey.rotation_grace_secs must be 0..=604800 (R71)");
        }
        if self.withdraw_cooling_off_secs < 0 || self.allowlist_widening_delay_secs < 0 {
            return Err("apikey delays must not be negative");
        }
        Ok(())
    }
}

/// The last successful use of a key (R72).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LastUse {
    /// When.
    pub at: Timestamp,
    /// From which client address.
    pub ip: Option<IpAddr>,
    /// The `User-Agent`, cleaned: at most 256 characters, control characters removed.
    pub user_agent: Option<String>,
}

/// A wider allowlist waiting for its delay (R69).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PendingAllowlist {
    /// The list that will apply.
    pub allowlist: IpAllowlist,
    /// From when.
    pub effective_at: Timestamp,
}

/// An API key as stored (never its secret: that lives envelope-encrypted, or is a public key,
/// in the signing module's storage).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApiKey {
    /// Public id.
    pub id: ApiKeyId,
    /// The account it acts for.
    pub owner: UserId,
    /// The owner's name for it.
    pub label: KeyLabel,
    /// Signature scheme.
    pub kind: KeyKind,
    /// What it may do.
    pub scopes: ScopeSet,
    /// Where it may be used from (empty: anywhere).
    pub allowlist: IpAllowlist,
    /// A wider list not yet in force.
    pub pending_allowlist: Option<PendingAllowlist>,
    /// Life-cycle state.
    pub status: ApiKeyStatus,
    /// Creation time.
    pub created_at: Timestamp,
    /// Hard expiry.
    pub expires_at: Timestamp,
    /// When `withdraw` was last granted (start of the cooling-off); `None` without it.
    pub withdraw_granted_at: Option<Timestamp>,
    /// The key this one replaced.
    pub rotated_from: Option<ApiKeyId>,
    /// The key that replaces this one.
    pub successor: Option<ApiKeyId>,
    /// End of the rotation overlap: `min(expires_at, rotated_at + grace)`.
    pub valid_until: Option<Timestamp>,
    /// When it was revoked.
    pub revoked_at: Option<Timestamp>,
    /// Last successful use.
    pub last_used: Option<LastUse>,
}

/// A request to create a key, as the API receives it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewApiKey {
    /// Label.
    pub label: String,
    /// Signature scheme.
    pub kind: KeyKind,
    /// Scopes; read-only when absent.
    #[serde(default = "ScopeSet::read_only_default")]
    pub scopes: ScopeSet,
    /// IP allowlist; none when absent (not allowed with `withdraw`).
    #[serde(default)]
    pub allowlist: IpAllowlist,
    /// Expiry; `now + default lifetime` when absent.
    #[serde(default)]
    pub expires_at: Option<Timestamp>,
}

/// Why a key could not be created, rotated or changed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyError {
    /// The account already has the maximum number of keys.
    #[error("an account may have at most {max} API keys")]
    TooManyKeys {
        /// The limit.
        max: u32,
    },
    /// The label is invalid.
    #[error("invalid label: {0}")]
    Label(#[from] LabelError),
    /// `withdraw` without an IP allowlist (R64).
    #[error("the withdraw scope requires an IP allowlist")]
    WithdrawNeedsAllowlist,
    /// `withdraw` on an HMAC key while the policy forbids it.
    #[error("the withdraw scope requires an Ed25519 or RSA key")]
    WithdrawNeedsAsymmetricKey,
    /// The expiry is earlier than `now + min lifetime`.
    #[error("expiry too soon")]
    ExpiryTooSoon,
    /// The expiry is later than `now + max lifetime`.
    #[error("expiry too far in the future")]
    ExpiryTooLate,
    /// The key is revoked, suspended, expired or already rotated, so the change is refused.
    #[error("operation not allowed in the key's current state")]
    InvalidState,
}

/// What an allowlist change did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AllowlistChange {
    /// In force now.
    Immediate,
    /// Recorded as pending; in force from `effective_at` (R69).
    Delayed {
        /// When it applies.
        effective_at: Timestamp,
    },
}

fn clean_user_agent(ua: &str) -> String {
    ua.chars().filter(|c| !c.is_control() && !is_invisible_format(*c)).take(256).collect()
}

impl ApiKey {
    /// Validates `req` and builds the record. `existing_keys` is the number of keys the
    /// account holds now (revoked ones excluded), read in the same transaction as the insert.
    pub fn create(
        id: ApiKeyId,
        owner: UserId,
        req: NewApiKey,
        existing_keys: u32,
        now: Timestamp,
        policy: &KeyPolicy,
    ) -> Result<ApiKey, KeyError> {
        if existing_keys >= policy.max_keys_per_account {
            return Err(KeyError::TooManyKeys { max: policy.max_keys_per_account });
        }
        let label = KeyLabel::parse(&req.label)?;
        check_withdraw_grant(req.scopes, req.kind, &req.allowlist, policy)?;
        let expires_at = match req.expires_at {
            None => now.plus(Span::days(policy.default_lifetime_days)),
            Some(t) if t < now.plus(Span::secs(policy.min_lifetime_secs)) => {
                return Err(KeyError::ExpiryTooSoon);
            }
            Some(t) if t > now.plus(Span::days(policy.max_lifetime_days)) => {
                return Err(KeyError::ExpiryTooLate);
            }
            Some(t) => t,
        };
        let has_withdraw = req.scopes.has_withdraw();
        Ok(ApiKey {
            id,
            owner,
            label,
            kind: req.kind,
            scopes: req.scopes,
            allowlist: req.allowlist,
            pending_allowlist: None,
            status: if has_withdraw { ApiKeyStatus::Locked } else { ApiKeyStatus::Active },
            created_at: now,
            expires_at,
            withdraw_granted_at: has_withdraw.then_some(now),
            rotated_from: None,
            successor: None,
            valid_until: None,
            revoked_at: None,
            last_used: None,
        })
    }

    /// Whether the key is past its expiry or, for a rotated key, past its overlap.
    pub fn is_expired(&self, now: Timestamp) -> bool {
        now >= self.expires_at || self.valid_until.is_some_and(|v| now >= v)
    }

    /// Whether the key can still sign requests at `now` (withdraw lock aside).
    pub fn is_usable(&self, now: Timestamp) -> bool {
        matches!(self.status, ApiKeyStatus::Active | ApiKeyStatus::Locked) && !self.is_expired(now)
    }

    /// The allowlist in force at `now` (a pending list applies from its `effective_at`).
    pub fn effective_allowlist(&self, now: Timestamp) -> &IpAllowlist {
        match &self.pending_allowlist {
            Some(p) if now >= p.effective_at => &p.allowlist,
            _ => &self.allowlist,
        }
    }

    /// Replaces the allowlist (the server requires step-up and audits it, R69). Immediate,
    /// except a widening on a withdraw key, which becomes pending. A new change replaces any
    /// pending one.
    pub fn change_allowlist(
        &mut self,
        new: IpAllowlist,
        now: Timestamp,
        policy: &KeyPolicy,
    ) -> Result<AllowlistChange, KeyError> {
        if !self.is_usable(now) {
            return Err(KeyError::InvalidState);
        }
        self.settle_allowlist(now);
        if self.scopes.has_withdraw() {
            if new.is_empty() {
                return Err(KeyError::WithdrawNeedsAllowlist);
            }
            if self.allowlist.is_widened_by(&new) {
                let effective_at = now.plus(Span::secs(policy.allowlist_widening_delay_secs));
                self.pending_allowlist = Some(PendingAllowlist { allowlist: new, effective_at });
                return Ok(AllowlistChange::Delayed { effective_at });
            }
        }
        self.allowlist = new;
        self.pending_allowlist = None;
        Ok(AllowlistChange::Immediate)
    }

    /// Folds a pending allowlist whose time has come into `allowlist`.
    pub fn settle_allowlist(&mut self, now: Timestamp) {
        if let Some(p) = self.pending_allowlist.take_if(|p| now >= p.effective_at) {
            self.allowlist = p.allowlist;
        }
    }

    /// Replaces the scopes (step-up and audit in the server). Granting `withdraw` needs an
    /// allowlist, locks the key and restarts the cooling-off.
    pub fn change_scopes(&mut self, scopes: ScopeSet, now: Timestamp, policy: &KeyPolicy) -> Result<(), KeyError> {
        if !self.is_usable(now) {
            return Err(KeyError::InvalidState);
        }
        if scopes.has_withdraw() && !self.scopes.has_withdraw() {
            check_withdraw_grant(scopes, self.kind, &self.allowlist, policy)?;
            self.status = ApiKeyStatus::Locked;
            self.withdraw_granted_at = Some(now);
        }
        if !scopes.has_withdraw() {
            self.withdraw_granted_at = None;
        }
        self.scopes = scopes;
        Ok(())
    }

    /// Creates the successor of this key and starts the overlap: this key stays valid until
    /// `min(expires_at, now + grace)`. The successor has the same owner, label, scopes and
    /// allowlists, the given `kind` (a rotation may move to Ed25519), a fresh default
    /// lifetime, and, with `withdraw`, starts locked with a new cooling-off. The account
    /// count is not checked: the predecessor goes away within the grace.
    pub fn rotate(
        &mut self,
        successor_id: ApiKeyId,
        kind: KeyKind,
        now: Timestamp,
        policy: &KeyPolicy,
    ) -> Result<ApiKey, KeyError> {
        if !self.is_usable(now) || self.successor.is_some() {
            return Err(KeyError::InvalidState);
        }
        check_withdraw_grant(self.scopes, kind, &self.allowlist, policy)?;
        let has_withdraw = self.scopes.has_withdraw();
        let next = ApiKey {
            id: successor_id,
            owner: self.owner,
            label: self.label.clone(),
            kind,
            scopes: self.scopes,
            allowlist: self.allowlist.clone(),
            pending_allowlist: self.pending_allowlist.clone(),
            status: if has_withdraw { ApiKeyStatus::Locked } else { ApiKeyStatus::Active },
            created_at: now,
            expires_at: now.plus(Span::days(policy.default_lifetime_days)),
            withdraw_granted_at: has_withdraw.then_some(now),
            rotated_from: Some(self.id),
            successor: None,
            valid_until: None,
            revoked_at: None,
            last_used: None,
        };
        self.successor = Some(successor_id);
        self.valid_until = Some(self.expires_at.min(now.plus(Span::secs(policy.rotation_grace_secs))));
        Ok(next)
    }

    /// Revokes the key for good. Idempotent: the first revocation time is kept.
    pub fn revoke(&mut self, now: Timestamp) {
        if self.status != ApiKeyStatus::Revoked {
            self.status = ApiKeyStatus::Revoked;
            self.revoked_at = Some(now);
        }
    }

    /// Suspends an active or locked key.
    pub fn suspend(&mut self) -> Result<(), KeyError> {
        match self.status {
            ApiKeyStatus::Active | ApiKeyStatus::Locked | ApiKeyStatus::Suspended => {
                self.status = ApiKeyStatus::Suspended;
                Ok(())
            }
            ApiKeyStatus::Revoked => Err(KeyError::InvalidState),
        }
    }

    /// Lifts a suspension. A withdraw key comes back locked.
    pub fn resume(&mut self) -> Result<(), KeyError> {
        if self.status != ApiKeyStatus::Suspended {
            return Err(KeyError::InvalidState);
        }
        self.status = if self.scopes.has_withdraw() { ApiKeyStatus::Locked } else { ApiKeyStatus::Active };
        Ok(())
    }

    /// Sets the withdraw safety lock.
    pub fn lock_withdraw(&mut self) -> Result<(), KeyError> {
        match self.status {
            ApiKeyStatus::Active | ApiKeyStatus::Locked => {
                self.status = ApiKeyStatus::Locked;
                Ok(())
            }
            _ => Err(KeyError::InvalidState),
        }
    }

    /// Lifts the withdraw safety lock. The server requires a fresh step-up (R75) first.
    pub fn unlock_withdraw(&mut self) -> Result<(), KeyError> {
        match self.status {
            ApiKeyStatus::Active | ApiKeyStatus::Locked => {
                self.status = ApiKeyStatus::Active;
                Ok(())
            }
            _ => Err(KeyError::InvalidState),
        }
    }

    /// Records a successful, authorised request (R72).
    pub fn record_use(&mut self, now: Timestamp, ip: Option<IpAddr>, user_agent: Option<&str>) {
        self.last_used =
            Some(LastUse { at: now, ip: ip.map(|i| i.to_canonical()), user_agent: user_agent.map(clean_user_agent) });
    }
}

fn check_withdraw_grant(
    scopes: ScopeSet,
    kind: KeyKind,
    allowlist: &IpAllowlist,
    policy: &KeyPolicy,
) -> Result<(), KeyError> {
    if !scopes.contains(Scope::Withdraw) {
        return Ok(());
    }
    if allowlist.is_empty() {
        return Err(KeyError::WithdrawNeedsAllowlist);
    }
    if policy.withdraw_requires_asymmetric && !kind.is_asymmetric() {
        return Err(KeyError::WithdrawNeedsAsymmetricKey);
    }
    Ok(())
}

#[cfg(test)]
#[path = "key_tests.rs"]
pub(crate) mod tests;
