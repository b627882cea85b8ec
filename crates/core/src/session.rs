//! Sessions, access tokens and rotating refresh tokens (R42–R57).
//!
//! A **session** is one login on one device. It carries:
//! * an absolute lifetime (12 h by default) and an idle limit (30 min; 15 min for staff);
//! * the device it is bound to: a device id and the user-agent family ([`crate::device`]);
//! * short-lived **access tokens** (≤ 10 min), opaque 256-bit values stored as SHA-256; each
//!   request looks the hash up, so logout and revocation take effect at once, everywhere;
//! * one **refresh-token family**: every refresh marks the presented token used and issues a
//!   successor. Presenting a used token again means two parties hold the family: the whole
//!   family and its session are revoked and the event is audited (RFC 9700 §4.14.2, R54).
//!
//! Concurrent refreshes of one token (two browser tabs) must never leave two live successors
//! (F9). The store marks a token used with a conditional update, so exactly one request wins.
//! With a configured grace period (default 0, at most 60 s, R56), a loser presenting the
//! *immediately preceding* token within the grace gets the *same* successor, never a new
//! branch. To hand out the same successor without ever storing a token in clear, successors
//! are derived: `successor = HMAC(refresh_key, presented)` ([`derive_successor`]).

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, KeyInit, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha256;

use crate::clock::{Span, Timestamp};
use crate::ids::{DeviceId, SessionId, UserId};
use crate::secret::{SecretBytes, Token, TokenHash};

/// Session lifetimes. Defaults are the OUR values of R44, R52 and R56.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SessionPolicy {
    /// Access-token lifetime in seconds (≤ 600, R52).
    pub access_ttl_secs: i64,
    /// Absolute session lifetime in seconds (12 h).
    pub absolute_secs: i64,
    /// Idle limit in seconds for customers (30 min).
    pub idle_secs: i64,
    /// Idle limit in seconds for staff (≤ 15 min, R20).
    pub admin_idle_secs: i64,
    /// Concurrent-refresh grace in seconds (default 0, ≤ 60, R56).
    pub refresh_grace_secs: i64,
}

impl Default for SessionPolicy {
    fn default() -> Self {
        Self {
            access_ttl_secs: 600,
            absolute_secs: 12 * 3600,
            idle_secs: 30 * 60,
            admin_idle_secs: 15 * 60,
            refresh_grace_secs: 0,
        }
    }
}

impl SessionPolicy {
    /// Refuses values outside the standards' bounds.
    pub fn validate(&self) -> Result<(), &'static str> {
        if !(1..=600).contains(&self.access_ttl_secs) {
            return Err("session.access_ttl_secs must be 1..=600 (R52)");
        }
        if !(60..=24 * 3600).contains(&self.absolute_secs) {
            return Err("session.absolute_secs must be 60..=86400");
        }
        if !(60..=3600).contains(&self.idle_secs) || self.idle_secs > self.absolute_secs {
            return Err("session.idle_secs must be 60..=3600 and not above absolute_secs");
        }
        if !(60..=15 * 60).contains(&self.admin_idle_secs) {
            return Err("session.admin_idle_secs must be 60..=900 (R20)");
        }
        if !(0..=60).contains(&self.refresh_grace_secs) {
            return Err("session.refresh_grace_secs must be 0..=60 (R56)");
        }
        Ok(())
    }

    /// Access-token lifetime.
    pub fn access_ttl(&self) -> Span {
        Span::secs(self.access_ttl_secs)
    }

    /// Absolute lifetime.
    pub fn absolute(&self) -> Span {
        Span::secs(self.absolute_secs)
    }

    /// Idle limit for a customer or staff session.
    pub fn idle(&self, is_admin: bool) -> Span {
        Span::secs(if is_admin { self.admin_idle_secs } else { self.idle_secs })
    }

    /// Refresh grace.
    pub fn grace(&self) -> Span {
        Span::secs(self.refresh_grace_secs)
    }
}

/// How a session's tokens travel.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SessionKind {
    /// `__Host-` cookies only; tokens never appear in a body (R49).
    Browser,
    /// Bearer tokens in the JSON body; the device id travels in `Gatehouse-Device`.
    Api,
}

impl SessionKind {
    /// Storage form.
    pub fn as_str(&self) -> &'static str {
        match self {
            Self::Browser => "browser",
            Self::Api => "api",
        }
    }

    /// Parses the storage form.
    pub fn from_stored(s: &str) -> Option<Self> {
        match s {
            "browser" => Some(Self::Browser),
            "api" => Some(Self::Api),
            _ => None,
        }
    }
}

