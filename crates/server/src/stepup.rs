//! The typed step-up proof that every sensitive action demands.
//!
//! Handlers for sensitive actions call [`require`] with the action, an optional binding (the
//! hash of what is being approved, e.g. a withdrawal intent) and the caller's [`StepUpInput`];
//! the action's code then takes the returned [`StepUpProof`] as an argument, so it cannot run
//! without one. A proof can only be made here.
//!
//! [`require`] applies the configured step-up table (`[mfa.step_up]`, see ADR 0006):
//!
//! 1. The strength needed is the action's policy strength, raised to phishing-resistant for
//!    high-value accounts.
//! 2. A **step-up token** (from `POST /account/step-up`) is consumed atomically if it matches
//!    the user, the session, the action and the binding; its strength must be enough.
//! 3. Without a token: an account with **no second factor** may use its password only where
//!    the policy says `password`; otherwise it gets `second_factor_required` (the nudge). An
//!    account with a second factor may rely on a factor proven on this session within the
//!    action's `max_age_secs` (never for bound actions); otherwise `step_up_required`.

use gatehouse_core::audit::{EventKind, Outcome};
use gatehouse_core::clock::{Span, Timestamp};
use gatehouse_core::ids::UserId;
use gatehouse_core::mfa::store::{MfaTokenMatch, MfaTokenPurpose};
use gatehouse_core::secret::Token;
use gatehouse_core::stepup::{FactorStrength, SensitiveAction};

use crate::auth::Authenticated;
use crate::error::{ApiError, ApiResult, ErrorCode};
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
        return Err(ApiError::new(ErrorCode::AccountFrozen));
    }
    // The risk engine first: a refused action never reaches the factor check, and a step-up
    // decision asks for a second factor even where the policy would take the password (R107).
    let raised = crate::risk::assess_sensitive(state, auth, action).await? == gatehouse_core::risk::Decision::StepUp;
    let policy = state.config.mfa.step_up.for_action(action);
    let mut needed = state.config.mfa.step_up.needed(action, auth.account.high_value);
    if raised {
        needed = needed.max(FactorStrength::AnySecondFactor);
    }
    let binding_hex = binding.map(hex::encode).unwrap_or_default();
    let proof = |strength, verified_at| StepUpProof { user: auth.account.id, action, binding, strength, verified_at };
    if let Some(raw) = input.step_up_token.filter(|t| !t.is_empty()) {
        let token = Token::parse(raw).ok_or_else(|| ApiError::new(ErrorCode::StepUpInvalid))?;
        let m = MfaTokenMatch {
            hash: token.hash(),
            purpose: MfaTokenPurpose::StepUp,
            user_id: Some(auth.account.id),
            session_id: Some(auth.session.id),
            action: Some(action.as_str()),
            binding: Some(&binding_hex),
        };
        let Some(t) = state.store.consume_mfa_token(&m, state.clock.now()).await? else {
            return Err(deny(state, auth, action, "invalid_token", ErrorCode::StepUpInvalid).await);
        };
        let strength = FactorStrength::parse(&t.strength).ok_or_else(|| ApiError::internal("step-up", "strength"))?;
        if strength < needed {
            let code = if needed == FactorStrength::PhishingResistant {
                ErrorCode::PhishingResistantRequired
            } else {
                ErrorCode::StepUpRequired
            };
            return Err(deny(state, auth, action, "too_weak", code).await);
        }
        return Ok(proof(strength, t.created_at));
    }
    let factors = crate::mfa::factors(state, &auth.account).await?;
    if needed == FactorStrength::Password && input.password.is_some_and(|p| !p.is_empty()) {
        reauthenticate(state, auth, input.password).await?;
        return Ok(proof(FactorStrength::Password, state.clock.now()));
    }
    if !factors.has_second_factor() {
        if needed == FactorStrength::Password {
            return Err(ApiError::new(ErrorCode::ReauthRequired));
        }
        return Err(deny(state, auth, action, "no_second_factor", ErrorCode::SecondFactorRequired).await);
    }
    if binding.is_none()
        && policy.max_age_secs > 0
        && let Some((s, at)) = state.store.session_proof(auth.session.id).await?
        && let Some(s) = FactorStrength::parse(&s)
        && s >= needed
        && state.clock.now().since(at) <= Span::secs(i64::from(policy.max_age_secs))
    {
        return Ok(proof(s, at));
    }
    let code = if needed == FactorStrength::PhishingResistant && factors.webauthn == 0 {
        ErrorCode::PhishingResistantRequired
    } else {
        ErrorCode::StepUpRequired
    };
    Err(deny(state, auth, action, "no_proof", code).await)
}

/// Audits a refusal and builds the answer, naming what would be accepted.
async fn deny(
    state: &AppState,
    auth: &Authenticated,
    action: SensitiveAction,
    reason: &str,
    code: ErrorCode,
) -> ApiError {
    let needed = state.config.mfa.step_up.needed(action, auth.account.high_value);
    let e = auth
        .event(EventKind::StepUpDenied, Outcome::Denied)
        .with("action", action.as_str())
        .with("reason", reason.to_owned())
        .with("needed", needed.as_str());
    if let Err(err) = state.store.append(vec![e]).await {
        return err.into();
    }
    ApiError::new(code).details(serde_json::json!({ "action": action.as_str(), "strength": needed.as_str() }))
}

/// For adding the **first** second factor: an account without one proves itself with its
/// password (it has nothing stronger yet); an account with one needs a step-up for
/// [`SensitiveAction::ChangeFactors`] like any other change of factors.
pub async fn require_for_enrolment(
    state: &AppState,
    auth: &Authenticated,
    input: StepUpInput<'_>,
) -> ApiResult<StepUpProof> {
    if auth.account.is_frozen() {
        return Err(ApiError::new(ErrorCode::AccountFrozen));
    }
    let factors = crate::mfa::factors(state, &auth.account).await?;
    if factors.has_second_factor() {
        return require(state, auth, SensitiveAction::ChangeFactors, None, input).await;
    }
    reauthenticate(state, auth, input.password).await?;
    Ok(StepUpProof {
        user: auth.account.id,
        action: SensitiveAction::ChangeFactors,
        binding: None,
        strength: FactorStrength::Password,
        verified_at: state.clock.now(),
    })
}
