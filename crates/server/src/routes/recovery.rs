//! Recovery: the password-reset link (≤ 30 min, single use, never removes a second factor)
//! and lost-factor cases reviewed by staff in the admin API (R82–R85). The admin endpoints
//! need an admin session signed in with WebAuthn (passkey, or password and security key;
//! ADR 0012), like the admin console that calls them.
//!
//! Both request endpoints answer identically for known and unknown addresses (R84). Reviewers
//! can approve or reject a case; nothing in this API sets or shows a password.

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use gatehouse_core::account::Email;
use gatehouse_core::audit::{EventKind, Outcome};
use gatehouse_core::clock::Span;
use gatehouse_core::friction::{LinkAction, WithdrawalHold};
use gatehouse_core::ids::{SessionId, UserId};
use gatehouse_core::recovery::{ApprovalDecision, CaseState, MAX_EVIDENCE_BYTES, RecoveryCase};
use gatehouse_core::secret::Token;
use gatehouse_core::store::{EmailToken, SideEffects};
use serde::Deserialize;
use serde_json::{Value, json};

use super::accounts::password_field;
use super::{PREFIX, event};
use crate::auth::Authenticated;
use crate::error::{ApiError, ApiResult, ErrorCode};
use crate::friction::{action_link, open_evidence, seal_evidence};
use crate::http::{ApiJson, ApiQuery, ClientCtx};
use crate::mail::friction_templates as templates;
use crate::pages::form::{Field, PageForm, message};
use crate::pages::{Layout, error_page, render};
use crate::state::AppState;

fn accepted(message: &'static str) -> Response {
    (StatusCode::ACCEPTED, Json(json!({ "status": "accepted", "message": message }))).into_response()
}

/// `POST /_gh/api/v1/recovery/password-reset`
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ResetRequest {
    email: String,
}

const RESET_SENT: &str = "If this address has an account, we have sent it a password-reset link.";

/// Emails a single-use reset link to an existing account; answers the same either way.
pub async fn request_reset(
    State(state): State<AppState>,
    client: ClientCtx,
    ApiJson(req): ApiJson<ResetRequest>,
) -> ApiResult<Response> {
    // A malformed address is refused for what it is (it depends on the input alone, so it
    // reveals nothing about accounts); a well-formed one is answered the same either way.
    let email = Email::parse(&req.email).map_err(|_| ApiError::new(ErrorCode::InvalidEmail))?;
    let Some(account) = state.store.find_account_by_email(&email).await? else { return Ok(accepted(RESET_SENT)) };
    let now = state.clock.now();
    let ttl = state.config.friction.password_reset_ttl_secs;
    let token = Token::generate(state.rng.as_ref());
    let row = EmailToken {
        hash: token.hash(),
        user_id: account.id,
        purpose: "password_reset".into(),
        expires_at: now.plus(Span::secs(ttl)),
    };
    let link = format!("{}{PREFIX}/reset-password?token={}", state.config.server.public_origin, token.expose());
    let mail = state.mail(account.email.as_str(), &templates::password_reset(&link, ttl / 60))?;
    let ev = event(EventKind::PasswordResetRequested, Outcome::Success, &client).about(account.id);
    state.store.create_link(&row, SideEffects::event(ev).mail(mail)).await?;
    state.wake_mailer();
    Ok(accepted(RESET_SENT))
}

/// `POST /_gh/api/v1/recovery/password-reset/complete`
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CompleteReset {
    token: String,
    new_password: String,
}

/// Sets a new password with the emailed token: every session ends, withdrawals are held, and
/// enrolled second factors stay (the next login still asks for one).
pub async fn complete_reset(
    State(state): State<AppState>,
    client: ClientCtx,
    ApiJson(req): ApiJson<CompleteReset>,
) -> ApiResult<Json<Value>> {
    let hold_until = reset_password(&state, &client, &req.token, &req.new_password).await?;
    Ok(Json(json!({
        "status": "reset",
        "second_factor_unchanged": true,
        "withdrawals_held_until": hold_until.to_rfc3339(),
    })))
}

