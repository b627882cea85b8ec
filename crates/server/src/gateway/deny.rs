//! Denials in each dialect's own error format, so unmodified exchange clients recognise them.

use axum::http::{HeaderName, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use gatehouse_core::apikey::KeyDenied;
use gatehouse_core::signing::{Dialect, DialectError};
use serde_json::json;

/// A refusal, ready to render.
#[derive(Debug, Clone)]
pub struct Denied {
    /// HTTP status.
    pub status: u16,
    /// JSON body in the dialect's format.
    pub body: String,
    /// Extra headers (`Retry-After`, `Remaining-Req`, rate-limit headers).
    pub headers: Vec<(&'static str, String)>,
    /// Short reason for usage counts and audit events (never secret).
    pub reason: &'static str,
}

impl Denied {
    /// From a signing-module error.
    pub fn dialect(e: &DialectError, reason: &'static str) -> Self {
        Self { status: e.status(), body: e.body(), headers: vec![], reason }
    }

    /// From a key-policy refusal.
    pub fn key(dialect: Dialect, d: KeyDenied) -> Self {
        let (status, body) = match dialect {
            Dialect::Upbit => {
                let e = d.upbit();
                (e.status, json!({ "error": { "name": e.name, "message": e.message } }))
            }
            Dialect::Binance => {
                let e = d.binance();
                (e.status, json!({ "code": e.code, "msg": e.msg }))
            }
            Dialect::Rfc9421 => (d.status(), json!({ "error": { "code": d.code(), "message": d.to_string() } })),
        };
        Self { status, body: body.to_string(), headers: vec![], reason: d.code() }
    }

    /// No route of this dialect matches (fail closed).
    pub fn no_route(dialect: Dialect) -> Self {
        let body = match dialect {
            Dialect::Upbit => json!({ "error": { "name": "not_found", "message": "Not found." } }),
            Dialect::Binance => json!({ "code": -1000, "msg": "Unknown endpoint." }),
            Dialect::Rfc9421 => json!({ "error": { "code": "not_found", "message": "No such route." } }),
        };
        Self { status: 404, body: body.to_string(), headers: vec![], reason: "no_route" }
    }

    /// A path that could bypass the scope checks (dot segments, encoded slashes).
    pub fn bad_path(dialect: Dialect) -> Self {
        let body = match dialect {
            Dialect::Upbit => json!({ "error": { "name": "validation_error", "message": "Invalid path." } }),
            Dialect::Binance => json!({ "code": -1100, "msg": "Illegal characters found in a parameter." }),
            Dialect::Rfc9421 => json!({ "error": { "code": "invalid_path", "message": "Invalid path." } }),
        };
        Self { status: 400, body: body.to_string(), headers: vec![], reason: "invalid_path" }
    }

    /// Rate limit exceeded.
    pub fn rate_limited(dialect: Dialect, retry_after_secs: i64) -> Self {
        let body = match dialect {
            Dialect::Upbit => json!({ "error": { "name": "too_many_requests", "message": "Too many API requests." } }),
            Dialect::Binance => {
                json!({ "code": -1003, "msg": "Too many requests; please use the websocket for live updates." })
            }
            Dialect::Rfc9421 => json!({ "error": { "code": "rate_limited", "message": "Too many requests." } }),
        };
        Self {
            status: 429,
            body: body.to_string(),
            headers: vec![("retry-after", retry_after_secs.max(1).to_string())],
            reason: "rate_limited",
        }
    }

    /// A dependency did not answer: refuse (fail closed) with 503.
    pub fn unavailable(dialect: Dialect) -> Self {
        let body = match dialect {
            Dialect::Upbit => {
                json!({ "error": { "name": "server_error", "message": "Service temporarily unavailable." } })
            }
            Dialect::Binance => {
                json!({ "code": -1001, "msg": "Internal error; unable to process your request. Please try again." })
            }
            Dialect::Rfc9421 => {
                json!({ "error": { "code": "unavailable", "message": "Service temporarily unavailable." } })
            }
        };
        Self { status: 503, body: body.to_string(), headers: vec![("retry-after", "2".into())], reason: "unavailable" }
    }

    /// The upstream did not answer.
    pub fn upstream(dialect: Dialect) -> Self {
        let body = match dialect {
            Dialect::Upbit => json!({ "error": { "name": "server_error", "message": "Upstream unavailable." } }),
            Dialect::Binance => {
                json!({ "code": -1001, "msg": "Internal error; unable to process your request. Please try again." })
            }
            Dialect::Rfc9421 => json!({ "error": { "code": "bad_gateway", "message": "Upstream unavailable." } }),
        };
        Self { status: 502, body: body.to_string(), headers: vec![], reason: "upstream" }
    }

    /// Body over the limit.
    pub fn too_large(dialect: Dialect) -> Self {
        let body = match dialect {
            Dialect::Upbit => json!({ "error": { "name": "validation_error", "message": "Request body too large." } }),
            Dialect::Binance => json!({ "code": -1101, "msg": "Request body too large." }),
            Dialect::Rfc9421 => {
                json!({ "error": { "code": "payload_too_large", "message": "Request body too large." } })
            }
        };
        Self { status: 413, body: body.to_string(), headers: vec![], reason: "too_large" }
    }

    /// An API key in the URL (R73): refused so it never lands in logs downstream.
    pub fn key_in_url(dialect: Dialect) -> Self {
        let body = match dialect {
            Dialect::Upbit => {
                json!({ "error": { "name": "validation_error", "message": "Send credentials in headers, not in the URL." } })
            }
            Dialect::Binance => {
                json!({ "code": -1101, "msg": "Send the API key in the X-MBX-APIKEY header, not in the URL." })
            }
            Dialect::Rfc9421 => {
                json!({ "error": { "code": "invalid_request", "message": "Send credentials in headers, not in the URL." } })
            }
        };
        Self { status: 400, body: body.to_string(), headers: vec![], reason: "key_in_url" }
    }
}

impl IntoResponse for Denied {
    fn into_response(self) -> Response {
        let status = StatusCode::from_u16(self.status).unwrap_or(StatusCode::FORBIDDEN);
        let mut resp = (status, [(axum::http::header::CONTENT_TYPE, "application/json; charset=utf-8")], self.body)
            .into_response();
        insert_headers(resp.headers_mut(), self.headers);
        resp
    }
}

/// Adds the gateway's answer headers (`Remaining-Req`, `X-MBX-USED-WEIGHT-1M`, `Retry-After`,
/// …): names are our own lowercase constants, taken as they are (no parsing, no copy); a
/// value that is not a valid header value is left out.
pub fn insert_headers(map: &mut axum::http::HeaderMap, headers: Vec<(&'static str, String)>) {
    for (k, v) in headers {
        let Ok(value) = HeaderValue::try_from(v) else { continue };
        let name = if k.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-') && !k.is_empty() {
            HeaderName::from_static(k)
        } else {
            match HeaderName::from_bytes(k.as_bytes()) {
                Ok(name) => name,
                Err(_) => continue,
            }
        };
        map.insert(name, value);
    }
}
