//! API-key management for the signed-in owner: create (secret shown once), list, inspect with
//! usage, rotate with overlap, revoke, unlock withdrawals, change the IP allowlist. Every
//! change needs the password re-entered (the step-up policy replaces this when second
//! factors land) and is audited and notified.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use gatehouse_core::apikey::{ApiKey, ApiKeyId, IpAllowlist, KeyKind, NewApiKey, ScopeSet};
use gatehouse_core::audit::{EventKind, Outcome};
use gatehouse_core::clock::Timestamp;
use gatehouse_core::store::SideEffects;
use serde::Deserialize;
use serde_json::{Value, json};

use crate::apikeys::{KeyOps, KeyServiceError, key_json};
use crate::auth::Authenticated;
use crate::error::{ApiError, ApiResult, ErrorCode};
use crate::http::ApiJson;
use crate::mail::templates;
use crate::state::AppState;
use crate::stepup::{StepUpInput, require};
use gatehouse_core::stepup::SensitiveAction;

fn ops(state: &AppState) -> KeyOps<'_> {
    KeyOps {
        store: state.store.as_ref(),
        keyring: &state.keyring,
        rng: state.rng.as_ref(),
        policy: &state.config.apikey,
    }
}

impl From<KeyServiceError> for ApiError {
    fn from(e: KeyServiceError) -> Self {
        match e {
            KeyServiceError::Rule(r) => ApiError::new(ErrorCode::InvalidKeyRequest).message(r.to_string()),
            KeyServiceError::PublicKey(m) => {
                ApiError::new(ErrorCode::InvalidKeyRequest).message(format!("Invalid public key: {m}"))
            }
            KeyServiceError::Limit => ApiError::new(ErrorCode::KeyLimit),
            KeyServiceError::NotFound => ApiError::new(ErrorCode::NotFound),
            KeyServiceError::Store(s) => s.into(),
            KeyServiceError::Seal => ApiError::internal("api key", "sealing failed"),
        }
    }
}

/// The step-up input of a key request.
fn input<'a>(password: &'a Option<String>, token: &'a Option<String>) -> StepUpInput<'a> {
    StepUpInput { password: password.as_deref(), step_up_token: token.as_deref() }
}

fn parse_id(id: &str) -> ApiResult<ApiKeyId> {
    ApiKeyId::parse(id).ok_or_else(|| ApiError::new(ErrorCode::NotFound))
}

fn invalidate(state: &AppState, id: &ApiKeyId) {
    if let Some(gw) = &state.gateway {
        gw.keys.invalidate(id);
    }
}

/// `POST /_gh/api/v1/api-keys`
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateKey {
    /// Your password, re-entered (only where the step-up policy allows `password`).
    #[serde(default)]
    password: Option<String>,
    /// A step-up token for `create_api_key`.
    #[serde(default)]
    step_up_token: Option<String>,
    /// Label for the integration.
    label: String,
    /// `hmac`, `ed25519` or `rsa`.
    kind: KeyKind,
    /// Scopes; read-only when absent.
    #[serde(default)]
    scopes: Option<ScopeSet>,
    /// IP allowlist (≤ 10 CIDRs); required with `withdraw`.
    #[serde(default)]
    allowlist: Option<IpAllowlist>,
    /// Expiry, Unix milliseconds; 365 days when absent.
    #[serde(default)]
    expires_at_ms: Option<i64>,
    /// PEM public key (Ed25519 also as 32 raw bytes in base64) for `ed25519` and `rsa`.
    #[serde(default)]
    public_key: Option<String>,
}