async fn reset_password(
    state: &AppState,
    client: &ClientCtx,
    raw_token: &str,
    new_password: &str,
) -> ApiResult<gatehouse_core::clock::Timestamp> {
    let token = Token::parse(raw_token).ok_or_else(|| ApiError::new(ErrorCode::InvalidToken))?;
    let new = password_field(new_password)?;
    // The policy's context check needs the address, which only the token knows; the general
    // rules (length, breached list, repetition) apply here.
    if let Err(reason) = state.password_policy.check(&new, "") {
        return Err(ApiError::new(ErrorCode::WeakPassword)
            .message(reason.to_string())
            .details(json!({ "reason": reason.code() })));
    }
    let hasher = state.hasher.clone();
    let rng = state.rng.clone();
    let hash = state
        .hash_pool
        .run(move || hasher.hash(&new, rng.as_ref()))
        .await
        .map_err(|_| ApiError::new(ErrorCode::Overloaded))?
        .map_err(|e| ApiError::internal("password hashing", e))?;
    let now = state.clock.now();
    let hold_until = now.plus(state.config.friction.hold());
    let ev = event(EventKind::PasswordResetCompleted, Outcome::Success, client);
    let done = templates::password_reset_done(&now.to_rfc3339());
    let fx = |user: UserId, email: &str| {
        let mut e = ev.clone().with("withdrawals_held_until", hold_until.to_rfc3339());
        e.actor = Some(user);
        e.subject = Some(user);
        let mut fx = SideEffects::event(e).hold(user, hold_until, "password_reset");
        match state.mail(email, &done) {
            Ok(m) => fx = fx.mail(m),
            Err(_) => tracing::error!("could not seal the password-reset notice"),
        }
        fx
    };
    if state.store.complete_password_reset(token.hash(), &hash, now, &fx).await?.is_none() {
        return Err(ApiError::new(ErrorCode::InvalidToken));
    }
    state.wake_mailer();
    Ok(hold_until)
}

/// Query of the emailed reset link.
#[derive(Debug, Deserialize)]
pub struct ResetLink {
    #[serde(default)]
    token: String,
}

/// The new-password form behind the emailed reset link.
#[derive(askama::Template)]
#[template(path = "reset_password.html")]
pub struct ResetPage {
    layout: Layout,
    token: String,
    new_password: Field,
}

fn reset_form_page(status: StatusCode, token: &str, error: Option<String>) -> Response {
    let token: String =
        token.chars().filter(|c| c.is_ascii_alphanumeric() || *c == '-' || *c == '_').take(64).collect();
    let mut field = Field::new("new_password", "New password", "password", "new-password")
        .hint("At least 12 characters. A long phrase of unrelated words is easy to remember and hard to guess.");
    if let Some(e) = error {
        field = field.error(e);
    }
    render(status, &ResetPage { layout: Layout::public("Choose a new password"), token, new_password: field })
}

/// `GET /_gh/reset-password?token=…`: the form (the token is only used by the POST).
pub async fn reset_page(Query(q): Query<ResetLink>) -> Response {
    reset_form_page(StatusCode::OK, &q.token, None)
}

/// Form body of the reset page.
#[derive(Debug, Deserialize)]
pub struct ResetForm {
    #[serde(default)]
    token: String,
    #[serde(default)]
    new_password: String,
}

