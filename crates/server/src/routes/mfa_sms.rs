//! SMS as a last-resort login factor: set or remove the number, send a code for a pending
//! login, finish the login with it. Labelled weaker everywhere; refused for step-up (R39).
//!
//! A number is validated before it is used (R39): setting or changing it sends a code to it,
//! and only `…/sms/confirm` with that code makes it the account's SMS number. Until then SMS
//! is not offered for it (a number confirmed earlier stays in use until the new one is).

use axum::Json;
use axum::extract::State;
use axum::response::Response;
use gatehouse_core::account::Account;
use gatehouse_core::audit::{EventKind, Outcome};
use gatehouse_core::clock::Span;
use gatehouse_core::mfa::store::{MfaToken, MfaTokenMatch, MfaTokenPurpose, PendingSmsNumber, sms_number_aad};
use gatehouse_core::secret::Token;
use gatehouse_core::stepup::SensitiveAction;
use gatehouse_core::store::SideEffects;
use serde::Deserialize;
use serde_json::{Value, json};

use crate::auth::Authenticated;
use crate::error::{ApiError, ApiResult, ErrorCode};
use crate::http::{ApiJson, ClientCtx};
use crate::mfa::{self, event_for, sms};
use crate::state::AppState;
use crate::stepup::{StepUpInput, require, require_for_enrolment};

/// SMS codes one pending login may ask for.
const MAX_SENDS: u64 = 3;

/// Confirmation codes one account may have sent to numbers being set, per hour (SMS pumping).
const MAX_NUMBER_CODES: u32 = 3;

/// `POST /_gh/api/v1/account/factors/sms`
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SetNumber {
    /// E.164 number.
    phone: String,
    #[serde(default)]
    password: Option<String>,
    #[serde(default)]
    step_up_token: Option<String>,
}

/// Sets or changes the SMS number (sealed at rest): sends a confirmation code to it; the number
/// is used only once `…/sms/confirm` is called with that code (R39). First factor: the
/// password; otherwise step-up `change_factors`.
pub async fn set_number(
    State(state): State<AppState>,
    auth: Authenticated,
    ApiJson(req): ApiJson<SetNumber>,
) -> ApiResult<Json<Value>> {
    if state.config.mfa.sms.webhook_url.is_empty() {
        return Err(ApiError::new(ErrorCode::FactorNotAllowed).message("SMS is not enabled on this deployment."));
    }
    if !sms::valid_number(&req.phone) {
        return Err(ApiError::new(ErrorCode::InvalidRequest).message("phone must be E.164: + and 7–15 digits"));
    }
    let input = StepUpInput { password: req.password.as_deref(), step_up_token: req.step_up_token.as_deref() };
    crate::friction::ensure_settings_unlocked(&state, &auth, "second_factors").await?; // friction (issue 5)
    require_for_enrolment(&state, &auth, input).await?;
    let sealed = state
        .keyring
        .seal(req.phone.as_bytes(), &sms_number_aad(&auth.account.id), state.rng.as_ref())
        .map_err(|e| ApiError::internal("sms seal", e))?;
    let now = state.clock.now();
    let ttl = state.config.mfa.sms.code_ttl_secs;
    let code = sms::new_code(&state);
    let pending = PendingSmsNumber {
        user_id: auth.account.id,
        phone_sealed: sealed,
        code_hash: sms::confirmation_hash(&state, auth.account.id, &code),
        created_at: now,
        expires_at: now.plus(Span::secs(ttl)),
        max_sends: MAX_NUMBER_CODES,
        window_start_after: now.minus(Span::secs(3600)),
    };
    let e = auth.event(EventKind::SmsCodeSent, Outcome::Success).with("flow", "number_confirmation");
    if !state.store.begin_sms_number(&pending, SideEffects::event(e)).await? {
        return Err(ApiError::new(ErrorCode::RateLimited)
            .message("Too many confirmation codes were sent; try again later.")
            .retry_after(3600));
    }
    let text = format!(
        "{code} is your {} code to confirm this number. It expires in {} minutes. Never share it.",
        state.config.mfa.issuer,
        ttl / 60
    );
    sms::send(&state, &req.phone, &text).await?;
    Ok(Json(json!({
        "status": "pending_confirmation",
        "to": sms::masked(&req.phone),
        "expires_in": ttl,
        "weaker": true,
        "notice": "Enter the code we sent to this number to start using it. SMS is the weakest factor (SIM swap, interception). It can finish a sign-in only; add an authenticator app or a security key for everything else.",
    })))
}

