//! WebAuthn endpoints: register security keys and passkeys, remove them (step-up), finish a
//! login with one, sign in with a passkey and no password, and step up with one (the challenge
//! commits to the action and binding). Ceremony state stays in the database.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use gatehouse_core::audit::{EventKind, Outcome};
use gatehouse_core::clock::Span;
use gatehouse_core::mfa::store::{CeremonyRow, FactorUse, MfaTokenPurpose, WebAuthnCredentialRow};
use gatehouse_core::secret::Token;
use gatehouse_core::session::SessionKind;
use gatehouse_core::stepup::{FactorStrength, SensitiveAction};
use gatehouse_core::store::{SideEffects, StoreError};
use serde::Deserialize;
use serde_json::{Value, json};
use webauthn_rs::prelude::{DiscoverableAuthentication, Passkey, PublicKeyCredential, RegisterPublicKeyCredential};

use super::mfa::{finish_login, parse_binding};
use crate::auth::Authenticated;
use crate::error::{ApiError, ApiResult, ErrorCode};
use crate::http::{ApiJson, ClientCtx};
use crate::mfa::webauthn::{
    CEREMONY_SECS, MAX_CRED_ID_BYTES, cred_id_text, finish_assertion, passkeys_of, relying_party, start_assertion, take,
};
use crate::mfa::{self, event_for, mail};
use crate::state::AppState;
use crate::stepup::{StepUpInput, require, require_for_enrolment};

/// `POST /_gh/api/v1/account/webauthn/register/start`
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RegisterStart {
    /// The user's name for the key (1–64 characters).
    name: String,
    /// `security_key` (second factor) or `passkey` (also passwordless sign-in).
    #[serde(default)]
    kind: Option<String>,
    #[serde(default)]
    password: Option<String>,
    #[serde(default)]
    step_up_token: Option<String>,
}

/// Starts a registration (first factor: the password; later ones: step-up `change_factors`).
pub async fn register_start(
    State(state): State<AppState>,
    auth: Authenticated,
    ApiJson(req): ApiJson<RegisterStart>,
) -> ApiResult<Json<Value>> {
    let name = req.name.trim().to_owned();
    if name.is_empty() || name.chars().count() > 64 || name.chars().any(char::is_control) {
        return Err(ApiError::new(ErrorCode::InvalidRequest).message("name must be 1–64 printable characters"));
    }
    let kind = match req.kind.as_deref().unwrap_or("security_key") {
        k @ ("security_key" | "passkey") => k.to_owned(),
        _ => return Err(ApiError::new(ErrorCode::InvalidRequest).message("kind is security_key or passkey")),
    };
    let input = StepUpInput { password: req.password.as_deref(), step_up_token: req.step_up_token.as_deref() };
    crate::friction::ensure_settings_unlocked(&state, &auth, "second_factors").await?; // friction (issue 5)
    require_for_enrolment(&state, &auth, input).await?;
    let existing = state.store.list_webauthn_credentials(auth.account.id).await?;
    if existing.len() >= 10 {
        return Err(ApiError::new(ErrorCode::FactorExists).message("At most 10 security keys."));
    }
    let exclude: Vec<_> = passkeys_of(&state, auth.account.id).await?.iter().map(|p| p.cred_id().clone()).collect();
    // R33: 64 random bytes per account, no PII (the email is only the display name).
    let handle = crate::mfa::webauthn::account_handle(&state, auth.account.id).await?;
    let (ccr, reg) = crate::mfa::webauthn::start_registration(&state, &handle, auth.account.email.as_str(), exclude)?;
    let mut options = serde_json::to_value(&ccr).map_err(|e| ApiError::internal("webauthn", e))?;
    if kind == "passkey"
        && let Some(sel) = options.get_mut("publicKey").and_then(|p| p.get_mut("authenticatorSelection"))
    {
        sel["residentKey"] = json!("required");
        sel["requireResidentKey"] = json!(true);
    }
    let id = Token::generate(state.rng.as_ref()).expose().to_owned();
    let st = serde_json::to_string(&reg).map_err(|e| ApiError::internal("webauthn", e))?;
    state
        .store
        .create_ceremony(&CeremonyRow {
            id: id.clone(),
            user_id: Some(auth.account.id),
            kind: "register".into(),
            state: st,
            detail: json!({ "name": name, "kind": kind, "session": auth.session.id.to_string() }).to_string(),
            expires_at: state.clock.now().plus(Span::secs(CEREMONY_SECS)),
        })
        .await?;
    Ok(Json(json!({ "ceremony_id": id, "options": options })))
}