/// `POST /_gh/reset-password` from the page: the API's own reset, rendered.
pub async fn reset_form(
    State(state): State<AppState>,
    client: ClientCtx,
    PageForm(f): PageForm<ResetForm>,
) -> Response {
    match reset_password(&state, &client, &f.token, &f.new_password).await {
        Ok(_) => message(
            StatusCode::OK,
            "Password changed",
            "password_reset",
            "Your password was changed and every session was signed out. Sign in with the new password and your second factor.",
            Some(("/_gh/login", "Sign in")),
        ),
        Err(e) if e.code == ErrorCode::InvalidToken => message(
            StatusCode::BAD_REQUEST,
            "Password not changed",
            "invalid_token",
            "This link is invalid, already used or expired.",
            Some(("/_gh/recover", "Ask for a new link")),
        ),
        // The link is still good: the form again, the reason on the field.
        Err(e)
            if matches!(e.code, ErrorCode::WeakPassword | ErrorCode::PayloadTooLarge | ErrorCode::InvalidRequest) =>
        {
            reset_form_page(e.code.status(), &f.token, Some(e.message.to_string()))
        }
        Err(e) => error_page(&e, None),
    }
}

/// `POST /_gh/api/v1/recovery/cases`
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OpenCase {
    email: String,
    /// What the user offers as proof (≤ 4000 bytes): reviewed by staff, stored sealed.
    evidence: String,
}

const CASE_OPENED: &str =
    "If this address has an account, a recovery case was opened. Staff will review it after the waiting period.";

/// Opens a lost-second-factor case; every channel on record is told, with a cancel link.
pub async fn open_case(
    State(state): State<AppState>,
    client: ClientCtx,
    ApiJson(req): ApiJson<OpenCase>,
) -> ApiResult<Response> {
    let evidence = req.evidence.trim();
    if evidence.is_empty() || evidence.len() > MAX_EVIDENCE_BYTES {
        return Err(ApiError::new(ErrorCode::InvalidRequest).message("Evidence must be 1-4000 bytes."));
    }
    let email = Email::parse(&req.email).map_err(|_| ApiError::new(ErrorCode::InvalidEmail))?;
    let Some(account) = state.store.find_account_by_email(&email).await? else { return Ok(accepted(CASE_OPENED)) };
    let now = state.clock.now();
    let id = SessionId::generate(now, state.rng.as_ref()).to_string();
    let case = RecoveryCase {
        id: id.clone(),
        user_id: account.id,
        state: CaseState::Open,
        evidence_sealed: seal_evidence(&state, &id, evidence)?,
        created_at: now,
        execute_after: now.plus(Span::secs(state.config.friction.recovery_wait_secs)),
        required_approvals: if account.high_value { 2 } else { 1 },
        first_reviewer: None,
        decided_by: None,
        decided_at: None,
    };
    let (token, link) = action_link(&state, account.id, &LinkAction::CancelRecovery(id.clone()));
    let mail = state
        .mail(account.email.as_str(), &templates::recovery_opened(&id, &case.execute_after.to_rfc3339(), &link))?;
    let ev = event(EventKind::RecoveryRequested, Outcome::Success, &client)
        .about(account.id)
        .with("case", id.clone())
        .with("required_approvals", case.required_approvals)
        .with("execute_after", case.execute_after.to_rfc3339());
    let mut fx = SideEffects::event(ev).mail(mail);
    if let Some(w) = state.webhook(
        "recovery.requested",
        json!({ "case": id, "user": account.id.to_string(), "execute_after": case.execute_after.to_rfc3339() }),
    ) {
        fx = fx.webhook(w);
    }
    // One open case per account; a second request answers the same and changes nothing.
    if state.store.create_recovery_case(&case, &token, fx).await? {
        state.wake_mailer();
        state.wake_webhooks();
    }
    Ok(accepted(CASE_OPENED))
}

/// Staff only, and only from a session signed in with WebAuthn (ADR 0012): a stolen admin
/// password plus a relayed one-time code must not open the review queue.
async fn require_admin(state: &AppState, auth: &Authenticated) -> ApiResult<()> {
    crate::pages::admin::require_admin_webauthn(state, auth).await
}

