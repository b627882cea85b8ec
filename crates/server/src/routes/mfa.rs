//! Second-factor endpoints: the second step of login, enrolment and removal of TOTP, backup
//! codes, the factor list, and the step-up endpoint that turns a proven factor into a
//! single-use token for one action.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use gatehouse_core::account::Account;
use gatehouse_core::audit::{EventKind, Outcome};
use gatehouse_core::clock::Span;
use gatehouse_core::mfa::store::{MfaToken, MfaTokenMatch, MfaTokenPurpose, totp_seed_aad};
use gatehouse_core::mfa::{BackupCodeSet, OtpAuthUri, TotpCheck, TotpParams, TotpSecret};
use gatehouse_core::secret::Token;
use gatehouse_core::session::SessionKind;
use gatehouse_core::stepup::{FactorStrength, SensitiveAction};
use gatehouse_core::store::SideEffects;
use serde::Deserialize;
use serde_json::{Value, json};

use crate::auth::Authenticated;
use crate::error::{ApiError, ApiResult, ErrorCode};
use crate::http::{ApiJson, ClientCtx};
use crate::mfa::{self, Factors, Method, event_for, mail};
use crate::state::AppState;
use crate::stepup::{StepUpInput, require, require_for_enrolment};

/// Answers a correct password for an account with a second factor: a short-lived, single-use
/// pending-login token and the methods that can finish the login. No session yet.
pub async fn pending_login(
    state: &AppState,
    client: &ClientCtx,
    account: &Account,
    kind: SessionKind,
    factors: &Factors,
) -> ApiResult<Response> {
    let now = state.clock.now();
    let token = Token::generate(state.rng.as_ref());
    let ttl = state.config.mfa.pending_login_ttl_secs;
    let t = MfaToken {
        hash: token.hash(),
        user_id: account.id,
        purpose: MfaTokenPurpose::Login,
        session_id: None,
        action: String::new(),
        binding: String::new(),
        factor: String::new(),
        strength: String::new(),
        detail: json!({ "session_type": kind.as_str(), "ua_family": client.ua_family.key() }).to_string(),
        created_at: now,
        expires_at: now.plus(Span::secs(ttl)),
    };
    let e = event_for(account, client, EventKind::LoginSecondFactorPending, Outcome::Success)
        .with("methods", json!(factors.methods()));
    state.store.create_mfa_token(&t, SideEffects::event(e)).await?;
    Ok((
        StatusCode::OK,
        Json(json!({
            "status": "second_factor_required",
            "pending_token": token.expose(),
            "expires_in": ttl,
            "methods": factors.methods(),
            "weaker_methods": if factors.sms { json!(["sms"]) } else { json!([]) },
            "factors": ["password"],
        })),
    )
        .into_response())
}

/// `POST /_gh/api/v1/sessions/second-factor`
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SecondFactor {
    pending_token: String,
    method: Method,
    code: String,
}

/// Finishes a login with a TOTP or backup code; issues a new session (R43).
pub async fn second_factor(
    State(state): State<AppState>,
    client: ClientCtx,
    pop: crate::pop::PopCtx,
    ApiJson(req): ApiJson<SecondFactor>,
) -> ApiResult<Response> {
    // The factor step is a token endpoint too: a DPoP proof or client certificate presented
    // here binds the session it issues (issue 9).
    let cnf = pop.login_binding(&state, &client).await?;
    let token = Token::parse(&req.pending_token).ok_or_else(|| ApiError::new(ErrorCode::PendingLoginInvalid))?;
    let now = state.clock.now();
    let pending = state
        .store
        .find_mfa_token(token.hash(), MfaTokenPurpose::Login, now)
        .await?
        .ok_or_else(|| ApiError::new(ErrorCode::PendingLoginInvalid))?;
    let detail: Value = serde_json::from_str(&pending.detail).unwrap_or(Value::Null);
    if detail["ua_family"].as_str() != Some(client.ua_family.key().as_str()) {
        return Err(ApiError::new(ErrorCode::PendingLoginInvalid));
    }
    let account = state
        .store
        .find_account(pending.user_id)
        .await?
        .filter(|a| a.can_sign_in())
        .ok_or_else(|| ApiError::new(ErrorCode::PendingLoginInvalid))?;
    if matches!(req.method, Method::Sms) {
        return crate::routes::mfa_sms::finish_login(
            &state,
            &client,
            &account,
            &pending,
            &req.code,
            &token,
            &detail,
            cnf.as_ref(),
        )
        .await;
    }
    let factor = mfa::verify_code(&state, &account, &client, req.method, &req.code, "login").await?;
    finish_login(&state, &client, &account, &token, &detail, factor, cnf.as_ref()).await
}

