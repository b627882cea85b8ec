//! A test upstream (the "exchange back end"): records what reaches it and checks gatehouse's
//! signed identity assertion on every request.

#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::{Arc, Mutex};

use axum::body::Bytes;
use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::response::IntoResponse;
use gatehouse_core::clock::{Clock, Span, SystemClock};
use gatehouse_core::secret::SecretBytes;
use serde_json::{Value, json};

/// What one forwarded request looked like.
#[derive(Debug, Clone)]
pub struct Seen {
    pub method: String,
    pub path: String,
    pub query: Option<String>,
    pub body: Vec<u8>,
    pub identity: Option<gatehouse_core::upstream::Identity>,
    pub headers: Vec<(String, String)>,
}

#[derive(Clone)]
struct Ctx {
    secret: Arc<SecretBytes>,
    seen: Arc<Mutex<Vec<Seen>>>,
}

pub struct Upstream {
    pub base: String,
    seen: Arc<Mutex<Vec<Seen>>>,
}

impl Upstream {
    pub async fn start(secret: &[u8]) -> Self {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let ctx = Ctx { secret: Arc::new(SecretBytes::new(secret.to_vec())), seen: seen.clone() };
        let app = axum::Router::new().fallback(handle).with_state(ctx);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await });
        Self { base, seen }
    }

    pub fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }
}

async fn handle(State(ctx): State<Ctx>, req: Request) -> impl IntoResponse {
    let (parts, body) = req.into_parts();
    let body: Bytes = axum::body::to_bytes(body, 1 << 20).await.unwrap_or_default();
    let path = parts.uri.path().to_owned();
    // The suite moves gatehouse's clock forward by hours, so judge freshness against "now + 30
    // days" with a generous maximum age: this checks the MAC and the binding, which is the point.
    let judge_at = SystemClock.now().plus(Span::days(30));
    let identity = parts.headers.get("x-gatehouse-identity").and_then(|v| v.to_str().ok()).and_then(|h| {
        gatehouse_core::upstream::verify(&ctx.secret, h, parts.method.as_str(), &path, judge_at, Span::days(60)).ok()
    });
    let seen = Seen {
        method: parts.method.to_string(),
        path: path.clone(),
        query: parts.uri.query().map(str::to_owned),
        body: body.to_vec(),
        identity: identity.clone(),
        headers: parts.headers.iter().map(|(k, v)| (k.to_string(), v.to_str().unwrap_or("").to_owned())).collect(),
    };
    ctx.seen.lock().unwrap().push(seen);
    let public = matches!(path.as_str(), "/api/v3/ping" | "/api/v3/time");
    if identity.is_none() && !public {
        return (StatusCode::INTERNAL_SERVER_ERROR, axum::Json(json!({ "error": "no valid identity assertion" })));
    }
    let body: Value = match path.as_str() {
        "/v1/accounts" => json!([{ "currency": "KRW", "balance": "1000000.0", "locked": "0.0", "avg_buy_price": "0",
                                   "avg_buy_price_modified": false, "unit_currency": "KRW" }]),
        "/api/v3/ping" => json!({}),
        "/api/v3/time" => json!({ "serverTime": SystemClock.now().as_millis() }),
        "/api/v3/account" => {
            json!({ "makerCommission": 10, "canTrade": true, "balances": [{ "asset": "BTC", "free": "1.0", "locked": "0.0" }] })
        }
        "/api/v3/order" => json!({ "symbol": "BTCUSDT", "orderId": 1, "clientOrderId": "x", "status": "NEW" }),
        _ => json!({ "ok": true, "path": path, "user": identity.map(|i| i.user.to_string()) }),
    };
    (StatusCode::OK, axum::Json(body))
}

/// A webhook receiver that records deliveries and checks their signature.
pub struct WebhookSink {
    pub url: String,
    got: Arc<Mutex<Vec<(String, Value, bool)>>>,
}

#[derive(Clone)]
struct HookCtx {
    secret: Arc<Vec<u8>>,
    got: Arc<Mutex<Vec<(String, Value, bool)>>>,
}

impl WebhookSink {
    pub async fn start(secret: &str) -> Self {
        let got = Arc::new(Mutex::new(Vec::new()));
        let ctx = HookCtx { secret: Arc::new(secret.as_bytes().to_vec()), got: got.clone() };
        let app = axum::Router::new().fallback(hook).with_state(ctx);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/hooks", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await });
        Self { url, got }
    }

    /// (topic, body, signature valid) of every delivery so far.
    pub fn deliveries(&self) -> Vec<(String, Value, bool)> {
        self.got.lock().unwrap().clone()
    }

    /// Polls for a delivery of `topic`.
    pub async fn wait_for(&self, topic: &str) -> Value {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
        loop {
            if let Some((_, body, valid)) = self.deliveries().into_iter().find(|(t, _, _)| t == topic) {
                assert!(valid, "webhook signature must verify");
                return body;
            }
            assert!(std::time::Instant::now() < deadline, "no webhook {topic}: {:?}", self.deliveries());
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
    }
}

async fn hook(State(ctx): State<HookCtx>, req: Request) -> impl IntoResponse {
    use hmac::{Hmac, KeyInit, Mac};
    let (parts, body) = req.into_parts();
    let body = axum::body::to_bytes(body, 1 << 20).await.unwrap_or_default();
    let h = |n: &str| parts.headers.get(n).and_then(|v| v.to_str().ok()).unwrap_or("").to_owned();
    let (topic, id, sig) = (h("x-gatehouse-event"), h("x-gatehouse-delivery"), h("x-gatehouse-signature"));
    let valid = (|| {
        let (t, v1) = sig.split_once(",v1=")?;
        let t = t.strip_prefix("t=")?;
        let mut mac = <Hmac<sha2::Sha256>>::new_from_slice(&ctx.secret).ok()?;
        mac.update(format!("{t}.{id}.").as_bytes());
        mac.update(&body);
        mac.verify_slice(&hex::decode(v1).ok()?).ok()
    })()
    .is_some();
    let v: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    ctx.got.lock().unwrap().push((topic, v, valid));
    StatusCode::OK
}
