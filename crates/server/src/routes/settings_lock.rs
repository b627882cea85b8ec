//! The settings lock and the anti-phishing code.
//!
//! Locking is immediate and free (it only makes the account safer). Unlocking needs a step-up,
//! waits `friction.settings_unlock_days`, is announced with a cancel link and can be cancelled
//! from the API or the link until it takes effect.

use axum::Json;
use axum::extract::State;
use gatehouse_core::audit::{EventKind, Outcome};
use gatehouse_core::clock::Span;
use gatehouse_core::friction::{LinkAction, parse_anti_phishing_code};
use gatehouse_core::stepup::SensitiveAction;
use gatehouse_core::store::SideEffects;
use serde::Deserialize;
use serde_json::{Value, json};

use crate::auth::Authenticated;
use crate::error::{ApiError, ApiResult, ErrorCode};
use crate::friction::{action_link, ensure_settings_unlocked, seal_code};
use crate::http::ApiJson;
use crate::mail::friction_templates as templates;
use crate::state::AppState;
use crate::stepup::{self, StepUpInput};

/// `GET /_gh/api/v1/account/settings-lock`
pub async fn status(State(state): State<AppState>, auth: Authenticated) -> ApiResult<Json<Value>> {
    let f = state.store.find_friction(auth.account.id).await?;
    let now = state.clock.now();
    let locked = f.is_settings_locked(now);
    Ok(Json(json!({
        "locked": locked,
        "locked_at": if locked { f.settings_locked_at.map(|t| t.to_rfc3339()) } else { None },
        "unlock_at": if f.has_pending_unlock(now) { f.settings_unlock_at.map(|t| t.to_rfc3339()) } else { None },
    })))
}

/// `POST /_gh/api/v1/account/settings-lock`: locks now.
pub async fn lock(State(state): State<AppState>, auth: Authenticated) -> ApiResult<Json<Value>> {
    let now = state.clock.now();
    let mail = state.mail(auth.account.email.as_str(), &templates::settings_locked())?;
    let ev = auth.event(EventKind::SettingsLocked, Outcome::Success);
    if state.store.lock_settings(auth.account.id, now, SideEffects::event(ev).mail(mail)).await? {
        state.wake_mailer();
    }
    status(State(state), auth).await
}

/// Step-up fields.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StepUpBody {
    #[serde(default)]
    password: Option<String>,
    #[serde(default)]
    step_up_token: Option<String>,
}

/// `POST /_gh/api/v1/account/settings-lock/unlock`: schedules the unlock.
pub async fn unlock(
    State(state): State<AppState>,
    auth: Authenticated,
    ApiJson(req): ApiJson<StepUpBody>,
) -> ApiResult<Json<Value>> {
    let f = state.store.find_friction(auth.account.id).await?;
    let now = state.clock.now();
    if !f.is_settings_locked(now) || f.has_pending_unlock(now) {
        return status(State(state), auth).await;
    }
    let input = StepUpInput { password: req.password.as_deref(), step_up_token: req.step_up_token.as_deref() };
    stepup::require(&state, &auth, SensitiveAction::LiftSettingsLock, None, input).await?;
    let at = now.plus(Span::days(state.config.friction.settings_unlock_days));
    let (token, link) = action_link(&state, auth.account.id, &LinkAction::CancelSettingsUnlock);
    let mail =
        state.mail(auth.account.email.as_str(), &templates::settings_unlock_requested(&at.to_rfc3339(), &link))?;
    let ev = auth.event(EventKind::SettingsUnlockRequested, Outcome::Success).with("unlock_at", at.to_rfc3339());
    let mut fx = SideEffects::event(ev).mail(mail);
    // Every channel on record: email, and the security team's webhook when configured.
    if let Some(w) = state.webhook(
        "settings.unlock_requested",
        json!({ "user": auth.account.id.to_string(), "unlock_at": at.to_rfc3339() }),
    ) {
        fx = fx.webhook(w);
    }
    if state.store.request_settings_unlock(auth.account.id, at, now, &token, fx).await? {
        state.wake_mailer();
        state.wake_webhooks();
    }
    status(State(state), auth).await
}

/// `POST /_gh/api/v1/account/settings-lock/cancel-unlock`
pub async fn cancel_unlock(State(state): State<AppState>, auth: Authenticated) -> ApiResult<Json<Value>> {
    let now = state.clock.now();
    let mail = state.mail(auth.account.email.as_str(), &templates::settings_unlock_cancelled())?;
    let ev = auth.event(EventKind::SettingsUnlockCancelled, Outcome::Success).with("via", "api");
    if state.store.cancel_settings_unlock(auth.account.id, now, SideEffects::event(ev).mail(mail)).await? {
        state.wake_mailer();
    }
    status(State(state), auth).await
}

/// `POST /_gh/api/v1/account/anti-phishing-code`
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SetCode {
    /// 4–32 letters, digits, spaces and `-_.!`; `null` clears it.
    code: Option<String>,
    #[serde(default)]
    password: Option<String>,
    #[serde(default)]
    step_up_token: Option<String>,
}

/// Sets the anti-phishing code shown in every email (a security setting: lock and step-up).
pub async fn set_code(
    State(state): State<AppState>,
    auth: Authenticated,
    ApiJson(req): ApiJson<SetCode>,
) -> ApiResult<Json<Value>> {
    ensure_settings_unlocked(&state, &auth, "anti_phishing_code").await?;
    let code = match req.code.as_deref() {
        Some(raw) => Some(parse_anti_phishing_code(raw).ok_or_else(|| {
            ApiError::new(ErrorCode::InvalidRequest)
                .message("The code must be 4-32 letters, digits, spaces or -_.! and cannot look like a link.")
        })?),
        None => None,
    };
    let input = StepUpInput { password: req.password.as_deref(), step_up_token: req.step_up_token.as_deref() };
    stepup::require(&state, &auth, SensitiveAction::ChangeFactors, None, input).await?;
    let sealed = code.as_deref().map(|c| seal_code(&state, auth.account.id, c)).transpose()?;
    let mail = state.mail(auth.account.email.as_str(), &templates::anti_phishing_code_changed())?;
    let ev = auth.event(EventKind::AntiPhishingCodeChanged, Outcome::Success).with("set", code.is_some());
    state.store.set_anti_phishing_code(auth.account.id, sealed, SideEffects::event(ev).mail(mail)).await?;
    state.wake_mailer();
    Ok(Json(json!({ "anti_phishing_code_set": code.is_some() })))
}