/// `POST /_gh/api/v1/account/webauthn/register/finish`
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RegisterFinish {
    ceremony_id: String,
    credential: RegisterPublicKeyCredential,
}

/// Verifies the attestation and stores the credential (a credential id registered anywhere
/// already is refused, R32). The first second factor also gets backup codes.
pub async fn register_finish(
    State(state): State<AppState>,
    auth: Authenticated,
    ApiJson(req): ApiJson<RegisterFinish>,
) -> ApiResult<Response> {
    let c = take(&state, &req.ceremony_id, "register", Some(auth.account.id)).await?;
    let detail: Value = serde_json::from_str(&c.detail).unwrap_or(Value::Null);
    if detail["session"].as_str() != Some(auth.session.id.to_string().as_str()) {
        return Err(ApiError::new(ErrorCode::CeremonyInvalid));
    }
    let pk = match crate::mfa::webauthn::finish_registration(&state, &c.state, &req.credential)? {
        Ok(pk) => pk,
        Err(e) => {
            let ev = auth
                .event(EventKind::WebAuthnFailed, Outcome::Failure)
                .with("flow", "register")
                .with("reason", e.to_string());
            state.store.append(vec![ev]).await?;
            return Err(ApiError::new(ErrorCode::WebAuthnFailed));
        }
    };
    if pk.cred_id().len() > MAX_CRED_ID_BYTES {
        return Err(ApiError::new(ErrorCode::WebAuthnFailed).message("Credential id too long."));
    }
    let id = cred_id_text(pk.cred_id());
    let name = detail["name"].as_str().unwrap_or("Security key").to_owned();
    let kind = detail["kind"].as_str().unwrap_or("security_key").to_owned();
    let now = state.clock.now();
    let row = WebAuthnCredentialRow {
        id: id.clone(),
        user_id: auth.account.id,
        name: name.clone(),
        kind: kind.clone(),
        credential: serde_json::to_string(&pk).map_err(|e| ApiError::internal("webauthn", e))?,
        created_at: now,
        last_used_at: None,
        flagged_at: None,
    };
    let m = state.mail(
        auth.account.email.as_str(),
        &mail::factor_added(&format!("The security key \"{name}\""), &auth.client.ip.to_string()),
    )?;
    let fx = SideEffects::event(
        auth.event(EventKind::WebAuthnRegistered, Outcome::Success)
            .with("name", name.clone())
            .with("kind", kind.clone()),
    )
    .mail(m)
    .hold(auth.account.id, crate::friction::factor_change_hold_until(&state), "factor_change");
    match state.store.create_webauthn_credential(&row, fx).await {
        Ok(()) => {}
        Err(StoreError::Conflict) => {
            return Err(ApiError::new(ErrorCode::WebAuthnFailed).message("This credential is already registered."));
        }
        Err(e) => return Err(e.into()),
    }
    state.wake_mailer();
    let mut body = json!({ "id": id, "name": name, "kind": kind, "created_at": now.to_rfc3339() });
    if state.store.backup_codes(auth.account.id).await?.is_empty() {
        let rng = state.rng.clone();
        let params = state.config.password.argon2;
        let (shown, stored) = state
            .hash_pool
            .run(move || gatehouse_core::mfa::BackupCodeSet::generate(rng.as_ref(), params))
            .await
            .map_err(|_| ApiError::new(ErrorCode::Overloaded))?
            .map_err(|e| ApiError::internal("backup codes", e))?;
        let ev = auth.event(EventKind::BackupCodesGenerated, Outcome::Success).with("count", stored.len());
        state.store.replace_backup_codes(auth.account.id, &stored, now, SideEffects::event(ev)).await?;
        body["backup_codes"] = json!(shown.iter().map(|c| c.expose()).collect::<Vec<_>>());
    }
    Ok((StatusCode::CREATED, Json(body)).into_response())
}

