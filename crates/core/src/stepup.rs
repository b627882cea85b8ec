//! Step-up: the sensitive actions, and how strong a fresh proof each one needs.
//!
//! The configuration maps every [`SensitiveAction`] to a [`FactorStrength`] and a maximum
//! proof age; the server's step-up flow turns a verified factor into a typed proof that the
//! code performing the action demands, so an action cannot run on a forgotten check.

use std::fmt;

/// An action that needs a fresh proof of the account holder's presence.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SensitiveAction {
    /// Create an API key.
    CreateApiKey,
    /// Rotate an API key.
    RotateApiKey,
    /// Unlock an API key's withdraw permission.
    UnlockApiKey,
    /// Change an API key's allowlist or revoke it.
    ChangeApiKey,
    /// Request a withdrawal.
    Withdraw,
    /// Add a withdrawal address.
    AddWithdrawalAddress,
    /// Change the password.
    ChangePassword,
    /// Change the email address.
    ChangeEmail,
    /// Add or remove a second factor, regenerate backup codes.
    ChangeFactors,
    /// Revoke sessions.
    RevokeSessions,
    /// Lift the settings lock.
    LiftSettingsLock,
}

impl SensitiveAction {
    /// Every action, in a stable order.
    pub const ALL: [SensitiveAction; 11] = [
        Self::CreateApiKey,
        Self::RotateApiKey,
        Self::UnlockApiKey,
        Self::ChangeApiKey,
        Self::Withdraw,
        Self::AddWithdrawalAddress,
        Self::ChangePassword,
        Self::ChangeEmail,
        Self::ChangeFactors,
        Self::RevokeSessions,
        Self::LiftSettingsLock,
    ];

    /// The configuration and audit name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::CreateApiKey => "create_api_key",
            Self::RotateApiKey => "rotate_api_key",
            Self::UnlockApiKey => "unlock_api_key",
            Self::ChangeApiKey => "change_api_key",
            Self::Withdraw => "withdraw",
            Self::AddWithdrawalAddress => "add_withdrawal_address",
            Self::ChangePassword => "change_password",
            Self::ChangeEmail => "change_email",
            Self::ChangeFactors => "change_factors",
            Self::RevokeSessions => "revoke_sessions",
            Self::LiftSettingsLock => "lift_settings_lock",
        }
    }
}

impl fmt::Display for SensitiveAction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// How strong a proof is, weakest first (the order is meaningful: `>=` means "at least").
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FactorStrength {
    /// The password alone (only before an account has enrolled a second factor).
    Password,
    /// Any second factor except SMS: TOTP, backup code, WebAuthn.
    AnySecondFactor,
    /// WebAuthn with user verification (security key or passkey).
    PhishingResistant,
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // tests fail loudly
mod tests {
    use super::*;

    #[test]
    fn strengths_are_ordered_weakest_first() {
        assert!(FactorStrength::Password < FactorStrength::AnySecondFactor);
        assert!(FactorStrength::AnySecondFactor < FactorStrength::PhishingResistant);
    }

    #[test]
    fn names_are_unique_and_round_trip_through_serde() {
        let mut seen = std::collections::HashSet::new();
        for a in SensitiveAction::ALL {
            assert!(seen.insert(a.as_str()));
            let json = serde_json::to_string(&a).unwrap();
            assert_eq!(json, format!("\"{}\"", a.as_str()));
            assert_eq!(serde_json::from_str::<SensitiveAction>(&json).unwrap(), a);
        }
    }
}