/// Consumes the pending-login token (single use, F8) and starts the session.
pub async fn finish_login(
    state: &AppState,
    client: &ClientCtx,
    account: &Account,
    token: &Token,
    detail: &Value,
    factor: &str,
    cnf: Option<&gatehouse_core::pop::Confirmation>,
) -> ApiResult<Response> {
    let m = MfaTokenMatch {
        hash: token.hash(),
        purpose: MfaTokenPurpose::Login,
        user_id: Some(account.id),
        session_id: None,
        action: None,
        binding: None,
    };
    if state.store.consume_mfa_token(&m, state.clock.now()).await?.is_none() {
        return Err(ApiError::new(ErrorCode::PendingLoginInvalid));
    }
    let kind = if detail["session_type"].as_str() == Some("browser") { SessionKind::Browser } else { SessionKind::Api };
    let factors = mfa::factors(state, account).await?;
    let mut extra = json!({ "second_factor": true });
    if factor == "backup_code" {
        extra["backup_codes_remaining"] = json!(factors.backup_remaining);
    }
    crate::routes::sessions::start_session(
        state,
        client,
        account,
        kind,
        &["password", factor],
        extra,
        crate::routes::sessions::SignInContext { risk: None, cnf },
    )
    .await
}

/// The factor list for an account.
pub fn factors_json(f: &Factors, creds: &[gatehouse_core::mfa::store::WebAuthnCredentialRow]) -> Value {
    json!({
        "has_second_factor": f.has_second_factor(),
        "totp": { "enabled": f.totp, "strength": "any_second_factor" },
        "backup_codes": { "remaining": f.backup_remaining, "total": f.backup_total, "strength": "any_second_factor" },
        "webauthn": creds.iter().map(|c| json!({
            "id": c.id,
            "name": c.name,
            "kind": c.kind,
            "created_at": c.created_at.to_rfc3339(),
            "last_used_at": c.last_used_at.map(|t| t.to_rfc3339()),
            "flagged": c.flagged_at.is_some(),
            "strength": "phishing_resistant",
        })).collect::<Vec<_>>(),
        "sms": { "enabled": f.sms, "available_for": ["login"], "weaker": true, "note": "SMS is a last resort: exposed to SIM swap and interception; never accepted for step-up, withdrawals, API keys or security settings." },
    })
}

/// `GET /_gh/api/v1/account/factors`
pub async fn list(State(state): State<AppState>, auth: Authenticated) -> ApiResult<Json<Value>> {
    let f = mfa::factors(&state, &auth.account).await?;
    let creds = state.store.list_webauthn_credentials(auth.account.id).await?;
    Ok(Json(factors_json(&f, &creds)))
}

/// Body carrying a proof for changing factors.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProofBody {
    /// The password (only for the first factor).
    #[serde(default)]
    password: Option<String>,
    /// A step-up token for `change_factors`.
    #[serde(default)]
    step_up_token: Option<String>,
}

