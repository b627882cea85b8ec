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

impl FactorStrength {
    /// The stored and API name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Password => "password",
            Self::AnySecondFactor => "any_second_factor",
            Self::PhishingResistant => "phishing_resistant",
        }
    }

    /// Parses a stored name.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "password" => Some(Self::Password),
            "any_second_factor" => Some(Self::AnySecondFactor),
            "phishing_resistant" => Some(Self::PhishingResistant),
            _ => None,
        }
    }
}

/// What one action needs: a factor strength and how old its proof may be.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ActionPolicy {
    /// The weakest proof accepted. `password` lets accounts without a second factor act with
    /// their password re-entered (an operator's choice; the default is never `password`).
    pub strength: FactorStrength,
    /// `0`: every time, with a step-up token minted for this very action (single use). `N`: a
    /// factor proven on the same session in the last `N` seconds (for any action, at least as
    /// strong) also counts. Actions bound to a value (withdrawals) always need a token.
    pub max_age_secs: u32,
}

/// Largest `max_age_secs` accepted (one hour).
pub const MAX_PROOF_AGE_SECS: u32 = 3600;

/// The step-up table: one [`ActionPolicy`] per [`SensitiveAction`]; actions missing from the
/// configuration use [`StepUpPolicy::default_for`].
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StepUpPolicy {
    /// Overrides by action.
    pub actions: std::collections::BTreeMap<SensitiveAction, ActionPolicy>,
}

impl StepUpPolicy {
    /// The built-in policy: a second factor for everything, every time, except revoking
    /// sessions and editing an API key's allowlist or revoking it, where a factor proven on the
    /// same session in the last 5 minutes is enough.
    pub fn default_for(action: SensitiveAction) -> ActionPolicy {
        let max_age_secs = match action {
            SensitiveAction::RevokeSessions | SensitiveAction::ChangeApiKey => 300,
            _ => 0,
        };
        ActionPolicy { strength: FactorStrength::AnySecondFactor, max_age_secs }
    }

    /// The policy in effect for `action`.
    pub fn for_action(&self, action: SensitiveAction) -> ActionPolicy {
        self.actions.get(&action).copied().unwrap_or_else(|| Self::default_for(action))
    }

    /// The strength needed by `action` for an account; high-value accounts always need a
    /// phishing-resistant factor.
    pub fn needed(&self, action: SensitiveAction, high_value: bool) -> FactorStrength {
        let s = self.for_action(action).strength;
        if high_value { s.max(FactorStrength::PhishingResistant) } else { s }
    }

    /// Checks the bounds.
    pub fn validate(&self) -> Result<(), &'static str> {
        if self.actions.values().any(|p| p.max_age_secs > MAX_PROOF_AGE_SECS) {
            return Err("stepup.actions.*.max_age_secs must be at most 3600");
        }
        Ok(())
    }
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

    #[test]
    fn policy_defaults_overrides_and_high_value() {
        let mut p = StepUpPolicy::default();
        for a in SensitiveAction::ALL {
            assert_eq!(p.for_action(a).strength, FactorStrength::AnySecondFactor);
            assert_eq!(p.needed(a, true), FactorStrength::PhishingResistant);
        }
        assert_eq!(p.for_action(SensitiveAction::Withdraw).max_age_secs, 0);
        assert_eq!(p.for_action(SensitiveAction::RevokeSessions).max_age_secs, 300);
        p.actions.insert(
            SensitiveAction::RevokeSessions,
            ActionPolicy { strength: FactorStrength::Password, max_age_secs: 0 },
        );
        assert_eq!(p.needed(SensitiveAction::RevokeSessions, false), FactorStrength::Password);
        assert_eq!(p.needed(SensitiveAction::RevokeSessions, true), FactorStrength::PhishingResistant);
        assert!(p.validate().is_ok());
        p.actions
            .insert(SensitiveAction::Withdraw, ActionPolicy { strength: FactorStrength::Password, max_age_secs: 3601 });
        assert!(p.validate().is_err());
        for s in [FactorStrength::Password, FactorStrength::AnySecondFactor, FactorStrength::PhishingResistant] {
            assert_eq!(FactorStrength::parse(s.as_str()), Some(s));
        }
    }
}
