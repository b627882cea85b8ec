//! Changing the login email address.
//!
//! The request needs a step-up for [`SensitiveAction::ChangeEmail`] and an unlocked settings
//! lock; it sends a single-use link (1 h) to the **new** address and a security notice (with
//! the freeze link) to the **current** one. Following the link proves the new inbox: the
//! address changes, both addresses are told, and withdrawals are held like after a password
//! change — all in one transaction with the token's consumption. The link names the new
//! address and the token's purpose is derived from it, so an edited link is an invalid token.

use axum::Json;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use gatehouse_core::account::Email;
use gatehouse_core::audit::{AuditEvent, EventKind, Outcome};
use gatehouse_core::clock::Span;
use gatehouse_core::ids::UserId;
use gatehouse_core::secret::Token;
use gatehouse_core::stepup::SensitiveAction;
use gatehouse_core::store::{EmailToken, SideEffects, StoreError};
use serde::Deserialize;
use serde_json::json;

use super::PREFIX;
use crate::auth::Authenticated;
use crate::error::{ApiError, ApiResult, ErrorCode};
use crate::http::{ApiJson, ClientCtx};
use crate::mail::{MailContent, compose};
use crate::pages::form::{PageForm, message};
use crate::pages::{Layout, error_page, render};
use crate::state::AppState;
use crate::stepup::{self, StepUpInput};

/// How long the confirmation link to the new address works.
pub const CHANGE_EMAIL_TTL: Span = Span::hours(1);

fn purpose(new: &Email) -> String {
    format!("change_email:{}", new.as_str())
}

/// `POST /_gh/api/v1/account/email`
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChangeEmail {
    new_email: String,
    #[serde(default)]
    password: Option<String>,
    #[serde(default)]
    step_up_token: Option<String>,
}

fn requested_notice(new: &str, ip: &str) -> MailContent {
    compose(
        "A change of your email address was requested",
        &[
            format!("Someone signed in to your account asked, from IP address {ip}, to move it to the email address {new}. Nothing changes until a link we sent to that address is followed."),
            "If this was not you, freeze your account now with the link below and change your password.".into(),
        ],
        None,
    )
    .security()
}

fn confirm_mail(link: &str) -> MailContent {
    compose(
        "Confirm your new email address",
        &["Follow the link to make this the email address of your exchange account. It works once and expires in 1 hour. If you did not ask for this, ignore this message.".into()],
        Some(("Use this address", link)),
    )
}

fn changed_notice(old: &str, new: &str) -> MailContent {
    compose(
        "Your email address was changed",
        &[
            format!("The email address of your account was changed from {old} to {new}. Withdrawals are held for a while after this change, for your protection."),
            "If this was not you, freeze your account now with the link below and contact support.".into(),
        ],
        None,
    )
    .security()
}

/// Asks to change the login address: step-up, then a link to the new address.
pub async fn request(
    State(state): State<AppState>,
    auth: Authenticated,
    ApiJson(req): ApiJson<ChangeEmail>,
) -> ApiResult<Response> {
    let new = Email::parse(&req.new_email).map_err(|_| ApiError::new(ErrorCode::InvalidEmail))?;
    if new == auth.account.email {
        return Err(ApiError::new(ErrorCode::InvalidRequest).message("That is already your email address."));
    }
    crate::friction::ensure_settings_unlocked(&state, &auth, "email").await?;
    let input = StepUpInput { password: req.password.as_deref(), step_up_token: req.step_up_token.as_deref() };
    stepup::require(&state, &auth, SensitiveAction::ChangeEmail, None, input).await?;
    let now = state.clock.now();
    let token = Token::generate(state.rng.as_ref());
    let et = EmailToken {
        hash: token.hash(),
        user_id: auth.account.id,
        purpose: purpose(&new),
        expires_at: now.plus(CHANGE_EMAIL_TTL),
    };
    let link = format!(
        "{}{PREFIX}/confirm-email?token={}&email={}",
        state.config.server.public_origin,
        token.expose(),
        new.as_str()
    );
    let fx = SideEffects::event(
        auth.event(EventKind::EmailChangeRequested, Outcome::Success).with("new_email", new.as_str()),
    )
    .mail(state.mail(new.as_str(), &confirm_mail(&link))?)
    .mail(state.mail(auth.account.email.as_str(), &requested_notice(new.as_str(), &auth.client.ip.to_string()))?);
    state.store.issue_email_token(&et, now, fx).await?;
    state.wake_mailer();
    Ok((
        StatusCode::ACCEPTED,
        Json(json!({ "status": "confirmation_sent", "message": "Follow the link we sent to the new address." })),
    )
        .into_response())
}

