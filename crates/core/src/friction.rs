//! High-value friction on the account: the withdrawal hold after security changes, the
//! user-set settings lock, allowlist-only mode and the anti-phishing code.
//!
//! * **Hold** (R80): after a password, email or factor change, a recovery, or a new API key
//!   with withdraw scope, withdrawals are refused until `held_until`. The hold is written in
//!   the same transaction as the change (it travels in [`crate::store::SideEffects`]), only
//!   ever extended, and no endpoint lifts it: an attacker who just took over the account
//!   cannot withdraw before the owner hears about it.
//! * **Settings lock**: while locked, security settings cannot be changed; unlocking waits a
//!   configured delay, is announced on every channel and can be cancelled, so a stolen
//!   session cannot quietly weaken the account.
//! * **Anti-phishing code** (R87): a phrase the user chooses, shown in every email; a mail
//!   without it is not from us. Stored sealed under the master keyring.

use serde::{Deserialize, Serialize};

use crate::clock::Timestamp;
use crate::ids::UserId;

/// Longest anti-phishing code, in characters.
pub const MAX_ANTI_PHISHING_CHARS: usize = 32;

/// A withdrawal hold to record with a state change.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WithdrawalHold {
    /// Whose withdrawals.
    pub user: UserId,
    /// Until when (a later existing hold is kept).
    pub until: Timestamp,
    /// Why: `password_change`, `api_key_withdraw`, `recovery`, `password_reset`, …
    pub reason: String,
}

/// The friction settings of an account.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FrictionState {
    /// Withdrawals are refused before this instant.
    pub held_until: Option<Timestamp>,
    /// Why the latest hold was set.
    pub hold_reason: Option<String>,
    /// Only active address-book entries may receive withdrawals.
    pub allowlist_only: bool,
    /// When the settings lock was turned on.
    pub settings_locked_at: Option<Timestamp>,
    /// When a requested unlock takes effect.
    pub settings_unlock_at: Option<Timestamp>,
    /// The anti-phishing code, sealed (base64url of the envelope).
    pub anti_phishing_sealed: Option<String>,
}

impl FrictionState {
    /// The hold end, if a hold is in force at `now`.
    pub fn hold_at(&self, now: Timestamp) -> Option<Timestamp> {
        self.held_until.filter(|u| now < *u)
    }

    /// Whether security settings are locked at `now` (a requested unlock takes effect at its
    /// time, without any further action).
    pub fn is_settings_locked(&self, now: Timestamp) -> bool {
        self.settings_locked_at.is_some() && self.settings_unlock_at.is_none_or(|u| now < u)
    }

    /// Whether an unlock is waiting at `now`.
    pub fn has_pending_unlock(&self, now: Timestamp) -> bool {
        self.is_settings_locked(now) && self.settings_unlock_at.is_some()
    }
}

/// Validates an anti-phishing code: 4–32 characters, letters, digits, spaces and `-_.!`
/// only (it is shown verbatim in mail, so nothing that could form markup or a link).
pub fn parse_anti_phishing_code(raw: &str) -> Option<String> {
    let s = raw.trim();
    let n = s.chars().count();
    let ok = (4..=MAX_ANTI_PHISHING_CHARS).contains(&n)
        && s.chars().all(|c| c.is_alphanumeric() || matches!(c, ' ' | '-' | '_' | '.' | '!'))
        && !s.contains("://")
        && !s.contains("www.");
    ok.then(|| s.to_owned())
}

/// What a single-use emailed link does when redeemed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LinkAction {
    /// Freeze the account ("this was not me").
    Freeze,
    /// Cancel a pending address-book entry.
    CancelAddress(String),
    /// Cancel a pending settings unlock.
    CancelSettingsUnlock,
    /// Cancel an open recovery case.
    CancelRecovery(String),
}

impl LinkAction {
    /// The `email_tokens.purpose` value.
    pub fn purpose(&self) -> String {
        match self {
            Self::Freeze => "freeze".into(),
            Self::CancelAddress(id) => format!("cancel_address:{id}"),
            Self::CancelSettingsUnlock => "cancel_settings_unlock".into(),
            Self::CancelRecovery(id) => format!("cancel_recovery:{id}"),
        }
    }

    /// Parses a purpose; `None` for purposes that are not link actions.
    pub fn from_purpose(p: &str) -> Option<Self> {
        match p {
            "freeze" => Some(Self::Freeze),
            "cancel_settings_unlock" => Some(Self::CancelSettingsUnlock),
            _ => {
                if let Some(id) = p.strip_prefix("cancel_address:") {
                    Some(Self::CancelAddress(id.to_owned()))
                } else {
                    p.strip_prefix("cancel_recovery:").map(|id| Self::CancelRecovery(id.to_owned()))
                }
            }
        }
    }

    /// Stable name for answers and audit.
    pub fn name(&self) -> &'static str {
        match self {
            Self::Freeze => "freeze",
            Self::CancelAddress(_) => "cancel_address",
            Self::CancelSettingsUnlock => "cancel_settings_unlock",
            Self::CancelRecovery(_) => "cancel_recovery",
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::clock::Span;

    const T0: Timestamp = Timestamp::from_secs(1_800_000_000);

    #[test]
    fn settings_lock_holds_until_the_unlock_time() {
        let mut s = FrictionState::default();
        assert!(!s.is_settings_locked(T0));
        s.settings_locked_at = Some(T0);
        assert!(s.is_settings_locked(T0.plus(Span::days(400))));
        s.settings_unlock_at = Some(T0.plus(Span::days(3)));
        assert!(s.has_pending_unlock(T0));
        assert!(s.is_settings_locked(T0.plus(Span::days(3)).minus(Span::millis(1))));
        assert!(!s.is_settings_locked(T0.plus(Span::days(3))));
    }

    #[test]
    fn holds_end_at_their_time() {
        let s = FrictionState { held_until: Some(T0), ..Default::default() };
        assert_eq!(s.hold_at(T0.minus(Span::millis(1))), Some(T0));
        assert_eq!(s.hold_at(T0), None);
    }

    #[test]
    fn anti_phishing_codes_cannot_carry_markup_or_links() {
        assert_eq!(parse_anti_phishing_code("  blue Heron 42 ").as_deref(), Some("blue Heron 42"));
        for bad in ["abc", "<b>hello</b>", "http://evil.example", "www.evil", &"x".repeat(33), "a\nbcd"] {
            assert_eq!(parse_anti_phishing_code(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn link_purposes_round_trip() {
        for a in [
            LinkAction::Freeze,
            LinkAction::CancelAddress("a1".into()),
            LinkAction::CancelSettingsUnlock,
            LinkAction::CancelRecovery("c1".into()),
        ] {
            assert_eq!(LinkAction::from_purpose(&a.purpose()), Some(a));
        }
        assert_eq!(LinkAction::from_purpose("verify_email"), None);
        assert_eq!(LinkAction::from_purpose("password_reset"), None);
    }
}