/// `POST /_gh/api/v1/account/webauthn/remove`
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Remove {
    id: String,
    #[serde(default)]
    step_up_token: Option<String>,
}

/// Removes one credential (step-up `change_factors`).
pub async fn remove(
    State(state): State<AppState>,
    auth: Authenticated,
    ApiJson(req): ApiJson<Remove>,
) -> ApiResult<Json<Value>> {
    crate::friction::ensure_settings_unlocked(&state, &auth, "second_factors").await?; // friction (issue 5)
    require(
        &state,
        &auth,
        SensitiveAction::ChangeFactors,
        None,
        StepUpInput { password: None, step_up_token: req.step_up_token.as_deref() },
    )
    .await?;
    let Some(row) = state.store.find_webauthn_credential(&req.id).await?.filter(|r| r.user_id == auth.account.id)
    else {
        return Err(ApiError::new(ErrorCode::NotFound));
    };
    let m = state.mail(
        auth.account.email.as_str(),
        &mail::factor_removed(&format!("The security key \"{}\"", row.name), &auth.client.ip.to_string()),
    )?;
    let fx =
        SideEffects::event(auth.event(EventKind::WebAuthnRemoved, Outcome::Success).with("name", row.name.clone()))
            .mail(m)
            .hold(auth.account.id, crate::friction::factor_change_hold_until(&state), "factor_change");
    if !state.store.delete_webauthn_credential(auth.account.id, &req.id, fx).await? {
        return Err(ApiError::new(ErrorCode::NotFound));
    }
    state.wake_mailer();
    Ok(Json(json!({ "status": "removed" })))
}

/// `POST /_gh/api/v1/sessions/second-factor/webauthn/start`
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LoginStart {
    pending_token: String,
}

async fn pending(
    state: &AppState,
    raw: &str,
) -> ApiResult<(Token, gatehouse_core::mfa::store::MfaToken, gatehouse_core::account::Account)> {
    let token = Token::parse(raw).ok_or_else(|| ApiError::new(ErrorCode::PendingLoginInvalid))?;
    let p = state
        .store
        .find_mfa_token(token.hash(), MfaTokenPurpose::Login, state.clock.now())
        .await?
        .ok_or_else(|| ApiError::new(ErrorCode::PendingLoginInvalid))?;
    let account = state
        .store
        .find_account(p.user_id)
        .await?
        .filter(|a| a.can_sign_in())
        .ok_or_else(|| ApiError::new(ErrorCode::PendingLoginInvalid))?;
    Ok((token, p, account))
}

/// Options for finishing a login with a security key.
pub async fn login_start(State(state): State<AppState>, ApiJson(req): ApiJson<LoginStart>) -> ApiResult<Json<Value>> {
    let (token, _, account) = pending(&state, &req.pending_token).await?;
    let detail = json!({ "pending": token.hash().short() });
    let (id, options) = start_assertion(&state, &account, "login", detail, None).await?;
    Ok(Json(json!({ "ceremony_id": id, "options": options })))
}

/// `POST /_gh/api/v1/sessions/second-factor/webauthn/finish`
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LoginFinish {
    pending_token: String,
    ceremony_id: String,
    credential: PublicKeyCredential,
}

/// Finishes a login with a security key: a new session.
pub async fn login_finish(
    State(state): State<AppState>,
    client: ClientCtx,
    pop: crate::pop::PopCtx,
    ApiJson(req): ApiJson<LoginFinish>,
) -> ApiResult<Response> {
    let cnf = pop.login_binding(&state, &client).await?;
    let (token, p, account) = pending(&state, &req.pending_token).await?;
    let detail: Value = serde_json::from_str(&p.detail).unwrap_or(Value::Null);
    if detail["ua_family"].as_str() != Some(client.ua_family.key().as_str()) {
        return Err(ApiError::new(ErrorCode::PendingLoginInvalid));
    }
    let c = take(&state, &req.ceremony_id, "login", Some(account.id)).await?;
    let d: Value = serde_json::from_str(&c.detail).unwrap_or(Value::Null);
    if d["pending"].as_str() != Some(token.hash().short().as_str()) {
        return Err(ApiError::new(ErrorCode::CeremonyInvalid));
    }
    if !mfa::throttle_gate(&state, &account, &client).await? {
        return Err(ApiError::new(ErrorCode::WebAuthnFailed));
    }
    finish_assertion(&state, &account, &client, &c, &req.credential, "login").await?;
    finish_login(&state, &client, &account, &token, &detail, "webauthn", cnf.as_ref()).await
}

