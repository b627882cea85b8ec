//! Reverse-proxy mode: verify, strip client identity headers, add the signed identity, forward
//! to the upstream, stream the answer back.

use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::Request;
use axum::http::{HeaderMap, HeaderName, HeaderValue, Uri, header};
use axum::response::{IntoResponse, Response};
use gatehouse_core::signing::RawRequest;
use http_body_util::Full;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;

use super::deny::Denied;
use super::{Caller, CompiledRoute};
use crate::error::request_id;
use crate::state::AppState;

/// The pooled upstream client.
pub type HttpClient = Client<HttpConnector, Full<Bytes>>;

/// A keep-alive client with a connect timeout.
pub fn client(timeout: Duration) -> HttpClient {
    let mut connector = HttpConnector::new();
    connector.set_connect_timeout(Some(timeout));
    connector.set_nodelay(true);
    Client::builder(TokioExecutor::new()).pool_idle_timeout(Duration::from_secs(30)).build(connector)
}

/// Hop-by-hop headers (RFC 9110 §7.6.1) and headers gatehouse owns or consumes.
fn is_stripped(name: &str) -> bool {
    matches!(
        name,
        "connection"
            | "keep-alive"
            | "proxy-connection"
            | "te"
            | "trailer"
            | "transfer-encoding"
            | "upgrade"
            | "proxy-authorization"
            | "proxy-authenticate"
            | "host"
            | "content-length"
            | "authorization"
            | "x-mbx-apikey"
            | "signature"
            | "signature-input"
            | "x-forwarded-for"
            | "x-real-ip"
            | "forwarded"
            | "x-http-method-override"
            | "x-method-override"
            | "x-http-method"
    ) || name.starts_with(gatehouse_core::upstream::HEADER_PREFIX)
}

/// The raw header list the signing module reads.
pub fn raw_headers(headers: &HeaderMap) -> Vec<(&str, &[u8])> {
    headers.iter().map(|(k, v)| (k.as_str(), v.as_bytes())).collect()
}

/// Handles one proxied request.
pub async fn handle(state: &AppState, route: &CompiledRoute, client_ip: std::net::IpAddr, req: Request) -> Response {
    let Some(gw) = state.gateway.as_ref() else { return Denied::no_route(route.dialect).into_response() };
    let (parts, body) = req.into_parts();
    let body = match axum::body::to_bytes(body, gw.max_body).await {
        Ok(b) => b,
        Err(_) => return Denied::too_large(route.dialect).into_response(),
    };
    let target = parts.uri.path_and_query().map(|pq| pq.as_str()).unwrap_or("/");
    let authority = parts.headers.get(header::HOST).and_then(|v| v.to_str().ok()).unwrap_or("");
    let headers = raw_headers(&parts.headers);
    let raw = RawRequest { method: parts.method.as_str(), target, authority, headers: &headers, body: &body };
    let user_agent = parts.headers.get(header::USER_AGENT).and_then(|v| v.to_str().ok());
    let caller = Caller { ip: client_ip, user_agent, now: state.clock.now() };
    let inner = route.inner_path(parts.uri.path());
    let granted = if parts.method == axum::http::Method::GET && route.public.iter().any(|p| p == inner) {
        if let Err(d) = gw.check_public(route, &caller).await {
            return d.into_response();
        }
        None
    } else {
        match gw.check(route, &raw, &caller, state.store.as_ref(), &state.keyring).await {
            Ok(g) => Some(g),
            Err(d) => return d.into_response(),
        }
    };
    let (path, identity, extra_headers) = match granted {
        Some(g) => (g.path, Some(g.identity), g.headers),
        None => (inner.to_owned(), None, vec![]),
    };
    let query = parts.uri.query().map(|q| format!("?{q}")).unwrap_or_default();
    let uri: Uri = match format!("{}{}{}", route.upstream, path, query).parse() {
        Ok(u) => u,
        Err(_) => return Denied::bad_path(route.dialect).into_response(),
    };
    let mut out = hyper::Request::builder().method(parts.method.clone()).uri(uri);
    if let Some(h) = out.headers_mut() {
        for (name, value) in &parts.headers {
            if !is_stripped(name.as_str()) {
                h.append(name.clone(), value.clone());
            }
        }
        if let Some(Ok(v)) = identity.as_deref().map(HeaderValue::from_str) {
            h.insert(HeaderName::from_static(gatehouse_core::upstream::IDENTITY_HEADER), v);
        }
        if let Ok(v) = HeaderValue::from_str(&client_ip.to_string()) {
            h.insert(HeaderName::from_static("x-forwarded-for"), v);
        }
        if let Ok(v) = HeaderValue::from_str(&request_id()) {
            h.insert(HeaderName::from_static("x-request-id"), v);
        }
    }
    let Ok(out) = out.body(Full::new(body)) else { return Denied::upstream(route.dialect).into_response() };
    let upstream = match gw.client.request(out).await {
        Ok(r) => r,
        Err(e) => {
            tracing::warn!(request_id = %request_id(), error = %e, "upstream request failed");
            let mut d = Denied::upstream(route.dialect);
            d.headers.extend(extra_headers);
            return d.into_response();
        }
    };
    let (mut up_parts, up_body) = upstream.into_parts();
    let stripped: Vec<HeaderName> = up_parts.headers.keys().filter(|k| is_hop_by_hop(k.as_str())).cloned().collect();
    for k in stripped {
        up_parts.headers.remove(&k);
    }
    super::deny::insert_headers(&mut up_parts.headers, extra_headers);
    Response::from_parts(up_parts, Body::new(up_body))
}

fn is_hop_by_hop(name: &str) -> bool {
    matches!(
        name,
        "connection" | "keep-alive" | "proxy-connection" | "te" | "trailer" | "transfer-encoding" | "upgrade"
    )
}
