//! Request context shared by the handlers: who is calling (client IP under the trusted-proxy
//! rules, user agent, device id), cookies, CSRF checks and the JSON extractor.

use std::net::{IpAddr, SocketAddr};

use axum::extract::rejection::JsonRejection;
use axum::extract::{ConnectInfo, FromRequest, FromRequestParts, Request};
use axum::http::{HeaderMap, Method, header, request::Parts};
use gatehouse_core::apikey::TrustedProxies;
use gatehouse_core::device::UaFamily;
use gatehouse_core::ids::DeviceId;
use serde::de::DeserializeOwned;

use crate::error::{ApiError, ErrorCode};
use crate::state::AppState;

/// Cookie holding the browser access token.
pub const COOKIE_ACCESS: &str = "__Host-gh_at";
/// Cookie holding the browser refresh token.
pub const COOKIE_REFRESH: &str = "__Host-gh_rt";
/// Cookie holding the device id.
pub const COOKIE_DEVICE: &str = "__Host-gh_dev";
/// Header carrying the device id for API clients.
pub const HEADER_DEVICE: &str = "gatehouse-device";

/// The value of cookie `name`, if present exactly once.
pub fn cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    let lines = headers.get_all(header::COOKIE).into_iter().filter_map(|v| v.to_str().ok());
    gatehouse_core::headers::cookie_value(lines, name)
}

/// A `Set-Cookie` value with the `__Host-` rules: Secure, HttpOnly, SameSite=Strict, Path=/,
/// no Domain (R49).
pub fn set_cookie(name: &str, value: &str, max_age_secs: i64) -> String {
    format!("{name}={value}; Max-Age={max_age_secs}; Path=/; Secure; HttpOnly; SameSite=Strict")
}

/// A `Set-Cookie` value that deletes the cookie.
pub fn clear_cookie(name: &str) -> String {
    set_cookie(name, "", 0)
}

/// Only the client IP of a request (the gateway needs nothing else from the client context).
pub fn client_ip_of(req: &axum::extract::Request, trusted: &TrustedProxies) -> IpAddr {
    client_ip(peer_of(req.extensions()), req.headers(), trusted)
}

/// The client IP: the socket `peer` unless it is a trusted proxy, in which case
/// `X-Forwarded-For` is walked (R19).
pub fn client_ip(peer: IpAddr, headers: &axum::http::HeaderMap, trusted: &TrustedProxies) -> IpAddr {
    let xff = headers.get_all("x-forwarded-for").iter().filter_map(|v| v.to_str().ok());
    trusted.client_ip(peer, xff).ip
}

/// The socket peer recorded by the accept loop (unspecified when absent: in-process tests).
fn peer_of(ext: &axum::http::Extensions) -> IpAddr {
    ext.get::<ConnectInfo<SocketAddr>>().map(|c| c.0.ip()).unwrap_or(IpAddr::from([0, 0, 0, 0]))
}

/// Who is calling.
#[derive(Debug, Clone)]
pub struct ClientCtx {
    /// Client IP per the trusted-proxy rules.
    pub ip: IpAddr,
    /// Raw user agent (bounded).
    pub user_agent: Option<String>,
    /// User-agent family.
    pub ua_family: UaFamily,
    /// Device id from the cookie or the `Gatehouse-Device` header.
    pub device: Option<DeviceId>,
    /// Whether the device id came from the cookie (browser) rather than the header.
    pub device_from_cookie: bool,
}

impl ClientCtx {
    /// Builds the context from request parts, with the client IP of [`client_ip`].
    pub fn from_parts(parts: &Parts, trusted: &TrustedProxies) -> Self {
        let ip = client_ip(peer_of(&parts.extensions), &parts.headers, trusted);
        let user_agent = parts
            .headers
            .get(header::USER_AGENT)
            .and_then(|v| v.to_str().ok())
            .map(|s| s.chars().take(gatehouse_core::device::MAX_UA_BYTES).collect::<String>());
        let ua_family = UaFamily::parse(user_agent.as_deref());
        let from_cookie = cookie(&parts.headers, COOKIE_DEVICE).and_then(DeviceId::parse);
        let from_header = parts.headers.get(HEADER_DEVICE).and_then(|v| v.to_str().ok()).and_then(DeviceId::parse);
        let device_from_cookie = from_cookie.is_some();
        Self { ip, user_agent, ua_family, device: from_cookie.or(from_header), device_from_cookie }
    }
}

