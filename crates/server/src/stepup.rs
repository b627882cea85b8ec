//! The typed step-up proof that every sensitive action demands.
//!
//! Handlers for sensitive actions call [`require`] with the action, an optional binding (the
//! hash of what is being approved, e.g. a withdrawal intent) and the caller's [`StepUpInput`];
//! the action's code then takes the returned [`StepUpProof`] as an argument, so it cannot run
//! without one. A proof can only be made here.
//!
//! Until second factors land, the only proof is the password re-entered (R47); the
//! second-factor work replaces the body of [`require`] with the configured policy.

use gatehouse_core::clock::Timestamp;
use gatehouse_core::ids::UserId;
use gatehouse_core::stepup::{FactorStrength, SensitiveAction};

use crate::auth::Authenticated;
use crate::error::ApiResult;
use crate::routes::sessions::reauthenticate;
use crate::state::AppState;

/// Evidence that the account holder proved their presence for one action.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StepUpProof {
    user: UserId,
    action: SensitiveAction,
    binding: Option<[u8; 32]>,
    strength: FactorStrength,
    verified_at: Timestamp,
}

impl StepUpProof {
    /// Whose presence was proven.
    pub fn user(&self) -> UserId {
        self.user
    }

    /// The action it was proven for.
    pub fn action(&self) -> SensitiveAction {
        self.action
    }

    /// The hash of what was approved, when the action has one.
    pub fn binding(&self) -> Option<&[u8; 32]> {
        self.binding.as_ref()
    }

    /// How strong the proof was.
    pub fn strength(&self) -> FactorStrength {
        self.strength
    }

    /// When the factor was verified.
    pub fn verified_at(&self) -> Timestamp {
        self.verified_at
    }
}

/// What the caller sent to prove presence (fields of the action's request body).
#[derive(Debug, Default, Clone, Copy)]
pub struct StepUpInput<'a> {
    /// The password, re-entered.
    pub password: Option<&'a str>,
    /// A step-up token from the step-up flow.
    pub step_up_token: Option<&'a str>,
}

/// Checks the caller's proof for `action` and returns the typed proof, or the error to answer.
pub async fn require(
    state: &AppState,
    auth: &Authenticated,
    action: SensitiveAction,
    binding: Option<[u8; 32]>,
    input: StepUpInput<'_>,
) -> ApiResult<StepUpProof> {
    // A frozen account changes nothing but its sessions until its owner recovers it (R107).
    if auth.account.is_frozen() && action != SensitiveAction::RevokeSessions {
        return Err(crate::error::ApiError::new(crate::error::ErrorCode::AccountFrozen));
    }
    // The risk engine first: a refused action never reaches the factor check.
    crate::risk::assess_sensitive(state, auth, action).await?;
    reauthenticate(state, auth, input.password).await?;
    Ok(StepUpProof {
        user: auth.account.id,
        action,
        binding,
        strength: FactorStrength::Password,
        verified_at: state.clock.now(),
    })
}