/// `POST /_gh/api/v1/sessions/passkey/start`: passwordless sign-in options (no user yet).
pub async fn passkey_start(State(state): State<AppState>) -> ApiResult<Json<Value>> {
    let wa = relying_party(&state)?;
    let (rcr, st) = wa.start_discoverable_authentication().map_err(|e| ApiError::internal("webauthn", e))?;
    let id = Token::generate(state.rng.as_ref()).expose().to_owned();
    state
        .store
        .create_ceremony(&CeremonyRow {
            id: id.clone(),
            user_id: None,
            kind: "passkey_login".into(),
            state: serde_json::to_string(&st).map_err(|e| ApiError::internal("webauthn", e))?,
            detail: "{}".into(),
            expires_at: state.clock.now().plus(Span::secs(CEREMONY_SECS)),
        })
        .await?;
    let options = serde_json::to_value(&rcr).map_err(|e| ApiError::internal("webauthn", e))?;
    Ok(Json(json!({ "ceremony_id": id, "options": options })))
}

/// `POST /_gh/api/v1/sessions/passkey/finish`
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PasskeyFinish {
    ceremony_id: String,
    credential: PublicKeyCredential,
    #[serde(default)]
    session_type: Option<SessionKind>,
}

/// Signs in with a passkey alone (user verification required: possession plus PIN or
/// biometric, phishing-resistant).
pub async fn passkey_finish(
    State(state): State<AppState>,
    client: ClientCtx,
    pop: crate::pop::PopCtx,
    ApiJson(req): ApiJson<PasskeyFinish>,
) -> ApiResult<Response> {
    let cnf = pop.login_binding(&state, &client).await?;
    let c = take(&state, &req.ceremony_id, "passkey_login", None).await?;
    let st: DiscoverableAuthentication =
        serde_json::from_str(&c.state).map_err(|e| ApiError::internal("webauthn", e))?;
    let wa = relying_party(&state)?;
    // Not `identify_discoverable_authentication`: it reads the handle as a 16-byte UUID, and
    // handles are 64 bytes now (R33).
    let handle = req.credential.get_user_unique_id().ok_or_else(|| ApiError::new(ErrorCode::WebAuthnFailed))?;
    let id = cred_id_text(req.credential.get_credential_id());
    let row =
        state.store.find_webauthn_credential(&id).await?.ok_or_else(|| ApiError::new(ErrorCode::WebAuthnFailed))?;
    let account = state
        .store
        .find_account(row.user_id)
        .await?
        .filter(|a| a.can_sign_in() && a.email_verified_at.is_some())
        .ok_or_else(|| ApiError::new(ErrorCode::WebAuthnFailed))?;
    if !crate::mfa::webauthn::is_users_handle(&state, account.id, handle).await? {
        return Err(ApiError::new(ErrorCode::WebAuthnFailed));
    }
    if row.flagged_at.is_some() {
        return Err(ApiError::new(ErrorCode::CredentialFlagged));
    }
    if !mfa::throttle_gate(&state, &account, &client).await? {
        return Err(ApiError::new(ErrorCode::WebAuthnFailed));
    }
    let mut pk: Passkey = serde_json::from_str(&row.credential).map_err(|e| ApiError::internal("webauthn", e))?;
    let result = match wa.finish_discoverable_authentication_v2(&req.credential, st, &pk) {
        Ok(r) if r.user_verified() => r,
        Ok(_) | Err(_) => {
            let e =
                event_for(&account, &client, EventKind::WebAuthnFailed, Outcome::Failure).with("flow", "passkey_login");
            mfa::count_failure(&state, &account, &client, e).await?;
            return Err(ApiError::new(ErrorCode::WebAuthnFailed));
        }
    };
    pk.update_credential(&result);
    let json = serde_json::to_string(&pk).map_err(|e| ApiError::internal("webauthn", e))?;
    if !state.store.update_webauthn_credential(&id, &json, state.clock.now(), SideEffects::default()).await? {
        return Err(ApiError::new(ErrorCode::CredentialFlagged));
    }
    let kind = req.session_type.unwrap_or(SessionKind::Api);
    crate::routes::sessions::start_session(
        &state,
        &client,
        &account,
        kind,
        &["passkey"],
        json!({ "second_factor": true }),
        crate::routes::sessions::SignInContext { risk: None, cnf: cnf.as_ref() },
    )
    .await
}