fn case_json(c: &RecoveryCase, evidence: Option<String>) -> Value {
    let mut v = json!({
        "id": c.id,
        "user": c.user_id.to_string(),
        "state": c.state,
        "created_at": c.created_at.to_rfc3339(),
        "execute_after": c.execute_after.to_rfc3339(),
        "required_approvals": c.required_approvals,
        "approvals": u8::from(c.first_reviewer.is_some()) + u8::from(c.state == CaseState::Executed && c.required_approvals > 0),
        "first_reviewer": c.first_reviewer.map(|u| u.to_string()),
        "decided_by": c.decided_by.map(|u| u.to_string()),
        "decided_at": c.decided_at.map(|t| t.to_rfc3339()),
    });
    if let Some(e) = evidence {
        v["evidence"] = json!(e);
    }
    v
}

/// Which cases the queue lists.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CaseFilter {
    /// Cases still waiting for a decision (the default).
    #[default]
    Open,
    /// Every case, decided ones included.
    All,
}

/// Listing filter (anything else in the query string is refused, 400 `invalid_request`).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListQuery {
    /// `open` (default) or `all`.
    #[serde(default)]
    state: CaseFilter,
}

/// `GET /_gh/api/v1/admin/recovery`: the review queue (staff signed in with WebAuthn).
pub async fn admin_list(
    State(state): State<AppState>,
    auth: Authenticated,
    ApiQuery(q): ApiQuery<ListQuery>,
) -> ApiResult<Json<Value>> {
    require_admin(&state, &auth).await?;
    let open_only = q.state == CaseFilter::Open;
    let cases = state.store.list_recovery_cases(open_only, 200).await?;
    Ok(Json(json!({ "cases": cases.iter().map(|c| case_json(c, None)).collect::<Vec<_>>() })))
}

async fn load_case(state: &AppState, id: &str) -> ApiResult<RecoveryCase> {
    if id.len() > 64 {
        return Err(ApiError::new(ErrorCode::NotFound));
    }
    state.store.find_recovery_case(id).await?.ok_or_else(|| ApiError::new(ErrorCode::NotFound))
}

/// `GET /_gh/api/v1/admin/recovery/{id}`: one case with its evidence (staff only; audited by
/// the decision that follows, never shown to the public API).
pub async fn admin_get(
    State(state): State<AppState>,
    auth: Authenticated,
    Path(id): Path<String>,
) -> ApiResult<Json<Value>> {
    require_admin(&state, &auth).await?;
    let c = load_case(&state, &id).await?;
    let evidence = open_evidence(&state, &c.id, &c.evidence_sealed);
    Ok(Json(case_json(&c, evidence)))
}

/// Reviewer decisions carry the reviewer's password, re-entered.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Decision {
    #[serde(default)]
    password: Option<String>,
    /// Why (kept in the audit record), ≤ 500 characters.
    #[serde(default)]
    note: Option<String>,
}

