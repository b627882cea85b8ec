//! The signed-in user's own account: profile, password change, security history.

use axum::Json;
use axum::extract::State;
use gatehouse_core::audit::{EventKind, Outcome};
use gatehouse_core::store::SideEffects;
use serde::Deserialize;
use serde_json::json;

use super::accounts::password_field;
use super::sessions::reauthenticate;
use crate::auth::Authenticated;
use crate::error::{ApiError, ApiResult, ErrorCode};
use crate::http::{ApiJson, ApiQuery};
use crate::mail::templates;
use crate::state::AppState;

/// `GET /_gh/api/v1/account`
pub async fn account(State(state): State<AppState>, auth: Authenticated) -> ApiResult<Json<serde_json::Value>> {
    let a = &auth.account;
    // feat/mfa: the factor summary and the nudge for accounts without a second factor.
    let factors = crate::mfa::factors(&state, a).await?;
    let creds = state.store.list_webauthn_credentials(a.id).await?;
    let notices: Vec<&str> = if factors.has_second_factor() { vec![] } else { vec!["no_second_factor"] };
    // friction (issue 5): the hold, settings lock and freeze are visible to the owner.
    let f = state.store.find_friction(a.id).await?;
    let now = state.clock.now();
    let friction = json!({
        "frozen": a.is_frozen(),
        "withdrawals_held_until": f.hold_at(now).map(|t| t.to_rfc3339()),
        "withdrawal_hold_reason": f.hold_at(now).and(f.hold_reason.clone()),
        "settings_locked": f.is_settings_locked(now),
        "settings_unlock_at": if f.has_pending_unlock(now) { f.settings_unlock_at.map(|t| t.to_rfc3339()) } else { None },
        "anti_phishing_code_set": f.anti_phishing_sealed.is_some(),
        "withdrawal_allowlist_only": f.allowlist_only,
    });
    // end friction
    Ok(Json(json!({
        "id": a.id.to_string(),
        "email": a.email.as_str(),
        "email_verified": a.email_verified_at.is_some(),
        "created_at": a.created_at.to_rfc3339(),
        "password_changed_at": a.password_changed_at.to_rfc3339(),
        "is_admin": a.is_admin,
        "frozen_at": a.frozen_at.map(|t| t.to_rfc3339()),
        "high_value": a.high_value,
        "second_factors": factors.methods(),
        "factors": crate::routes::mfa::factors_json(&factors, &creds),
        "notices": notices,
        "session": {
            "id": auth.session.id.to_string(),
            "auth_time": auth.session.auth_time.to_rfc3339(),
            "expires_at": auth.session.expires_at.to_rfc3339(),
        },
        "friction": friction,
    })))
}

/// `POST /_gh/api/v1/account/password`
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChangePassword {
    #[serde(default)]
    current_password: Option<String>,
    /// A step-up token for `change_password`.
    #[serde(default)]
    step_up_token: Option<String>,
    new_password: String,
}

/// Changes the password: needs the current one (R10), checks the policy, then revokes every
/// other session and refresh family in the same transaction (R46) and notifies by email.
pub async fn change_password(
    State(state): State<AppState>,
    auth: Authenticated,
    ApiJson(req): ApiJson<ChangePassword>,
) -> ApiResult<Json<serde_json::Value>> {
    let new = password_field(&req.new_password)?;
    crate::friction::ensure_settings_unlocked(&state, &auth, "password").await?; // friction (issue 5)
    let failed = |reason: &str| auth.event(EventKind::PasswordChangeFailed, Outcome::Failure).with("reason", reason);
    // The current password is always needed (R10); the step-up policy comes on top of it.
    if let Err(e) = reauthenticate(&state, &auth, req.current_password.as_deref()).await {
        if matches!(e.code, ErrorCode::ReauthFailed | ErrorCode::ReauthRequired) {
            state.store.append(vec![failed("current_password")]).await?;
        }
        return Err(e);
    }
    if let Err(reason) = state.password_policy.check(&new, auth.account.email.as_str()) {
        state.store.append(vec![failed(reason.code())]).await?;
        return Err(ApiError::new(ErrorCode::WeakPassword)
            .message(reason.to_string())
            .details(json!({ "reason": reason.code() })));
    }
    let input = crate::stepup::StepUpInput {
        password: req.current_password.as_deref(),
        step_up_token: req.step_up_token.as_deref(),
    };
    crate::stepup::require(&state, &auth, gatehouse_core::stepup::SensitiveAction::ChangePassword, None, input).await?;
    let hasher = state.hasher.clone();
    let rng = state.rng.clone();
    let hash = state
        .hash_pool
        .run(move || hasher.hash(&new, rng.as_ref()))
        .await
        .map_err(|_| ApiError::new(ErrorCode::Overloaded))?
        .map_err(|e| ApiError::internal("password hashing", e))?;
    let now = state.clock.now();
    let mail = state.mail(
        auth.account.email.as_str(),
        &templates::password_changed(&now.to_rfc3339(), &auth.client.ip.to_string()),
    )?;
    let fx = SideEffects::event(auth.event(EventKind::PasswordChanged, Outcome::Success)).mail(mail).hold(
        auth.account.id,
        now.plus(state.config.friction.hold()),
        "password_change",
    ); // friction (issue 5)
    let revoked = state.store.change_password(auth.account.id, &hash, Some(auth.session.id), now, fx).await?;
    state.wake_mailer();
    Ok(Json(json!({ "status": "changed", "revoked_sessions": revoked })))
}

/// Paging for the security history.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HistoryQuery {
    /// Return events older than this sequence number.
    before: Option<i64>,
    /// Page size (1–200, default 50).
    limit: Option<u32>,
}

/// `GET /_gh/api/v1/account/security-history`: the user's own audit events, newest first.
pub async fn history(
    State(state): State<AppState>,
    auth: Authenticated,
    ApiQuery(q): ApiQuery<HistoryQuery>,
) -> ApiResult<Json<serde_json::Value>> {
    // The document says 1–200; a value outside is refused, not silently clamped.
    let limit = q.limit.unwrap_or(50);
    if !(1..=200).contains(&limit) {
        return Err(ApiError::new(ErrorCode::InvalidRequest).message("limit must be between 1 and 200."));
    }
    let records = state.store.history(auth.account.id, q.before, limit).await?;
    let next = if records.len() == limit as usize { records.last().map(|r| r.seq) } else { None };
    let events: Vec<_> = records
        .into_iter()
        .map(|r| {
            let details: serde_json::Value = serde_json::from_str(&r.details).unwrap_or_else(|_| json!({}));
            json!({
                "seq": r.seq,
                "at": r.at.to_rfc3339(),
                "kind": r.kind,
                "outcome": r.outcome,
                "ip": r.ip,
                "details": details,
            })
        })
        .collect();
    Ok(Json(json!({ "events": events, "next_before": next })))
}
