//! Single-use links from notices: freeze the account, cancel an address, a settings unlock or
//! a recovery case. The link opens a page with a button; only the POST consumes the token,
//! so mail scanners that prefetch links cannot trigger (or use up) the action.

use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{Html, IntoResponse, Response};
use axum::{Form, Json};
use gatehouse_core::audit::{EventKind, Outcome};
use gatehouse_core::friction::LinkAction;
use gatehouse_core::ids::UserId;
use gatehouse_core::secret::Token;
use gatehouse_core::store::SideEffects;
use serde::Deserialize;
use serde_json::{Value, json};

use super::{PREFIX, event};
use crate::error::{ApiError, ApiResult, ErrorCode};
use crate::http::{ApiJson, ClientCtx};
use crate::mail::friction_templates as templates;
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

/// `GET /_gh/link?action=…&token=…`: a page with one button.
pub async fn page(Query(q): Query<LinkQuery>) -> Response {
    let token = clean(&q.token, 64);
    let label = match q.action.as_str() {
        "freeze" => "Freeze my account now",
        "cancel_address" => "Cancel the withdrawal address",
        "cancel_settings_unlock" => "Cancel the settings unlock",
        "cancel_recovery" => "Cancel the account recovery",
        _ => "Continue",
    };
    let body = format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>{label}</title></head>\
         <body><main><h1>{label}</h1><form method=\"post\" action=\"{PREFIX}/link\">\
         <input type=\"hidden\" name=\"token\" value=\"{token}\"><button type=\"submit\">{label}</button></form>\
         <p><a href=\"{PREFIX}/official\">Official channels</a></p></main></body></html>"
    );
    (
        [(
            axum::http::header::CONTENT_SECURITY_POLICY,
            "default-src 'none'; form-action 'self'; frame-ancestors 'none'",
        )],
        Html(body),
    )
        .into_response()
}

/// Form body of the link page.
#[derive(Debug, Deserialize)]
pub struct LinkForm {
    token: String,
}

/// `POST /_gh/link` from the page.
pub async fn page_post(State(state): State<AppState>, client: ClientCtx, Form(f): Form<LinkForm>) -> Response {
    let (status, text) = match redeem_token(&state, &client, &f.token).await {
        Ok((LinkAction::Freeze, _)) => (
            StatusCode::OK,
            "Your account is frozen: everyone is signed out, API keys are suspended and withdrawals are blocked.",
        ),
        Ok(_) => (StatusCode::OK, "Done."),
        Err(e) if e.code == ErrorCode::InvalidToken => {
            (StatusCode::BAD_REQUEST, "This link is invalid, already used or expired.")
        }
        Err(e) => return e.into_response(),
    };
    (
        status,
        Html(format!("<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>gatehouse</title></head><body><main><p>{text}</p></main></body></html>")),
    )
        .into_response()
}