impl ProofBody {
    /// The step-up input it carries.
    pub fn input(&self) -> StepUpInput<'_> {
        StepUpInput { password: self.password.as_deref(), step_up_token: self.step_up_token.as_deref() }
    }
}

/// `POST /_gh/api/v1/account/factors/totp`: starts enrolment. The seed is shown only here, as
/// an `otpauth://` URI, base32 text and an inline SVG QR code; it is stored sealed (R26).
pub async fn totp_start(
    State(state): State<AppState>,
    auth: Authenticated,
    ApiJson(body): ApiJson<ProofBody>,
) -> ApiResult<Response> {
    if state.store.find_totp(auth.account.id).await?.is_some_and(|t| t.confirmed_at.is_some()) {
        return Err(ApiError::new(ErrorCode::FactorExists));
    }
    crate::friction::ensure_settings_unlocked(&state, &auth, "second_factors").await?; // friction (issue 5)
    require_for_enrolment(&state, &auth, body.input()).await?;
    let secret = TotpSecret::generate(state.rng.as_ref());
    let sealed = state
        .keyring
        .seal(secret.expose().expose(), &totp_seed_aad(&auth.account.id), state.rng.as_ref())
        .map_err(|e| ApiError::internal("totp seal", e))?;
    let uri = OtpAuthUri::new(&state.config.mfa.issuer, auth.account.email.as_str(), secret, TotpParams::ENROLMENT)
        .map_err(|e| ApiError::internal("otpauth", e))?;
    let qr = uri.to_svg_qr().map_err(|e| ApiError::internal("qr", e))?;
    let now = state.clock.now();
    let e = auth.event(EventKind::TotpEnrolmentStarted, Outcome::Success);
    if !state.store.begin_totp(auth.account.id, &sealed, now, SideEffects::event(e)).await? {
        return Err(ApiError::new(ErrorCode::FactorExists));
    }
    Ok((
        StatusCode::CREATED,
        Json(json!({
            "status": "pending",
            "otpauth_uri": uri.to_uri().expose(),
            "secret": uri.secret().to_base32().expose(),
            "qr_svg": qr.expose(),
            "algorithm": "SHA1",
            "digits": 6,
            "period": 30,
            "expires_in": state.config.mfa.enrolment_ttl_secs,
        })),
    )
        .into_response())
}

/// `POST /_gh/api/v1/account/factors/totp/confirm`
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConfirmTotp {
    code: String,
}

/// Activates the pending factor with one correct code; the first second factor also gets a
/// set of backup codes, shown once.
pub async fn totp_confirm(
    State(state): State<AppState>,
    auth: Authenticated,
    ApiJson(req): ApiJson<ConfirmTotp>,
) -> ApiResult<Json<Value>> {
    let now = state.clock.now();
    let pending = state.store.find_totp(auth.account.id).await?.filter(|t| t.confirmed_at.is_none());
    let Some(pending) = pending.filter(|t| now.since(t.created_at) <= Span::secs(state.config.mfa.enrolment_ttl_secs))
    else {
        return Err(ApiError::new(ErrorCode::EnrolmentNotFound));
    };
    if !mfa::throttle_gate(&state, &auth.account, &auth.client).await? {
        return Err(ApiError::new(ErrorCode::InvalidCode));
    }
    let seed = state
        .keyring
        .open(&pending.seed_sealed, &totp_seed_aad(&auth.account.id))
        .map_err(|e| ApiError::internal("totp seed", e))?;
    let secret = TotpSecret::from_bytes(seed).map_err(|e| ApiError::internal("totp seed", e))?;
    let TotpCheck::Accepted { step } =
        gatehouse_core::mfa::verify(&secret, &TotpParams::ENROLMENT, &req.code, now, None)
    else {
        let e = auth.event(EventKind::TotpFailed, Outcome::Failure).with("flow", "enrolment");
        mfa::count_failure(&state, &auth.account, &auth.client, e).await?;
        return Err(ApiError::new(ErrorCode::InvalidCode));
    };
    let first = state.store.backup_codes(auth.account.id).await?.is_empty();
    let (shown, stored) = if first {
        let (shown, stored) = generate_codes(&state).await?;
        (Some(shown), Some(stored))
    } else {
        (None, None)
    };
    let mail = state
        .mail(auth.account.email.as_str(), &mail::factor_added("An authenticator app", &auth.client.ip.to_string()))?;
    let mut fx = SideEffects::event(auth.event(EventKind::TotpEnabled, Outcome::Success)).mail(mail).hold(
        auth.account.id,
        crate::friction::factor_change_hold_until(&state),
        "factor_change",
    );
    if first {
        fx = fx.and(auth.event(EventKind::BackupCodesGenerated, Outcome::Success).with("count", 10));
    }
    if !state.store.activate_totp(auth.account.id, step, stored.as_deref(), now, fx).await? {
        return Err(ApiError::new(ErrorCode::EnrolmentNotFound));
    }
    state.wake_mailer();
    let mut body = json!({ "status": "enabled" });
    if let Some(codes) = shown {
        body["backup_codes"] = json!(codes.iter().map(|c| c.expose()).collect::<Vec<_>>());
        body["backup_codes_notice"] = json!("Shown once. Each code works once; store them offline.");
    }
    Ok(Json(body))
}