/// `POST /_gh/api/v1/account/factors/sms/confirm`
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConfirmNumber {
    /// The code sent to the number being set.
    code: String,
}

/// Confirms the number being set with the code sent to it: from now on it can finish a
/// sign-in. Wrong codes count toward the account's login throttle, like every factor.
pub async fn confirm_number(
    State(state): State<AppState>,
    auth: Authenticated,
    ApiJson(req): ApiJson<ConfirmNumber>,
) -> ApiResult<Json<Value>> {
    if state.config.mfa.sms.webhook_url.is_empty() {
        return Err(ApiError::new(ErrorCode::FactorNotAllowed).message("SMS is not enabled on this deployment."));
    }
    crate::friction::ensure_settings_unlocked(&state, &auth, "second_factors").await?; // friction (issue 5)
    if !mfa::throttle_gate(&state, &auth.account, &auth.client).await? {
        return Err(ApiError::new(ErrorCode::InvalidCode));
    }
    let well_formed = req.code.len() == 6 && req.code.bytes().all(|b| b.is_ascii_digit());
    let now = state.clock.now();
    let fx = SideEffects::event(auth.event(EventKind::SmsNumberSet, Outcome::Success).with("confirmed", true)).hold(
        auth.account.id,
        crate::friction::factor_change_hold_until(&state),
        "factor_change",
    );
    let hash = sms::confirmation_hash(&state, auth.account.id, &req.code);
    if !well_formed || !state.store.confirm_sms_number(auth.account.id, hash, now, fx).await? {
        let e = auth.event(EventKind::SmsCodeFailed, Outcome::Failure).with("flow", "number_confirmation");
        mfa::count_failure(&state, &auth.account, &auth.client, e).await?;
        return Err(ApiError::new(ErrorCode::InvalidCode)
            .message("Wrong or expired code. Set the number again to get a new one."));
    }
    Ok(Json(json!({
        "status": "enabled",
        "weaker": true,
        "notice": "SMS is the weakest factor (SIM swap, interception). It can finish a sign-in only; add an authenticator app or a security key for everything else.",
    })))
}

/// `POST /_gh/api/v1/account/factors/sms/remove` (step-up `change_factors`).
pub async fn remove_number(
    State(state): State<AppState>,
    auth: Authenticated,
    ApiJson(body): ApiJson<super::mfa::ProofBody>,
) -> ApiResult<Json<Value>> {
    crate::friction::ensure_settings_unlocked(&state, &auth, "second_factors").await?; // friction (issue 5)
    require(&state, &auth, SensitiveAction::ChangeFactors, None, body.input()).await?;
    let e = auth.event(EventKind::SmsNumberSet, Outcome::Success).with("removed", true);
    if !state
        .store
        .delete_sms_number(
            auth.account.id,
            SideEffects::event(e).hold(
                auth.account.id,
                crate::friction::factor_change_hold_until(&state),
                "factor_change",
            ),
        )
        .await?
    {
        return Err(ApiError::new(ErrorCode::NotFound));
    }
    Ok(Json(json!({ "status": "removed" })))
}

/// `POST /_gh/api/v1/sessions/second-factor/sms/send`
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Send {
    pending_token: String,
}

