//! From a 0–100 score to what the server does, per kind of action.
//!
//! Each [`RiskAction`] has its own [`Thresholds`]: a withdrawal-address change deserves a
//! second factor at a score a login would let through, because a stolen session or password
//! converts into stolen funds only there. The mapping is monotone: a higher score never yields
//! a milder [`Decision`]. An operator denylist hit is at least [`Decision::Deny`] whatever the
//! score (applied by the engine).
//!
//! What the server does with each decision:
//!
//! | decision | login / session / sensitive action | API-key call |
//! |---|---|---|
//! | `Allow` | proceed | proceed |
//! | `StepUp` | ask for a second factor (TOTP, WebAuthn) and only then proceed and learn | refuse with `risk_confirmation_required`; the owner confirms the new network in the web UI |
//! | `Deny` | refuse this request (generic error), audit | refuse, audit |
//! | `Freeze` | refuse, revoke the account's sessions, hold withdrawals until support review | refuse and freeze the key |

use serde::{Deserialize, Serialize};

use super::RiskError;

/// What is being attempted.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RiskAction {
    /// A login after the password (or passkey) was verified, before a session is issued.
    Login,
    /// Use of an existing session: refresh, or an ordinary authenticated request.
    Session,
    /// A sensitive action: withdrawal, withdrawal-address change, API-key creation, password
    /// or MFA change.
    Sensitive,
    /// A signed API-key request.
    ApiKeyUse,
}

impl RiskAction {
    /// Stable name for audit records.
    pub const fn name(self) -> &'static str {
        match self {
            RiskAction::Login => "login",
            RiskAction::Session => "session",
            RiskAction::Sensitive => "sensitive",
            RiskAction::ApiKeyUse => "api_key_use",
        }
    }
}

/// The engine's verdict, mildest first (the derived order is used: `max` is "stricter").
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Decision {
    /// Go ahead.
    Allow,
    /// Require a fresh second factor (or owner confirmation for an API key).
    StepUp,
    /// Refuse this request.
    Deny,
    /// Refuse and freeze the account (or key) until reviewed.
    Freeze,
}

impl Decision {
    /// True for every decision that stops the request as presented.
    pub const fn is_challenge(self) -> bool {
        !matches!(self, Decision::Allow)
    }
}

/// Score thresholds for one action: a score at or above a threshold gets that decision.
/// A threshold of 101 disables that decision.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Thresholds {
    /// Lowest score that asks for a second factor.
    pub step_up: u8,
    /// Lowest score that refuses.
    pub deny: u8,
    /// Lowest score that freezes.
    pub freeze: u8,
}

impl Thresholds {
    /// The decision for `score`.
    pub fn decide(&self, score: u8) -> Decision {
        if score >= self.freeze {
            Decision::Freeze
        } else if score >= self.deny {
            Decision::Deny
        } else if score >= self.step_up {
            Decision::StepUp
        } else {
            Decision::Allow
        }
    }

    fn validate(&self, what: &'static str) -> Result<(), RiskError> {
        if self.step_up == 0 {
            return Err(RiskError::InvalidPolicy(what, "step_up must be at least 1 (0 would challenge everything)"));
        }
        if !(self.step_up <= self.deny && self.deny <= self.freeze && self.freeze <= 101) {
            return Err(RiskError::InvalidPolicy(what, "thresholds must satisfy step_up <= deny <= freeze <= 101"));
        }
        Ok(())
    }
}

/// Thresholds for every action. Defaults were chosen on the synthetic traffic of
/// `tools/risk-eval` with a seed other than the one reported (see its README).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ActionThresholds {
    /// At login.
    pub login: Thresholds,
    /// On session use and refresh.
    pub session: Thresholds,
    /// Before a sensitive action.
    pub sensitive: Thresholds,
    /// On API-key use.
    pub api_key: Thresholds,
}

impl Default for ActionThresholds {
    fn default() -> Self {
        Self {
            login: Thresholds { step_up: 40, deny: 97, freeze: 101 },
            session: Thresholds { step_up: 60, deny: 90, freeze: 99 },
            sensitive: Thresholds { step_up: 15, deny: 90, freeze: 98 },
            api_key: Thresholds { step_up: 45, deny: 95, freeze: 99 },
        }
    }
}

impl ActionThresholds {
    /// The thresholds that apply to `action`.
    pub fn for_action(&self, action: RiskAction) -> &Thresholds {
        match action {
            RiskAction::Login => &self.login,
            RiskAction::Session => &self.session,
            RiskAction::Sensitive => &self.sensitive,
            RiskAction::ApiKeyUse => &self.api_key,
        }
    }

    /// Refuses inconsistent thresholds.
    pub fn validate(&self) -> Result<(), RiskError> {
        self.login.validate("risk.thresholds.login")?;
        self.session.validate("risk.thresholds.session")?;
        self.sensitive.validate("risk.thresholds.sensitive")?;
        self.api_key.validate("risk.thresholds.api_key")
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::panic)] // tests fail loudly
mod tests {
    use super::*;

    #[test]
    fn scores_map_to_decisions_per_action() {
        let t = ActionThresholds::default();
        // The same score is a step-up before a withdrawal and a plain allow at login.
        assert_eq!(t.for_action(RiskAction::Sensitive).decide(20), Decision::StepUp);
        assert_eq!(t.for_action(RiskAction::Login).decide(20), Decision::Allow);
        assert_eq!(t.for_action(RiskAction::Login).decide(60), Decision::StepUp);
        assert_eq!(t.for_action(RiskAction::ApiKeyUse).decide(50), Decision::StepUp);
        assert_eq!(t.for_action(RiskAction::Session).decide(50), Decision::Allow);
        assert_eq!(t.for_action(RiskAction::Session).decide(95), Decision::Deny);
        assert_eq!(t.for_action(RiskAction::Login).decide(100), Decision::Deny, "login never freezes by default");
        for action in [RiskAction::Login, RiskAction::Session, RiskAction::Sensitive, RiskAction::ApiKeyUse] {
            let th = t.for_action(action);
            assert_eq!(th.decide(0), Decision::Allow);
            let mut last = Decision::Allow;
            for s in 0..=100u8 {
                let d = th.decide(s);
                assert!(d >= last, "{action:?} not monotone at {s}");
                last = d;
            }
        }
    }

    #[test]
    fn freeze_threshold_freezes() {
        let t = ActionThresholds::default();
        let th = t.for_action(RiskAction::Sensitive);
        assert_eq!(th.decide(th.freeze), Decision::Freeze);
        assert_eq!(th.decide(100), Decision::Freeze);
        assert_eq!(th.decide(th.freeze - 1), Decision::Deny);
    }

    #[test]
    fn inconsistent_thresholds_are_refused() {
        assert!(ActionThresholds::default().validate().is_ok());
        for login in [
            Thresholds { step_up: 80, deny: 70, freeze: 101 },
            Thresholds { step_up: 0, deny: 70, freeze: 101 },
            Thresholds { step_up: 10, deny: 70, freeze: 102 },
        ] {
            assert!(ActionThresholds { login, ..Default::default() }.validate().is_err(), "{login:?}");
        }
    }
}
