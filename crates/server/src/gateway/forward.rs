//! Forward-auth mode (nginx `auth_request`, Caddy `forward_auth`, Traefik ForwardAuth): the
//! front proxy sends the original method and URI in headers, gatehouse answers 200 with
//! identity headers, or the dialect's refusal (401/403/429/503), and the front proxy forwards
//! or refuses accordingly.
//!
//! `auth_request` subrequests carry no body, so only requests whose signature does not cover a
//! body (Upbit and Binance GET/DELETE with query parameters, RFC 9421 without a body) can be
//! verified this way; a signed body makes verification fail closed. Use the reverse-proxy
//! mode for everything else.

use std::net::IpAddr;

use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use gatehouse_core::signing::RawRequest;

use super::Caller;
use super::deny::Denied;
use crate::error::{ApiError, ErrorCode};
use crate::state::AppState;

fn header_str<'a>(h: &'a HeaderMap, name: &HeaderName) -> Option<&'a str> {
    h.get(name).and_then(|v| v.to_str().ok())
}

// The plumbing headers, as names (a lookup by `&str` parses the name every time).
const X_ORIGINAL_METHOD: HeaderName = HeaderName::from_static("x-original-method");
const X_FORWARDED_METHOD: HeaderName = HeaderName::from_static("x-forwarded-method");
const X_ORIGINAL_URI: HeaderName = HeaderName::from_static("x-original-uri");
const X_FORWARDED_URI: HeaderName = HeaderName::from_static("x-forwarded-uri");
const X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");

/// `/_gh/auth/forward` through the router (TLS connections, in-process tests); plain-HTTP
/// connections are answered by [`answer`] straight from the connection (`app::serve`).
pub async fn handle(State(state): State<AppState>, req: Request) -> Response {
    let client_ip = crate::http::client_ip_of(&req, &state.trusted_proxies);
    answer(&state, client_ip, req.headers()).await
}

/// The check: reads `X-Original-Method` (or `X-Forwarded-Method`) and `X-Original-URI` (or
/// `X-Forwarded-Uri`) and runs the gateway pipeline on them.
pub async fn answer(state: &AppState, client_ip: IpAddr, headers: &HeaderMap) -> Response {
    let Some(gw) = state.gateway.as_ref() else { return ApiError::new(ErrorCode::NotFound).into_response() };
    let method = header_str(headers, &X_ORIGINAL_METHOD).or_else(|| header_str(headers, &X_FORWARDED_METHOD));
    let target = header_str(headers, &X_ORIGINAL_URI).or_else(|| header_str(headers, &X_FORWARDED_URI));
    let (Some(method), Some(target)) = (method, target) else {
        return (StatusCode::BAD_REQUEST, "X-Original-Method and X-Original-URI are required").into_response();
    };
    let path = target.split('?').next().unwrap_or("");
    let Some(route) = gw.route_for(path) else {
        return (StatusCode::FORBIDDEN, "no gateway route for this path").into_response();
    };
    let authority = header_str(headers, &X_FORWARDED_HOST).or_else(|| header_str(headers, &header::HOST)).unwrap_or("");
    // The original request's headers, minus the forward-auth plumbing (borrowed, not copied).
    let raw_h: Vec<(&str, &[u8])> = headers
        .iter()
        .filter(|(k, _)| {
            let k = k.as_str();
            !k.starts_with("x-original-") && !k.starts_with("x-forwarded-") && k != "host"
        })
        .map(|(k, v)| (k.as_str(), v.as_bytes()))
        .collect();
    let raw = RawRequest { method, target, authority, headers: &raw_h, body: &[] };
    let user_agent = headers.get(header::USER_AGENT).and_then(|v| v.to_str().ok());
    let caller = Caller { ip: client_ip, user_agent, now: state.clock.now() };
    match gw.check(route, &raw, &caller, state.store.as_ref(), &state.keyring).await {
        Ok(g) => {
            let mut resp = StatusCode::OK.into_response();
            let h = resp.headers_mut();
            h.reserve(5 + g.headers.len());
            if let Ok(value) = HeaderValue::try_from(g.identity) {
                h.insert(HeaderName::from_static(gatehouse_core::upstream::IDENTITY_HEADER), value);
            }
            let [user, key, scopes] = &g.key.identity_headers;
            h.insert(HeaderName::from_static("x-gatehouse-user"), user.clone());
            h.insert(HeaderName::from_static("x-gatehouse-key"), key.clone());
            h.insert(HeaderName::from_static("x-gatehouse-scopes"), scopes.clone());
            super::deny::insert_headers(h, g.headers);
            resp
        }
        Err(d) => forward_denial(d),
    }
}

/// The dialect's refusal with its real status (401, 403, 429, 503). The status and body are
/// also copied into `X-Gatehouse-Status` / `X-Gatehouse-Error` so that a front proxy that
/// collapses unusual statuses (nginx turns anything but 2xx/401/403 into 500) can still read
/// them with `auth_request_set` and answer the client in the dialect's format.
fn forward_denial(mut d: Denied) -> Response {
    d.headers.push(("x-gatehouse-status", d.status.to_string()));
    d.headers.push(("x-gatehouse-error", d.body.clone()));
    d.into_response()
}
