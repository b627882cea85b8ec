//! Confirmation of a sign-in the risk engine challenged (see [`crate::risk::assess_login`]).
//!
//! The emailed link opens a page with a button; only the POST consumes the token, so mail
//! scanners that prefetch links cannot use it up. The JSON endpoint does the same for apps.

use axum::Json;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{Html, IntoResponse, Response};
use serde::Deserialize;
use serde_json::json;

use super::PREFIX;
use crate::error::{ApiResult, ErrorCode};
use crate::http::{ApiJson, ClientCtx};
use crate::state::AppState;

/// What the emailed link carries (also the body of the JSON endpoint and of the page's form).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Confirmation {
    token: String,
    ip: String,
    device: String,
    ua: String,
}

fn clean(s: &str) -> String {
    s.chars().filter(|c| c.is_ascii_alphanumeric() || "-_./:".contains(*c)).take(80).collect()
}

/// `GET /_gh/confirm-sign-in?token=…&ip=…&device=…&ua=…`: a page with a button.
pub async fn page(Query(q): Query<Confirmation>) -> Response {
    let field = |name: &str, value: &str| format!("<input type=\"hidden\" name=\"{name}\" value=\"{}\">", clean(value));
    let body = format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>Confirm a sign-in</title></head>\
         <body><main><h1>Was this you?</h1><p>A sign-in from IP address {} was held because we did not recognise the device.</p>\
         <form method=\"post\" action=\"{PREFIX}/confirm-sign-in\">{}{}{}{}<button type=\"submit\">Yes, this was me</button></form>\
         <p>If it was not you, close this page and change your password.</p></main></body></html>",
        clean(&q.ip),
        field("token", &q.token),
        field("ip", &q.ip),
        field("device", &q.device),
        field("ua", &q.ua),
    );
    let headers = [
        (axum::http::header::REFERRER_POLICY, "no-referrer"),
        (axum::http::header::CONTENT_SECURITY_POLICY, "default-src 'none'; form-action 'self'; frame-ancestors 'none'"),
    ];
    (headers, Html(body)).into_response()
}

/// `POST /_gh/confirm-sign-in` from the page.
pub async fn form(
    State(state): State<AppState>,
    client: ClientCtx,
    axum::Form(f): axum::Form<Confirmation>,
) -> Response {
    let (status, text) = match crate::risk::confirm_sign_in(&state, &client, &f.token, &f.ip, &f.device, &f.ua).await {
        Ok(()) => (StatusCode::OK, "Thank you. The sign-in is confirmed: sign in again from that device."),
        Err(e) if e.code == ErrorCode::InvalidToken => {
            (StatusCode::BAD_REQUEST, "This link is invalid or has expired.")
        }
        Err(e) => return e.into_response(),
    };
    let page = format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>Sign-in confirmation</title></head><body><main><p>{text}</p></main></body></html>"
    );
    (status, Html(page)).into_response()
}

/// `POST /_gh/api/v1/sessions/confirm-sign-in`
pub async fn api(
    State(state): State<AppState>,
    client: ClientCtx,
    ApiJson(c): ApiJson<Confirmation>,
) -> ApiResult<Json<serde_json::Value>> {
    crate::risk::confirm_sign_in(&state, &client, &c.token, &c.ip, &c.device, &c.ua).await?;
    Ok(Json(json!({ "status": "confirmed" })))
}
