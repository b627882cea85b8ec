//! Calling the JSON API's handlers in process and reading their answers back.
//!
//! Pages never duplicate a rule: they build the API's own request body (through serde, so the
//! same `deny_unknown_fields` schema and size limits apply), call the handler, and render the
//! JSON it answered. Set-Cookie headers (login, refresh, logout) are passed through; those of
//! an answer read in the middle of a page's work (the step-up behind a sensitive form rotates
//! the access cookie, R43) are kept with [`keep_cookies`] and added to whatever the page
//! answers in the end by the [`carry_cookies`] middleware.

use std::sync::{Arc, Mutex};

use axum::extract::Request;
use axum::http::{HeaderMap, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::error::{ApiError, ApiResult, ErrorCode};
use crate::http::ApiJson;

/// Largest API answer a page reads back (answers are small; this bounds a bug, not an attack).
const MAX_ANSWER_BYTES: usize = 1024 * 1024;

/// A successful API answer.
#[derive(Debug)]
pub struct Answer {
    /// Its status.
    pub status: StatusCode,
    /// Its `Set-Cookie` headers, to pass on to the browser.
    pub cookies: HeaderMap,
    /// Its JSON body (`Null` for 204).
    pub body: Value,
}

/// Reads a handler's answer. Error statuses cannot occur here (handlers return `Err` for
/// those), but are turned back into an [`ApiError`] defensively.
pub async fn read(resp: Response) -> ApiResult<Answer> {
    let status = resp.status();
    let mut cookies = HeaderMap::new();
    for v in resp.headers().get_all(header::SET_COOKIE) {
        cookies.append(header::SET_COOKIE, v.clone());
    }
    let bytes = axum::body::to_bytes(resp.into_body(), MAX_ANSWER_BYTES)
        .await
        .map_err(|e| ApiError::internal("page api answer", e))?;
    let body = if bytes.is_empty() { Value::Null } else { serde_json::from_slice(&bytes).unwrap_or(Value::Null) };
    if !status.is_success() {
        return Err(ApiError::internal("page api answer", format!("unexpected status {status}")));
    }
    Ok(Answer { status, cookies, body })
}

/// Calls a handler result through [`read`].
pub async fn answer<R: IntoResponse>(result: ApiResult<R>) -> ApiResult<Answer> {
    read(result?.into_response()).await
}

/// Builds an API request body from JSON, with the API's schema: a field the API refuses is
/// refused here with the same code.
pub fn body<T: DeserializeOwned>(v: Value) -> ApiResult<ApiJson<T>> {
    serde_json::from_value(v)
        .map(ApiJson)
        .map_err(|e| ApiError::new(ErrorCode::InvalidRequest).message(format!("Invalid request: {e}")))
}

/// A string field of an answer (empty when absent).
pub fn text(v: &Value, key: &str) -> String {
    v.get(key).and_then(Value::as_str).unwrap_or_default().to_owned()
}

/// A list-of-strings field of an answer.
pub fn strings(v: &Value, key: &str) -> Vec<String> {
    v.get(key)
        .and_then(Value::as_array)
        .map(|a| a.iter().filter_map(Value::as_str).map(str::to_owned).collect())
        .unwrap_or_default()
}

tokio::task_local! {
    /// Set-Cookie headers kept during one page request.
    static KEPT: Arc<Mutex<HeaderMap>>;
}

/// Keeps the `Set-Cookie` headers of an answer for the page's final response (the page may
/// answer a redirect or a form with an error after it: the browser must get them either way).
pub fn keep_cookies(cookies: &HeaderMap) {
    let _ = KEPT.try_with(|kept| {
        if let Ok(mut k) = kept.lock() {
            for v in cookies.get_all(header::SET_COOKIE) {
                k.append(header::SET_COOKIE, v.clone());
            }
        }
    });
}

/// Middleware of the page routes: adds the cookies kept by [`keep_cookies`] to the response.
pub async fn carry_cookies(req: Request, next: Next) -> Response {
    let kept = Arc::new(Mutex::new(HeaderMap::new()));
    let mut resp = KEPT.scope(kept.clone(), next.run(req)).await;
    if let Ok(k) = kept.lock() {
        for v in k.get_all(header::SET_COOKIE) {
            resp.headers_mut().append(header::SET_COOKIE, v.clone());
        }
    }
    resp
}
