//! Registration and email verification.
//!
//! Registration answers the same way, after the same work (one Argon2 hash), whether or not
//! the address already has an account (R84): a new address gets a verification link, a known
//! one gets a notice that someone tried to sign up with it. Password policy refusals come
//! first and depend only on the password and the address typed, so they reveal nothing.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use gatehouse_core::account::{Account, AccountStatus, Email};
use gatehouse_core::audit::{EventKind, Outcome};
use gatehouse_core::clock::Span;
use gatehouse_core::ids::UserId;
use gatehouse_core::password::Password;
use gatehouse_core::secret::Token;
use gatehouse_core::store::{EmailToken, SideEffects, StoreError};
use serde::Deserialize;
use serde_json::json;

use super::{PREFIX, event};
use crate::error::{ApiError, ApiResult, ErrorCode};
use crate::http::{ApiJson, ClientCtx};
use crate::mail::templates;
use crate::state::AppState;

/// Verification links live this long.
pub const VERIFY_TTL: Span = Span::hours(24);

/// `POST /_gh/api/v1/accounts`
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RegisterRequest {
    email: String,
    password: String,
}

/// Parses a password field, refusing oversized input before any work (R2).
pub fn password_field(raw: &str) -> ApiResult<Password> {
    Password::new(raw).map_err(|_| ApiError::new(ErrorCode::PayloadTooLarge).message("The password is too long."))
}

/// Registers an account.
pub async fn register(
    State(state): State<AppState>,
    client: ClientCtx,
    ApiJson(req): ApiJson<RegisterRequest>,
) -> ApiResult<Response> {
    let email = Email::parse(&req.email).map_err(|_| ApiError::new(ErrorCode::InvalidEmail))?;
    let password = password_field(&req.password)?;
    if let Err(reason) = state.password_policy.check(&password, email.as_str()) {
        return Err(ApiError::new(ErrorCode::WeakPassword)
            .message(reason.to_string())
            .details(json!({ "reason": reason.code() })));
    }
    let hasher = state.hasher.clone();
    let rng = state.rng.clone();
    let hash = state
        .hash_pool
        .run(move || hasher.hash(&password, rng.as_ref()))
        .await
        .map_err(|_| ApiError::new(ErrorCode::Overloaded))?
        .map_err(|e| ApiError::internal("password hashing", e))?;
    let now = state.clock.now();
    let accepted = (
        StatusCode::ACCEPTED,
        Json(json!({
            "status": "verification_sent",
            "message": "If this address can be registered, we have sent it a verification link."
        })),
    );
    if let Some(existing) = state.store.find_account_by_email(&email).await? {
        let mail = state.mail(email.as_str(), &templates::duplicate_registration())?;
        let fx =
            SideEffects::event(event(EventKind::RegistrationDuplicate, Outcome::Denied, &client).about(existing.id))
                .mail(mail);
        state.store.record(fx).await?;
        state.wake_mailer();
        return Ok(accepted.into_response());
    }
    let account = Account {
        id: UserId::generate(now, state.rng.as_ref()),
        email: email.clone(),
        email_verified_at: None,
        password_hash: hash,
        status: AccountStatus::Active,
        is_admin: false,
        high_value: false,
        created_at: now,
        password_changed_at: now,
        frozen_at: None,
    };
    let token = Token::generate(state.rng.as_ref());
    let et = EmailToken {
        hash: token.hash(),
        user_id: account.id,
        purpose: "verify_email".into(),
        expires_at: now.plus(VERIFY_TTL),
    };
    let link = format!("{}{PREFIX}/verify-email?token={}", state.config.server.public_origin, token.expose());
    let mail = state.mail(email.as_str(), &templates::verify_email(&link))?;
    let mut ev = event(EventKind::AccountRegistered, Outcome::Success, &client);
    ev.actor = Some(account.id);
    ev.subject = Some(account.id);
    match state.store.create_account(&account, &et, SideEffects::event(ev).mail(mail)).await {
        Ok(()) => {}
        // Lost a race with a concurrent registration of the same address: answer the same.
        Err(StoreError::Conflict) => return Ok(accepted.into_response()),
        Err(e) => return Err(e.into()),
    }
    state.wake_mailer();
    Ok(accepted.into_response())
}

/// `POST /_gh/api/v1/accounts/verify-email`
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VerifyRequest {
    token: String,
}

async fn consume_verification(state: &AppState, client: &ClientCtx, raw: &str) -> ApiResult<()> {
    let token = Token::parse(raw).ok_or_else(|| ApiError::new(ErrorCode::InvalidToken))?;
    let now = state.clock.now();
    let ev = event(EventKind::EmailVerified, Outcome::Success, client);
    let fx = move |user: UserId| {
        let mut e = ev.clone();
        e.actor = Some(user);
        e.subject = Some(user);
        SideEffects::event(e)
    };
    match state.store.consume_email_token(token.hash(), "verify_email", now, &fx).await? {
        Some(_) => Ok(()),
        None => Err(ApiError::new(ErrorCode::InvalidToken)),
    }
}

/// Verifies an address with the emailed token.
pub async fn verify_email(
    State(state): State<AppState>,
    client: ClientCtx,
    ApiJson(req): ApiJson<VerifyRequest>,
) -> ApiResult<Json<serde_json::Value>> {
    consume_verification(&state, &client, &req.token).await?;
    Ok(Json(json!({ "status": "verified" })))
}