/// Creates a key.
pub async fn create(
    State(state): State<AppState>,
    auth: Authenticated,
    ApiJson(req): ApiJson<CreateKey>,
) -> ApiResult<Response> {
    crate::friction::ensure_settings_unlocked(&state, &auth, "api_key").await?; // friction (issue 5)
    require(&state, &auth, SensitiveAction::CreateApiKey, None, input(&req.password, &req.step_up_token)).await?;
    let new = NewApiKey {
        label: req.label,
        kind: req.kind,
        scopes: req.scopes.unwrap_or_else(ScopeSet::read_only_default),
        allowlist: req.allowlist.unwrap_or_else(IpAllowlist::empty),
        expires_at: req.expires_at_ms.map(Timestamp::from_millis),
    };
    let now = state.clock.now();
    let mail = state
        .mail(auth.account.email.as_str(), &templates::api_key_created(&new.label, &auth.client.ip.to_string()))?;
    // friction (issue 5): a key that can withdraw holds withdrawals, in the same transaction.
    let mut extra = SideEffects::default().mail(mail);
    if new.scopes.has_withdraw() {
        extra = extra.hold(auth.account.id, now.plus(state.config.friction.hold()), "api_key_withdraw");
    }
    // end friction
    let (key, secret) = ops(&state)
        .create(
            auth.account.id,
            new,
            req.public_key.as_deref(),
            now,
            |k| {
                auth.event(EventKind::ApiKeyCreated, Outcome::Success)
                    .with("key", k.id.to_string())
                    .with("kind", json!(k.kind))
                    .with("scopes", json!(k.scopes))
                    .with("allowlist", json!(k.allowlist))
            },
            extra,
        )
        .await?;
    state.wake_mailer();
    let mut body = key_json(&key, now);
    if let (Some(b), Some(s)) = (body.as_object_mut(), secret) {
        b.insert("secret".into(), Value::from(s.expose()));
        b.insert(
            "secret_notice".into(),
            Value::from("Shown once. gatehouse stores it encrypted and cannot show it again."),
        );
    }
    Ok((StatusCode::CREATED, Json(body)).into_response())
}

/// `GET /_gh/api/v1/api-keys`
pub async fn list(State(state): State<AppState>, auth: Authenticated) -> ApiResult<Json<Value>> {
    let keys = state.store.list_api_keys(auth.account.id).await?;
    let now = state.clock.now();
    Ok(Json(json!({ "api_keys": keys.iter().map(|k| key_json(k, now)).collect::<Vec<_>>() })))
}

/// `GET /_gh/api/v1/api-keys/{id}`: the key and its usage counts.
pub async fn get(State(state): State<AppState>, auth: Authenticated, Path(id): Path<String>) -> ApiResult<Json<Value>> {
    let id = parse_id(&id)?;
    let key = ops(&state).owned(auth.account.id, id).await?;
    let usage = state.store.key_usage(id).await?;
    let mut body = key_json(&key, state.clock.now());
    body["usage"] = usage
        .iter()
        .map(|u| json!({ "route": u.route, "outcome": u.outcome, "count": u.count, "last_at": u.last_at.to_rfc3339() }))
        .collect();
    Ok(Json(body))
}

/// Body of the state-changing key endpoints.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeyChange {
    /// Your password, re-entered (only where the step-up policy allows `password`).
    #[serde(default)]
    password: Option<String>,
    /// A step-up token for the action.
    #[serde(default)]
    step_up_token: Option<String>,
    /// New allowlist (`/allowlist` only).
    #[serde(default)]
    allowlist: Option<IpAllowlist>,
    /// New kind (`/rotate` only; default: same kind).
    #[serde(default)]
    kind: Option<KeyKind>,
    /// New public key (`/rotate` of an asymmetric key).
    #[serde(default)]
    public_key: Option<String>,
}

/// `POST /_gh/api/v1/api-keys/{id}/revoke`
pub async fn revoke(
    State(state): State<AppState>,
    auth: Authenticated,
    Path(id): Path<String>,
    ApiJson(req): ApiJson<KeyChange>,
) -> ApiResult<Json<Value>> {
    let id = parse_id(&id)?;
    require(&state, &auth, SensitiveAction::ChangeApiKey, None, input(&req.password, &req.step_up_token)).await?;
    let now = state.clock.now();
    let key = ops(&state)
        .modify(
            auth.account.id,
            id,
            |k| {
                k.revoke(now);
                Ok(())
            },
            |k| auth.event(EventKind::ApiKeyRevoked, Outcome::Success).with("key", k.id.to_string()),
        )
        .await?;
    invalidate(&state, &id);
    Ok(Json(key_json(&key, now)))
}