/// `POST /_gh/api/v1/admin/recovery/{id}/approve`
pub async fn admin_approve(
    State(state): State<AppState>,
    auth: Authenticated,
    Path(id): Path<String>,
    ApiJson(req): ApiJson<Decision>,
) -> ApiResult<Json<Value>> {
    require_admin(&state, &auth).await?;
    super::sessions::reauthenticate(&state, &auth, req.password.as_deref()).await?;
    let c = load_case(&state, &id).await?;
    let owner = state.store.find_account(c.user_id).await?.ok_or_else(|| ApiError::new(ErrorCode::NotFound))?;
    let now = state.clock.now();
    let hold_until = now.plus(Span::secs(state.config.friction.recovery_hold_secs));
    let hold = WithdrawalHold { user: c.user_id, until: hold_until, reason: "recovery".into() };
    let note: String = req.note.unwrap_or_default().chars().take(500).collect();
    let executed_mail = state.mail(owner.email.as_str(), &templates::recovery_executed(&hold_until.to_rfc3339()))?;
    let fx = |case: &RecoveryCase, d: ApprovalDecision| {
        let (kind, outcome, what) = match d {
            ApprovalDecision::Execute => (EventKind::RecoveryApproved, Outcome::Success, "final_approval"),
            ApprovalDecision::Recorded => (EventKind::RecoveryApproved, Outcome::Success, "first_approval"),
            ApprovalDecision::TooEarly(_) => (EventKind::RecoveryApprovalRefused, Outcome::Denied, "too_early"),
            ApprovalDecision::OwnCase => (EventKind::RecoveryApprovalRefused, Outcome::Denied, "own_case"),
            ApprovalDecision::SameReviewer => (EventKind::RecoveryApprovalRefused, Outcome::Denied, "same_reviewer"),
            ApprovalDecision::NotOpen => (EventKind::RecoveryApprovalRefused, Outcome::Denied, "not_open"),
        };
        let e = auth
            .event(kind, outcome)
            .about(case.user_id)
            .with("case", case.id.clone())
            .with("decision", what)
            .with("note", note.clone());
        let mut fx = SideEffects::event(e);
        if d == ApprovalDecision::Execute {
            fx = fx.mail(executed_mail.clone());
            fx.events.push(
                auth.event(EventKind::RecoveryExecuted, Outcome::Success)
                    .about(case.user_id)
                    .with("case", case.id.clone())
                    .with("sessions", "revoked")
                    .with("api_keys", "suspended")
                    .with("second_factors", "reset")
                    .with("withdrawals_held_until", hold_until.to_rfc3339()),
            );
        }
        fx
    };
    let decision = state
        .store
        .approve_recovery(&id, auth.account.id, now, hold, &fx)
        .await?
        .ok_or_else(|| ApiError::new(ErrorCode::NotFound))?;
    match decision {
        ApprovalDecision::Execute => {
            state.wake_mailer();
            crate::friction::invalidate_keys(&state, c.user_id).await?;
        }
        ApprovalDecision::Recorded => {}
        ApprovalDecision::TooEarly(at) => {
            return Err(ApiError::new(ErrorCode::RecoveryWaiting).details(json!({ "execute_after": at.to_rfc3339() })));
        }
        ApprovalDecision::OwnCase | ApprovalDecision::SameReviewer => {
            return Err(ApiError::new(ErrorCode::ReviewerConflict));
        }
        ApprovalDecision::NotOpen => return Err(ApiError::new(ErrorCode::RecoveryClosed)),
    }
    let c = load_case(&state, &id).await?;
    let mut body = case_json(&c, None);
    body["status"] = json!(if decision == ApprovalDecision::Execute { "executed" } else { "awaiting_second_reviewer" });
    Ok(Json(body))
}

/// `POST /_gh/api/v1/admin/recovery/{id}/reject`
pub async fn admin_reject(
    State(state): State<AppState>,
    auth: Authenticated,
    Path(id): Path<String>,
    ApiJson(req): ApiJson<Decision>,
) -> ApiResult<Json<Value>> {
    require_admin(&state, &auth).await?;
    super::sessions::reauthenticate(&state, &auth, req.password.as_deref()).await?;
    let c = load_case(&state, &id).await?;
    if c.user_id == auth.account.id {
        return Err(ApiError::new(ErrorCode::ReviewerConflict));
    }
    let owner = state.store.find_account(c.user_id).await?.ok_or_else(|| ApiError::new(ErrorCode::NotFound))?;
    let note: String = req.note.unwrap_or_default().chars().take(500).collect();
    let mail = state.mail(owner.email.as_str(), &templates::recovery_closed(&c.id, "rejected after review"))?;
    let e = auth
        .event(EventKind::RecoveryRejected, Outcome::Success)
        .about(c.user_id)
        .with("case", c.id.clone())
        .with("note", note);
    if !state.store.reject_recovery(&id, auth.account.id, state.clock.now(), SideEffects::event(e).mail(mail)).await? {
        return Err(ApiError::new(ErrorCode::RecoveryClosed));
    }
    state.wake_mailer();
    Ok(Json(case_json(&load_case(&state, &id).await?, None)))
}