/// A session as stored.
#[derive(Debug, Clone)]
pub struct Session {
    /// Id; also the refresh-token family id.
    pub id: SessionId,
    /// Owner.
    pub user_id: UserId,
    /// Bound device.
    pub device_id: DeviceId,
    /// Bound user-agent family key (`Chrome/Linux`).
    pub ua_family: String,
    /// Human device name for the device list.
    pub device_name: String,
    /// Cookie or bearer.
    pub kind: SessionKind,
    /// IP at login.
    pub created_ip: String,
    /// IP at last use.
    pub last_ip: String,
    /// Login time.
    pub created_at: Timestamp,
    /// Last use (coarse: updated at most once a minute).
    pub last_seen_at: Timestamp,
    /// Absolute end.
    pub expires_at: Timestamp,
    /// Time of the last full authentication (login or re-authentication).
    pub auth_time: Timestamp,
    /// Set when revoked.
    pub revoked_at: Option<Timestamp>,
    /// Why it was revoked (`logout`, `refresh_reuse`, `password_change`, …).
    pub revoke_reason: Option<String>,
}

/// Why a session cannot be used.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SessionRejection {
    /// Revoked (logout, reuse detection, password change, admin).
    #[error("session revoked")]
    Revoked,
    /// Past its absolute lifetime.
    #[error("session expired")]
    Expired,
    /// Unused for longer than the idle limit.
    #[error("session idle too long")]
    Idle,
    /// Presented from another device than the one it was created on.
    #[error("session used from another device")]
    DeviceMismatch,
}

impl Session {
    /// Whether the session is live at `now` for a customer or staff account.
    pub fn check(&self, now: Timestamp, policy: &SessionPolicy, is_admin: bool) -> Result<(), SessionRejection> {
        if self.revoked_at.is_some() {
            return Err(SessionRejection::Revoked);
        }
        if now >= self.expires_at {
            return Err(SessionRejection::Expired);
        }
        if now >= self.last_seen_at.plus(policy.idle(is_admin)) {
            return Err(SessionRejection::Idle);
        }
        Ok(())
    }

    /// Whether the presenting client is the device this session is bound to.
    pub fn check_device(&self, device: Option<&DeviceId>, ua_family: &str) -> Result<(), SessionRejection> {
        match device {
            Some(d) if *d == self.device_id && ua_family == self.ua_family => Ok(()),
            _ => Err(SessionRejection::DeviceMismatch),
        }
    }

    /// Whether `last_seen_at` is stale enough to be worth a write (coarse touch).
    pub fn needs_touch(&self, now: Timestamp) -> bool {
        now.since(self.last_seen_at) >= Span::secs(60)
    }
}

/// A refresh token's state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RefreshState {
    /// Can be exchanged once.
    Active,
    /// Exchanged; presenting it again is reuse (outside the grace).
    Used,
    /// Its family was revoked.
    Revoked,
}

impl RefreshState {
    /// Storage form.
    pub fn as_str(&self) -> &'static str {
        match self {
            Self::Active => "active",
            Self::Used => "used",
            Self::Revoked => "revoked",
        }
    }

    /// Parses the storage form; unknown means revoked (fail closed).
    pub fn from_stored(s: &str) -> Self {
        match s {
            "active" => Self::Active,
            "used" => Self::Used,
            _ => Self::Revoked,
        }
    }
}

/// A refresh token as stored (by hash).
#[derive(Debug, Clone)]
pub struct RefreshRecord {
    /// SHA-256 of the token.
    pub hash: TokenHash,
    /// Its session (= family).
    pub session_id: SessionId,
    /// State.
    pub state: RefreshState,
    /// Hash of the successor, once used.
    pub successor: Option<TokenHash>,
    /// When it was exchanged.
    pub used_at: Option<Timestamp>,
    /// Absolute end (the session's, R55).
    pub expires_at: Timestamp,
}

/// A token pair handed to a client.
#[derive(Debug, Clone)]
pub struct TokenPair {
    /// Short-lived access token.
    pub access: Token,
    /// When the access token dies.
    pub access_expires_at: Timestamp,
    /// Refresh token.
    pub refresh: Token,
}

/// What happened when a refresh token was presented.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RefreshOutcome {
    /// Rotated: the presented token is now used; the derived successor is live.
    Rotated {
        /// The session.
        session_id: SessionId,
        /// The owner.
        user_id: UserId,
    },
    /// Lost a race but within the grace with the immediately preceding token: the same
    /// successor is returned.
    Grace {
        /// The session.
        session_id: SessionId,
        /// The owner.
        user_id: UserId,
    },
    /// Reuse of a used token: the family and the session were revoked.
    Reuse {
        /// The revoked session.
        session_id: SessionId,
        /// The owner.
        user_id: UserId,
    },
    /// Presented from another device than the session's: refused, nothing rotated.
    DeviceMismatch {
        /// The session.
        session_id: SessionId,
        /// The owner.
        user_id: UserId,
    },
    /// Unknown token, revoked family, expired token, or dead session.
    Invalid,
}