/// `POST /_gh/api/v1/api-keys/{id}/rotate`: a successor with fresh material; this key keeps
/// working until `min(expiry, now + grace)`.
pub async fn rotate(
    State(state): State<AppState>,
    auth: Authenticated,
    Path(id): Path<String>,
    ApiJson(req): ApiJson<KeyChange>,
) -> ApiResult<Response> {
    let id = parse_id(&id)?;
    require(&state, &auth, SensitiveAction::RotateApiKey, None, input(&req.password, &req.step_up_token)).await?;
    let now = state.clock.now();
    let (next, secret) = ops(&state)
        .rotate(auth.account.id, id, req.kind, req.public_key.as_deref(), now, |old: &ApiKey, new: &ApiKey| {
            auth.event(EventKind::ApiKeyRotated, Outcome::Success)
                .with("key", old.id.to_string())
                .with("successor", new.id.to_string())
                .with("predecessor_valid_until", old.valid_until.map(|t| t.to_rfc3339()))
        })
        .await?;
    invalidate(&state, &id);
    let mut body = key_json(&next, now);
    if let (Some(b), Some(s)) = (body.as_object_mut(), secret) {
        b.insert("secret".into(), Value::from(s.expose()));
    }
    Ok((StatusCode::CREATED, Json(body)).into_response())
}

/// `POST /_gh/api/v1/api-keys/{id}/unlock-withdraw`: lifts the withdraw safety lock.
pub async fn unlock_withdraw(
    State(state): State<AppState>,
    auth: Authenticated,
    Path(id): Path<String>,
    ApiJson(req): ApiJson<KeyChange>,
) -> ApiResult<Json<Value>> {
    let id = parse_id(&id)?;
    require(&state, &auth, SensitiveAction::UnlockApiKey, None, input(&req.password, &req.step_up_token)).await?;
    let key = ops(&state)
        .modify(
            auth.account.id,
            id,
            |k| k.unlock_withdraw(),
            |k| auth.event(EventKind::ApiKeyWithdrawUnlocked, Outcome::Success).with("key", k.id.to_string()),
        )
        .await?;
    invalidate(&state, &id);
    Ok(Json(key_json(&key, state.clock.now())))
}

/// `POST /_gh/api/v1/api-keys/{id}/allowlist`: narrowing applies at once; widening a
/// withdraw key waits (R69).
pub async fn allowlist(
    State(state): State<AppState>,
    auth: Authenticated,
    Path(id): Path<String>,
    ApiJson(req): ApiJson<KeyChange>,
) -> ApiResult<Json<Value>> {
    let id = parse_id(&id)?;
    let new = req
        .allowlist
        .clone()
        .ok_or_else(|| ApiError::new(ErrorCode::InvalidRequest).message("allowlist is required"))?;
    require(&state, &auth, SensitiveAction::ChangeApiKey, None, input(&req.password, &req.step_up_token)).await?;
    let now = state.clock.now();
    let policy = state.config.apikey;
    let key = ops(&state)
        .modify(
            auth.account.id,
            id,
            |k| k.change_allowlist(new, now, &policy).map(|_| ()),
            |k| {
                auth.event(EventKind::ApiKeyAllowlistChanged, Outcome::Success)
                    .with("key", k.id.to_string())
                    .with("allowlist", json!(k.allowlist))
                    .with("pending", json!(k.pending_allowlist.as_ref().map(|p| &p.allowlist)))
            },
        )
        .await?;
    invalidate(&state, &id);
    Ok(Json(key_json(&key, now)))
}