async fn generate_codes(
    state: &AppState,
) -> ApiResult<(Vec<gatehouse_core::secret::SecretString>, Vec<gatehouse_core::mfa::StoredBackupCode>)> {
    let rng = state.rng.clone();
    let params = state.config.password.argon2;
    state
        .hash_pool
        .run(move || BackupCodeSet::generate(rng.as_ref(), params))
        .await
        .map_err(|_| ApiError::new(ErrorCode::Overloaded))?
        .map_err(|e| ApiError::internal("backup codes", e))
}

/// `POST /_gh/api/v1/account/factors/totp/remove` (step-up `change_factors`).
pub async fn totp_remove(
    State(state): State<AppState>,
    auth: Authenticated,
    ApiJson(body): ApiJson<ProofBody>,
) -> ApiResult<Json<Value>> {
    crate::friction::ensure_settings_unlocked(&state, &auth, "second_factors").await?; // friction (issue 5)
    require(&state, &auth, SensitiveAction::ChangeFactors, None, body.input()).await?;
    let mail = state.mail(
        auth.account.email.as_str(),
        &mail::factor_removed("The authenticator app", &auth.client.ip.to_string()),
    )?;
    let fx = SideEffects::event(auth.event(EventKind::TotpDisabled, Outcome::Success)).mail(mail).hold(
        auth.account.id,
        crate::friction::factor_change_hold_until(&state),
        "factor_change",
    );
    if !state.store.delete_totp(auth.account.id, fx).await? {
        return Err(ApiError::new(ErrorCode::NotFound));
    }
    state.wake_mailer();
    Ok(Json(json!({ "status": "removed" })))
}

/// `POST /_gh/api/v1/account/backup-codes`: a new set (the old one stops working at once).
pub async fn backup_regenerate(
    State(state): State<AppState>,
    auth: Authenticated,
    ApiJson(body): ApiJson<ProofBody>,
) -> ApiResult<Response> {
    crate::friction::ensure_settings_unlocked(&state, &auth, "second_factors").await?; // friction (issue 5)
    require(&state, &auth, SensitiveAction::ChangeFactors, None, body.input()).await?;
    let (shown, stored) = generate_codes(&state).await?;
    let mail = state.mail(auth.account.email.as_str(), &mail::backup_codes_regenerated(&auth.client.ip.to_string()))?;
    let fx =
        SideEffects::event(auth.event(EventKind::BackupCodesGenerated, Outcome::Success).with("count", stored.len()))
            .mail(mail);
    state.store.replace_backup_codes(auth.account.id, &stored, state.clock.now(), fx).await?;
    state.wake_mailer();
    Ok((
        StatusCode::CREATED,
        Json(json!({
            "backup_codes": shown.iter().map(|c| c.expose()).collect::<Vec<_>>(),
            "remaining": shown.len(),
            "backup_codes_notice": "Shown once. Each code works once; the previous set no longer works.",
        })),
    )
        .into_response())
}