/// Derives the successor refresh token and its access token from the presented refresh
/// token. Deterministic, so racing requests within the grace receive identical tokens.
/// `None` only if the key is unusable, which callers treat as a server error (fail closed).
pub fn derive_successor(refresh_key: &SecretBytes, presented: &Token) -> Option<(Token, Token)> {
    let derive = |label: &[u8]| -> Option<Token> {
        let mut mac = <Hmac<Sha256>>::new_from_slice(refresh_key.expose()).ok()?;
        mac.update(label);
        mac.update(presented.expose().as_bytes());
        Token::parse(&URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes()))
    };
    Some((derive(b"refresh\0")?, derive(b"access\0")?))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rng::SeededRng;

    fn session(now: Timestamp) -> Session {
        let rng = SeededRng::new(1);
        Session {
            id: SessionId::generate(now, &rng),
            user_id: UserId::generate(now, &rng),
            device_id: DeviceId::generate(now, &rng),
            ua_family: "Chrome/Linux".into(),
            device_name: "Chrome on Linux".into(),
            kind: SessionKind::Browser,
            created_ip: "127.0.0.1".into(),
            last_ip: "127.0.0.1".into(),
            created_at: now,
            last_seen_at: now,
            expires_at: now.plus(Span::hours(12)),
            auth_time: now,
            revoked_at: None,
            revoke_reason: None,
        }
    }

    const T0: Timestamp = Timestamp::from_secs(1_800_000_000);

    #[test]
    fn idle_limit_is_exact() {
        let p = SessionPolicy::default();
        let s = session(T0);
        assert_eq!(s.check(T0.plus(Span::minutes(30)).minus(Span::millis(1)), &p, false), Ok(()));
        assert_eq!(s.check(T0.plus(Span::minutes(30)), &p, false), Err(SessionRejection::Idle));
        assert_eq!(s.check(T0.plus(Span::minutes(15)), &p, true), Err(SessionRejection::Idle));
    }

    #[test]
    fn absolute_limit_holds_even_when_active() {
        let p = SessionPolicy::default();
        let mut s = session(T0);
        s.last_seen_at = T0.plus(Span::hours(12));
        assert_eq!(s.check(T0.plus(Span::hours(12)).plus(Span::secs(1)), &p, false), Err(SessionRejection::Expired));
        s.revoked_at = Some(T0);
        assert_eq!(s.check(T0, &p, false), Err(SessionRejection::Revoked));
    }

    #[test]
    fn device_binding_needs_both_id_and_family() {
        let s = session(T0);
        let other = DeviceId::generate(T0, &SeededRng::new(99));
        assert_eq!(s.check_device(Some(&s.device_id), "Chrome/Linux"), Ok(()));
        assert_eq!(s.check_device(Some(&s.device_id), "Firefox/Linux"), Err(SessionRejection::DeviceMismatch));
        assert_eq!(s.check_device(Some(&other), "Chrome/Linux"), Err(SessionRejection::DeviceMismatch));
        assert_eq!(s.check_device(None, "Chrome/Linux"), Err(SessionRejection::DeviceMismatch));
    }

    #[test]
    fn successors_are_deterministic_distinct_and_key_dependent() {
        let rng = SeededRng::new(5);
        let k1 = SecretBytes::new(vec![1; 32]);
        let k2 = SecretBytes::new(vec![2; 32]);
        let r1 = Token::generate(&rng);
        let Some((a, b)) = derive_successor(&k1, &r1) else { unreachable!() };
        let Some((a2, b2)) = derive_successor(&k1, &r1) else { unreachable!() };
        assert_eq!((a.hash(), b.hash()), (a2.hash(), b2.hash()));
        assert_ne!(a.hash(), b.hash());
        assert_ne!(a.hash(), r1.hash());
        assert_ne!(derive_successor(&k2, &r1).map(|p| p.0.hash()), Some(a.hash()));
    }

    #[test]
    fn policy_bounds() {
        assert!(SessionPolicy::default().validate().is_ok());
        assert!(SessionPolicy { access_ttl_secs: 601, ..Default::default() }.validate().is_err());
        assert!(SessionPolicy { refresh_grace_secs: 61, ..Default::default() }.validate().is_err());
        assert!(SessionPolicy { admin_idle_secs: 901, ..Default::default() }.validate().is_err());
    }
}
