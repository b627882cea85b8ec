//! Single-use links from notices: freeze the account, cancel an address, a settings unlock or
//! a recovery case. The link opens a page with a button; only the POST consumes the token,
//! so mail scanners that prefetch links cannot trigger (or use up) the action.

use axum::Json;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::Response;
use gatehouse_core::audit::{EventKind, Outcome};
use gatehouse_core::friction::LinkAction;
use gatehouse_core::ids::UserId;
use gatehouse_core::secret::Token;
use gatehouse_core::store::SideEffects;
use serde::Deserialize;
use serde_json::{Value, json};

use super::event;
use crate::error::{ApiError, ApiResult, ErrorCode};
use crate::http::{ApiJson, ClientCtx};
use crate::mail::friction_templates as templates;
use crate::pages::form::{PageForm, message};
use crate::pages::{Layout, error_page, render};
use crate::state::AppState;

/// `POST /_gh/api/v1/links/redeem`
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Redeem {
    token: String,
}

async fn redeem_token(state: &AppState, client: &ClientCtx, raw: &str) -> ApiResult<(LinkAction, bool)> {
    let token = Token::parse(raw).ok_or_else(|| ApiError::new(ErrorCode::InvalidToken))?;
    let now = state.clock.now();
    // The owner's notice commits with the action.
    let fx = |user: UserId, email: &str, action: &LinkAction, changed: bool| {
        let kind = match action {
            LinkAction::Freeze => EventKind::AccountFrozen,
            LinkAction::CancelAddress(_) => EventKind::WithdrawalAddressCancelled,
            LinkAction::CancelSettingsUnlock => EventKind::SettingsUnlockCancelled,
            LinkAction::CancelRecovery(_) => EventKind::RecoveryCancelled,
        };
        let outcome = if changed { Outcome::Success } else { Outcome::Failure };
        let mut e = event(kind, outcome, client).with("via", "email_link").with("changed", changed);
        e.actor = Some(user);
        e.subject = Some(user);
        if let LinkAction::CancelAddress(id) | LinkAction::CancelRecovery(id) = action {
            e = e.with("id", id.clone());
        }
        let mut fx = SideEffects::event(e);
        let notice = match action {
            LinkAction::Freeze => Some(templates::account_frozen()),
            LinkAction::CancelRecovery(id) => {
                Some(templates::recovery_closed(id, "cancelled from the link in our email"))
            }
            LinkAction::CancelSettingsUnlock => Some(templates::settings_unlock_cancelled()),
            LinkAction::CancelAddress(_) => None,
        };
        if let Some(content) = notice.filter(|_| changed) {
            match state.mail(email, &content) {
                Ok(m) => fx = fx.mail(m),
                Err(_) => tracing::error!("could not seal the notice for a redeemed link"),
            }
        }
        fx
    };
    let Some((user, action, changed)) = state.store.redeem_link(token.hash(), now, &fx).await? else {
        return Err(ApiError::new(ErrorCode::InvalidToken));
    };
    if changed {
        state.wake_mailer();
        if action == LinkAction::Freeze {
            crate::friction::invalidate_keys(state, user).await?;
        }
    }
    Ok((action, changed))
}

/// Redeems a link token.
pub async fn redeem(
    State(state): State<AppState>,
    client: ClientCtx,
    ApiJson(req): ApiJson<Redeem>,
) -> ApiResult<Json<Value>> {
    let (action, changed) = redeem_token(&state, &client, &req.token).await?;
    Ok(Json(json!({ "action": action.name(), "changed": changed })))
}

/// Query of an emailed link.
#[derive(Debug, Deserialize)]
pub struct LinkQuery {
    #[serde(default)]
    action: String,
    #[serde(default)]
    token: String,
}

fn clean(s: &str, max: usize) -> String {
    s.chars().filter(|c| c.is_ascii_alphanumeric() || *c == '-' || *c == '_').take(max).collect()
}

/// The page behind an emailed link: what the button does, and the button.
#[derive(askama::Template)]
#[template(path = "link_action.html")]
pub struct LinkPage {
    layout: Layout,
    explain: &'static str,
    token: String,
    danger: bool,
}

/// `GET /_gh/link?action=…&token=…`: a page with one button (in the pages' layout, with the
/// page CSP); only the POST consumes the token.
pub async fn page(Query(q): Query<LinkQuery>) -> Response {
    let (label, explain, danger) = match q.action.as_str() {
        "freeze" => (
            "Freeze my account now",
            "Freezing signs everyone out, suspends your API keys and blocks withdrawals until you recover the account.",
            true,
        ),
        "cancel_address" => {
            ("Cancel the withdrawal address", "The new withdrawal address will not become usable.", false)
        }
        "cancel_settings_unlock" => ("Cancel the settings unlock", "Your security settings stay locked.", false),
        "cancel_recovery" => (
            "Cancel the account recovery",
            "The recovery case is closed and nothing about your account changes.",
            false,
        ),
        _ => ("Continue", "Continue with the action from our email.", false),
    };
    let page = LinkPage { layout: Layout::public(label), explain, token: clean(&q.token, 64), danger };
    render(StatusCode::OK, &page)
}

/// Form body of the link page.
#[derive(Debug, Deserialize)]
pub struct LinkForm {
    #[serde(default)]
    token: String,
}

/// `POST /_gh/link` from the page.
pub async fn page_post(State(state): State<AppState>, client: ClientCtx, PageForm(f): PageForm<LinkForm>) -> Response {
    let (title, kind, text) = match redeem_token(&state, &client, &f.token).await {
        Ok((LinkAction::Freeze, _)) => (
            "Your account is frozen",
            "account_frozen",
            "Your account is frozen: everyone is signed out, API keys are suspended and withdrawals are blocked.",
        ),
        Ok(_) => ("Done", "link_redeemed", "Done."),
        Err(e) if e.code == ErrorCode::InvalidToken => {
            let text = "This link is invalid, already used or expired.";
            return message(StatusCode::BAD_REQUEST, "Link not valid", "invalid_token", text, None);
        }
        Err(e) => return error_page(&e, None),
    };
    message(StatusCode::OK, title, kind, text, Some(("/_gh/login", "Sign in")))
}