/// Sends a code for this pending login; a resend replaces the previous code.
pub async fn send(
    State(state): State<AppState>,
    client: ClientCtx,
    ApiJson(req): ApiJson<Send>,
) -> ApiResult<Json<Value>> {
    let token = Token::parse(&req.pending_token).ok_or_else(|| ApiError::new(ErrorCode::PendingLoginInvalid))?;
    let now = state.clock.now();
    let pending = state
        .store
        .find_mfa_token(token.hash(), MfaTokenPurpose::Login, now)
        .await?
        .ok_or_else(|| ApiError::new(ErrorCode::PendingLoginInvalid))?;
    let account = state
        .store
        .find_account(pending.user_id)
        .await?
        .filter(|a| a.can_sign_in())
        .ok_or_else(|| ApiError::new(ErrorCode::PendingLoginInvalid))?;
    if !mfa::factors(&state, &account).await?.sms {
        return Err(ApiError::new(ErrorCode::FactorNotAllowed).message("No SMS number is set."));
    }
    if !mfa::throttle_gate(&state, &account, &client).await? {
        return Err(ApiError::new(ErrorCode::RateLimited).retry_after(60));
    }
    let sealed =
        state.store.find_sms_number(account.id).await?.ok_or_else(|| ApiError::new(ErrorCode::FactorNotAllowed))?;
    let phone =
        state.keyring.open(&sealed, &sms_number_aad(&account.id)).map_err(|e| ApiError::internal("sms number", e))?;
    let phone = String::from_utf8(phone.expose().to_vec()).map_err(|e| ApiError::internal("sms number", e))?;
    let binding = hex::encode(token.hash().as_bytes());
    // At most three codes per pending login (SMS pumping, R38 rate limit).
    if state.store.count_mfa_tokens(MfaTokenPurpose::Sms, &binding).await? >= MAX_SENDS {
        return Err(ApiError::new(ErrorCode::RateLimited).retry_after(state.config.mfa.pending_login_ttl_secs));
    }
    state.store.revoke_mfa_tokens(MfaTokenPurpose::Sms, &binding, now).await?;
    let code = sms::new_code(&state);
    let ttl = state.config.mfa.sms.code_ttl_secs;
    let t = MfaToken {
        hash: sms::code_hash(&state, &binding, &code),
        user_id: account.id,
        purpose: MfaTokenPurpose::Sms,
        session_id: None,
        action: String::new(),
        binding: binding.clone(),
        factor: "sms".into(),
        strength: String::new(),
        detail: "{}".into(),
        created_at: now,
        expires_at: now.plus(Span::secs(ttl)),
    };
    let e = event_for(&account, &client, EventKind::SmsCodeSent, Outcome::Success);
    state.store.create_mfa_token(&t, SideEffects::event(e)).await?;
    let text = format!(
        "{code} is your {} sign-in code. It expires in {} minutes. Never share it.",
        state.config.mfa.issuer,
        ttl / 60
    );
    sms::send(&state, &phone, &text).await?;
    Ok(Json(json!({ "status": "sent", "to": sms::masked(&phone), "expires_in": ttl, "weaker": true })))
}

/// Finishes a login with an SMS code bound to `pending`.
#[allow(clippy::too_many_arguments)] // the pending login's parts, each checked here
pub async fn finish_login(
    state: &AppState,
    client: &ClientCtx,
    account: &Account,
    pending: &MfaToken,
    code: &str,
    token: &Token,
    detail: &Value,
    cnf: Option<&gatehouse_core::pop::Confirmation>,
) -> ApiResult<Response> {
    if !mfa::throttle_gate(state, account, client).await? {
        return Err(ApiError::new(ErrorCode::InvalidCode));
    }
    let binding = hex::encode(pending.hash.as_bytes());
    let well_formed = code.len() == 6 && code.bytes().all(|b| b.is_ascii_digit());
    let m = MfaTokenMatch {
        hash: sms::code_hash(state, &binding, code),
        purpose: MfaTokenPurpose::Sms,
        user_id: Some(account.id),
        session_id: None,
        action: None,
        binding: Some(&binding),
    };
    if !well_formed || state.store.consume_mfa_token(&m, state.clock.now()).await?.is_none() {
        let e = event_for(account, client, EventKind::LoginFailed, Outcome::Failure).with("reason", "wrong_sms_code");
        mfa::count_failure(state, account, client, e).await?;
        return Err(ApiError::new(ErrorCode::InvalidCode));
    }
    super::mfa::finish_login(state, client, account, token, detail, "sms", cnf).await
}