/// `POST /_gh/api/v1/account/step-up`
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StepUpRequest {
    /// The action to authorise.
    action: SensitiveAction,
    /// Hex of the 32-byte value being approved (e.g. a withdrawal intent hash).
    #[serde(default)]
    binding: Option<String>,
    /// `totp` or `backup_code` (WebAuthn: `/account/step-up/webauthn/start`; SMS: refused).
    method: Method,
    /// The code.
    #[serde(default)]
    code: Option<String>,
}

/// Parses an optional hex binding (exactly 32 bytes).
pub fn parse_binding(raw: Option<&str>) -> ApiResult<Option<[u8; 32]>> {
    let Some(raw) = raw.filter(|b| !b.is_empty()) else { return Ok(None) };
    let bytes = hex::decode(raw).ok().filter(|b| b.len() == 32).ok_or_else(|| {
        ApiError::new(ErrorCode::InvalidRequest).message("binding must be 64 hex characters (32 bytes)")
    })?;
    let mut out = [0u8; 32];
    out.copy_from_slice(&bytes);
    Ok(Some(out))
}

/// Proves a factor for one action and returns a single-use step-up token.
pub async fn step_up(
    State(state): State<AppState>,
    auth: Authenticated,
    ApiJson(req): ApiJson<StepUpRequest>,
) -> ApiResult<Response> {
    let binding = parse_binding(req.binding.as_deref())?;
    match req.method {
        Method::Sms => {
            return Err(ApiError::new(ErrorCode::FactorNotAllowed)
                .message("SMS is never accepted for step-up (R39).")
                .details(json!({ "method": "sms" })));
        }
        Method::Webauthn => {
            return Err(ApiError::new(ErrorCode::FactorNotAllowed)
                .message("Use /account/step-up/webauthn/start and /finish for security keys."));
        }
        Method::Totp | Method::BackupCode => {}
    }
    let code =
        req.code.as_deref().ok_or_else(|| ApiError::new(ErrorCode::InvalidRequest).message("code is required"))?;
    let factor = if req.method == Method::Totp { "totp" } else { "backup_code" };
    let strength = mfa::strength_of(factor);
    let needed = state.config.mfa.step_up.needed(req.action, auth.account.high_value);
    let binding_hex = binding.map(hex::encode).unwrap_or_default();
    // Strong enough: the code's use, the token, the session proof and the rotated access token
    // (R43) commit as one write. Too weak: the code is still checked (and used), then refused.
    let mint =
        (strength >= needed).then(|| mfa::StepUpMint::new(&state, &auth, req.action, &binding_hex, factor, strength));
    mfa::verify_code_then(&state, &auth.account, &auth.client, req.method, code, "step_up", mint.as_ref()).await?;
    let Some(mint) = mint else {
        // The code was right (and is now used), but it is not enough for this action: say so
        // rather than hand out a token `require` would refuse.
        let e = auth
            .event(EventKind::StepUpDenied, Outcome::Denied)
            .with("action", req.action.as_str())
            .with("reason", "too_weak");
        state.store.append(vec![e]).await?;
        return Err(ApiError::new(if needed == FactorStrength::PhishingResistant {
            ErrorCode::PhishingResistantRequired
        } else {
            ErrorCode::StepUpRequired
        })
        .details(json!({ "action": req.action.as_str(), "strength": needed.as_str() })));
    };
    Ok(mint.response(&state, json!({ "action": req.action.as_str(), "strength": strength.as_str(), "factor": factor })))
}