/// What the link carries (the JSON body, the page's query and form).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Confirm {
    token: String,
    email: String,
}

async fn confirm_change(state: &AppState, client: &ClientCtx, c: &Confirm) -> ApiResult<()> {
    let invalid = || ApiError::new(ErrorCode::InvalidToken);
    let token = Token::parse(&c.token).ok_or_else(invalid)?;
    let new = Email::parse(&c.email).map_err(|_| invalid())?;
    let purpose = purpose(&new);
    let now = state.clock.now();
    let user = state.store.email_token_owner(token.hash(), &purpose, now).await?.ok_or_else(invalid)?;
    let account = state.store.find_account(user).await?.ok_or_else(invalid)?;
    let old = account.email.as_str().to_owned();
    let notice_old = state.mail(&old, &changed_notice(&old, new.as_str()))?;
    let notice_new = state.mail(new.as_str(), &changed_notice(&old, new.as_str()))?;
    let hold_until = now.plus(state.config.friction.hold());
    let mut ev = AuditEvent::new(EventKind::EmailChanged, Outcome::Success).with("new_email", new.as_str());
    ev.ip = Some(client.ip.to_string());
    let fx = move |u: UserId| {
        let mut e = ev.clone();
        e.actor = Some(u);
        e.subject = Some(u);
        SideEffects::event(e).mail(notice_old.clone()).mail(notice_new.clone()).hold(u, hold_until, "email_change")
    };
    match state.store.consume_email_token(token.hash(), &purpose, now, &fx).await {
        Ok(Some(_)) => {
            state.wake_mailer();
            Ok(())
        }
        Ok(None) => Err(invalid()),
        Err(StoreError::Conflict) => Err(ApiError::new(ErrorCode::EmailTaken)),
        Err(e) => Err(e.into()),
    }
}

/// `POST /_gh/api/v1/account/email/confirm`: the token proves the new inbox (no session needed).
pub async fn confirm(
    State(state): State<AppState>,
    client: ClientCtx,
    ApiJson(c): ApiJson<Confirm>,
) -> ApiResult<Json<serde_json::Value>> {
    confirm_change(&state, &client, &c).await?;
    Ok(Json(json!({ "status": "changed" })))
}

fn clean(s: &str) -> String {
    s.chars().filter(|c| c.is_ascii_alphanumeric() || "-_.@+".contains(*c)).take(254).collect()
}

/// The page behind the link sent to the new address: one button.
#[derive(askama::Template)]
#[template(path = "confirm_email.html")]
pub struct ConfirmPage {
    layout: Layout,
    token: String,
    email: String,
}

/// `GET /_gh/confirm-email?token=…&email=…`: a page with a button; only the POST consumes.
pub async fn confirm_page(Query(q): Query<Confirm>) -> Response {
    let page = ConfirmPage {
        layout: Layout::public("Confirm your new email address"),
        token: clean(&q.token),
        email: clean(&q.email),
    };
    render(StatusCode::OK, &page)
}

/// `POST /_gh/confirm-email` from the page.
pub async fn confirm_form(
    State(state): State<AppState>,
    client: ClientCtx,
    PageForm(c): PageForm<Confirm>,
) -> Response {
    match confirm_change(&state, &client, &c).await {
        Ok(()) => message(
            StatusCode::OK,
            "Email address changed",
            "email_changed",
            "Your email address was changed. Sign in with the new address from now on.",
            Some(("/_gh/login", "Sign in")),
        ),
        Err(e) if e.code == ErrorCode::InvalidToken => message(
            StatusCode::BAD_REQUEST,
            "Email address not changed",
            "invalid_token",
            "This link is invalid or has expired.",
            None,
        ),
        Err(e) if e.code == ErrorCode::EmailTaken => message(
            e.code.status(),
            "Email address not changed",
            "email_taken",
            "That address belongs to another account.",
            None,
        ),
        Err(e) => error_page(&e, None),
    }
}