impl FromRequestParts<AppState> for ClientCtx {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Self::Rejection> {
        Ok(Self::from_parts(parts, &state.trusted_proxies))
    }
}

/// Whether a cookie-authenticated request may change state: it must come from our own origin
/// (`Sec-Fetch-Site: same-origin`/`none`, or an `Origin` equal to the public origin). Safe
/// methods always may (R50).
pub fn csrf_ok(method: &Method, headers: &HeaderMap, public_origin: &str) -> bool {
    if matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS) {
        return true;
    }
    if let Some(site) = headers.get("sec-fetch-site").and_then(|v| v.to_str().ok()) {
        return matches!(site, "same-origin" | "none");
    }
    match headers.get(header::ORIGIN).and_then(|v| v.to_str().ok()) {
        Some(origin) => origin == public_origin,
        // Neither header: not a browser-initiated cross-site request (browsers send Origin on
        // cross-site POSTs), but cookies only come from browsers — refuse to be safe.
        None => false,
    }
}

/// `Json<T>` with our error format: 415 without `application/json`, 413 when too large, 400
/// for syntax or schema errors (with the parser's message, which never echoes secrets back
/// because it quotes positions, not values).
#[derive(Debug)]
pub struct ApiJson<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for ApiJson<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        match axum::Json::<T>::from_request(req, state).await {
            Ok(axum::Json(v)) => Ok(Self(v)),
            Err(rej) => Err(json_rejection(rej)),
        }
    }
}

// schemathesis (ADR 0010): query strings get our error format too (axum's own rejection is
// `text/plain`, which the OpenAPI document does not describe).
/// `Query<T>` with our error format: 400 `invalid_request` for an unknown, repeated or
/// malformed parameter. The message never echoes the query back.
#[derive(Debug)]
pub struct ApiQuery<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequestParts<S> for ApiQuery<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        match axum::extract::Query::<T>::from_request_parts(parts, state).await {
            Ok(axum::extract::Query(v)) => Ok(Self(v)),
            Err(_) => Err(ApiError::new(ErrorCode::InvalidRequest).message("Invalid query string.")),
        }
    }
}

fn json_rejection(rej: JsonRejection) -> ApiError {
    match rej {
        JsonRejection::MissingJsonContentType(_) => ApiError::new(ErrorCode::UnsupportedMediaType),
        JsonRejection::BytesRejection(b) if b.status() == axum::http::StatusCode::PAYLOAD_TOO_LARGE => {
            ApiError::new(ErrorCode::PayloadTooLarge)
        }
        JsonRejection::JsonDataError(e) => {
            ApiError::new(ErrorCode::InvalidRequest).message(format!("Invalid request body: {}", e.body_text()))
        }
        JsonRejection::JsonSyntaxError(_) => {
            ApiError::new(ErrorCode::InvalidRequest).message("The body is not valid JSON.")
        }
        _ => ApiError::new(ErrorCode::InvalidRequest),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn h(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut m = HeaderMap::new();
        for (k, v) in pairs {
            if let Ok(v) = HeaderValue::from_str(v) {
                m.append(*k, v);
            }
        }
        m
    }

    #[test]
    fn duplicate_cookies_are_refused() {
        assert_eq!(cookie(&h(&[("cookie", "a=1; __Host-gh_at=x")]), COOKIE_ACCESS), Some("x"));
        assert_eq!(cookie(&h(&[("cookie", "__Host-gh_at=x; __Host-gh_at=y")]), COOKIE_ACCESS), None);
    }

    #[test]
    fn set_cookie_has_host_prefix_rules() {
        let c = set_cookie(COOKIE_ACCESS, "v", 600);
        for part in ["Secure", "HttpOnly", "SameSite=Strict", "Path=/", "Max-Age=600"] {
            assert!(c.contains(part), "{c}");
        }
        assert!(!c.contains("Domain"));
    }

    #[test]
    fn csrf_rules() {
        let o = "https://gh.example";
        assert!(csrf_ok(&Method::GET, &h(&[]), o));
        assert!(csrf_ok(&Method::POST, &h(&[("sec-fetch-site", "same-origin")]), o));
        assert!(!csrf_ok(&Method::POST, &h(&[("sec-fetch-site", "cross-site")]), o));
        assert!(csrf_ok(&Method::POST, &h(&[("origin", "https://gh.example")]), o));
        assert!(!csrf_ok(&Method::POST, &h(&[("origin", "https://evil.example")]), o));
        assert!(!csrf_ok(&Method::POST, &h(&[]), o));
    }
}