/// `POST /_gh/api/v1/account/step-up/webauthn/start`
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StepUpStart {
    action: SensitiveAction,
    #[serde(default)]
    binding: Option<String>,
}

/// The challenge commitment of a step-up: action, binding and session.
fn commitment(action: SensitiveAction, binding: &str, session: &str) -> Vec<u8> {
    let mut c = Vec::new();
    for part in [action.as_str(), binding, session] {
        c.extend_from_slice(&(part.len() as u32).to_be_bytes());
        c.extend_from_slice(part.as_bytes());
    }
    c
}

/// Options for stepping up with a security key; the challenge commits to the action and binding.
pub async fn step_up_start(
    State(state): State<AppState>,
    auth: Authenticated,
    ApiJson(req): ApiJson<StepUpStart>,
) -> ApiResult<Json<Value>> {
    let binding = parse_binding(req.binding.as_deref())?.map(hex::encode).unwrap_or_default();
    let session = auth.session.id.to_string();
    let detail = json!({ "action": req.action.as_str(), "binding": binding, "session": session });
    let commit = commitment(req.action, &binding, &session);
    let (id, options) = start_assertion(&state, &auth.account, "step_up", detail, Some(&commit)).await?;
    Ok(Json(json!({ "ceremony_id": id, "options": options })))
}

/// `POST /_gh/api/v1/account/step-up/webauthn/finish`
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StepUpFinish {
    ceremony_id: String,
    credential: PublicKeyCredential,
}

/// Verifies the assertion (user verification required) and answers a phishing-resistant
/// step-up token for the ceremony's action and binding.
pub async fn step_up_finish(
    State(state): State<AppState>,
    auth: Authenticated,
    ApiJson(req): ApiJson<StepUpFinish>,
) -> ApiResult<Response> {
    let c = take(&state, &req.ceremony_id, "step_up", Some(auth.account.id)).await?;
    let d: Value = serde_json::from_str(&c.detail).unwrap_or(Value::Null);
    if d["session"].as_str() != Some(auth.session.id.to_string().as_str()) {
        return Err(ApiError::new(ErrorCode::CeremonyInvalid));
    }
    let action: SensitiveAction =
        serde_json::from_value(d["action"].clone()).map_err(|e| ApiError::internal("webauthn", e))?;
    let binding = d["binding"].as_str().unwrap_or("").to_owned();
    if !mfa::throttle_gate(&state, &auth.account, &auth.client).await? {
        return Err(ApiError::new(ErrorCode::WebAuthnFailed));
    }
    finish_assertion(&state, &auth.account, &auth.client, &c, &req.credential, "step_up").await?;
    let strength = FactorStrength::PhishingResistant;
    // The token, the session proof and the rotated access token (R43) commit as one write.
    let mint = mfa::StepUpMint::new(&state, &auth, action, &binding, "webauthn", strength);
    if !mint.commit(&state, FactorUse::Nothing, SideEffects::default()).await? {
        return Err(ApiError::internal("webauthn step-up", "grant refused without a factor use"));
    }
    Ok(mint.response(&state, json!({ "action": action.as_str(), "strength": strength.as_str(), "factor": "webauthn" })))
}
