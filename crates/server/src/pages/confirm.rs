//! Confirmation of a sign-in the risk engine held (an unfamiliar device or network on an
//! account without a second factor): the emailed link opens a page with a button, and only
//! the POST — the API's own confirmation — consumes the token, so mail scanners that prefetch
//! links cannot use it up.

use axum::extract::{Query, State};
use axum::http::{HeaderMap, Method, StatusCode};
use axum::response::Response;
use serde::Deserialize;
use serde_json::json;

use super::form::{PageForm, cross_site, message};
use super::{Layout, api, error_page, render};
use crate::error::ErrorCode;
use crate::http::ClientCtx;
use crate::routes;
use crate::state::AppState;

/// What the emailed link carries (and the page's form posts back).
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct Confirmation {
    token: String,
    ip: String,
    device: String,
    ua: String,
}

/// Keeps only the characters the link can legitimately carry, bounded.
fn clean(s: &str) -> String {
    s.chars().filter(|c| c.is_ascii_alphanumeric() || "-_./:".contains(*c)).take(80).collect()
}

/// The confirmation page.
#[derive(askama::Template)]
#[template(path = "confirm_sign_in.html")]
pub struct ConfirmPage {
    layout: Layout,
    token: String,
    ip: String,
    device: String,
    ua: String,
}

/// `GET /_gh/confirm-sign-in?token=…&ip=…&device=…&ua=…`
pub async fn page(Query(q): Query<Confirmation>) -> Response {
    let page = ConfirmPage {
        layout: Layout::public("Was this you?"),
        token: clean(&q.token),
        ip: clean(&q.ip),
        device: clean(&q.device),
        ua: clean(&q.ua),
    };
    render(StatusCode::OK, &page)
}

/// `POST /_gh/confirm-sign-in`: the API's confirmation.
pub async fn confirm(
    State(state): State<AppState>,
    method: Method,
    headers: HeaderMap,
    client: ClientCtx,
    PageForm(f): PageForm<Confirmation>,
) -> Response {
    if let Some(r) = cross_site(&state, &method, &headers) {
        return r;
    }
    let body = json!({ "token": f.token, "ip": f.ip, "device": f.device, "ua": f.ua });
    let result = match api::body(body) {
        Ok(b) => api::answer(routes::confirm::api(State(state), client, b).await).await,
        Err(e) => Err(e),
    };
    match result {
        Ok(_) => message(
            StatusCode::OK,
            "Sign-in confirmed",
            "confirmed",
            "Thank you. The sign-in is confirmed: sign in again from that device.",
            Some(("/_gh/login", "Sign in")),
        ),
        Err(e) if matches!(e.code, ErrorCode::InvalidToken | ErrorCode::InvalidRequest) => message(
            StatusCode::BAD_REQUEST,
            "Link not valid",
            "invalid_token",
            "This link is invalid, already used or has expired.",
            None,
        ),
        Err(e) => error_page(&e, None),
    }
}
