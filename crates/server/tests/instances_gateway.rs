//! The verifying gateway on two instances sharing PostgreSQL and Redis: an identical signed
//! request fanned out to both at once is accepted exactly once (F7), and the per-IP budget and
//! a key's budget are each one budget, not one per instance.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::sync::Arc;

use base64::Engine as _;
use common::upstream::Upstream;
use common::{Backend, Device, Server, SmtpSink, register_verified, scratch};
use serde_json::json;

const PW: &str = "violet tram harbour 77";

/// A Redis key prefix (`storage.redis_prefix`) no other test or run uses. Both tests send from
/// 127.0.0.1 through the machine's one Redis, where the per-IP budget (`<prefix>rl:ip4:127.0.0.1`)
/// is shared by every instance of a deployment — the point of the second test. Each pair is its
/// own deployment, so the tests run at once without spending each other's budget or nonces, and
/// each starts from a fresh budget.
fn fresh_prefix(test: &str) -> String {
    format!("t-{test}-{}-{}:", std::process::id(), now_ms())
}

/// Two instances of one deployment; `limits`, when given, is the route's rate-limit groups
/// (a `[gateway.limits.tight]` list).
async fn pair(
    sink: &SmtpSink,
    upstream: &Upstream,
    secret: &[u8],
    per_ip: u32,
    prefix: &str,
    limits: Option<&str>,
) -> (Server, Server) {
    let mut cfg = format!(
        "[gateway]\nidentity_secret = \"{}\"\nper_ip_per_second = {per_ip}\ninstances = 2\n[[gateway.routes]]\nprefix = \"/api\"\ndialect = \"binance\"\nupstream = \"{}\"\ntable = \"binance\"\n",
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(secret),
        upstream.base
    );
    if let Some(limits) = limits {
        cfg.push_str(&format!("limits = \"tight\"\n[gateway.limits]\ntight = {limits}\n"));
    }
    let redis = ("GATEHOUSE_STORAGE__REDIS_URL", "redis://127.0.0.1:6379");
    let prefix = ("GATEHOUSE_STORAGE__REDIS_PREFIX", prefix);
    let a = Server::start_with_config(Backend::Postgres, sink, &cfg, &[redis, prefix]).await;
    let url = a.database_url.clone().unwrap();
    let b = Server::start_with_config(
        Backend::Sqlite,
        sink,
        &cfg,
        &[
            redis,
            prefix,
            ("GATEHOUSE_STORAGE__DATABASE_URL", &url),
            ("GATEHOUSE_SECRETS__MASTER_KEYS", common::TEST_MASTER_KEY),
        ],
    )
    .await;
    (a, b)
}

/// A verified account on `srv` with a `view_assets` HMAC key: (key id, secret).
async fn view_key(srv: &Server, sink: &SmtpSink, email: &str) -> (String, String) {
    register_verified(srv, sink, email, PW).await;
    let mut owner = Device::new("python-requests/2.34.2");
    assert_eq!(owner.login(srv, email, PW).await.0, 201);
    let mfa = common::mfa::enrol_totp(srv, &owner, PW).await;
    let t = mfa.step_up(srv, &mut owner, "create_api_key").await;
    let (s, k) = owner
        .post(
            &srv.api("/api-keys"),
            json!({ "label": "bot", "kind": "hmac", "scopes": ["view_assets"], "step_up_token": t }),
        )
        .await;
    assert_eq!(s, 201, "{k}");
    (k["id"].as_str().unwrap().to_owned(), k["secret"].as_str().unwrap().to_owned())
}

fn now_ms() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as i64
}

fn signed_query(secret: &str, ts: i64) -> String {
    use hmac::{Hmac, KeyInit, Mac};
    let q = format!("timestamp={ts}&recvWindow=10000");
    let mut mac = <Hmac<sha2::Sha256>>::new_from_slice(secret.as_bytes()).unwrap();
    mac.update(q.as_bytes());
    format!("/api/v3/account?{q}&signature={}", hex::encode(mac.finalize().into_bytes()))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn one_signature_fanned_out_to_two_instances_is_accepted_once() {
    let dir = scratch("inst-gw");
    let sink = SmtpSink::start(&dir);
    let secret = [7u8; 32];
    let upstream = Upstream::start(&secret).await;
    let (a, b) = pair(&sink, &upstream, &secret, 1000, &fresh_prefix("fan"), None).await;
    let (id, key_secret) = view_key(&a, &sink, "fan@example.com").await;
    let http = reqwest::Client::new();
    // Every request below has its own timestamp, so only the fanned-out copies share a
    // signature (two reads of the clock a few milliseconds apart could otherwise collide).
    let base = now_ms();
    // Both instances know the key before the race (the key cache is per instance).
    for (i, srv) in [&a, &b].into_iter().enumerate() {
        let r =
            http.get(srv.url(&signed_query(&key_secret, base - 1 - i as i64))).header("x-mbx-apikey", &id).send().await;
        assert_eq!(r.unwrap().status(), 200);
    }
    for round in 0..20 {
        let path = signed_query(&key_secret, base - 100 - round);
        let barrier = Arc::new(tokio::sync::Barrier::new(16));
        let mut tasks = Vec::new();
        for i in 0..16 {
            let url = if i % 2 == 0 { a.url(&path) } else { b.url(&path) };
            let (http, id, barrier) = (http.clone(), id.clone(), barrier.clone());
            tasks.push(tokio::spawn(async move {
                barrier.wait().await;
                http.get(url).header("x-mbx-apikey", id).send().await.unwrap().status().as_u16()
            }));
        }
        let mut statuses = Vec::new();
        for t in tasks {
            statuses.push(t.await.unwrap());
        }
        let ok = statuses.iter().filter(|s| **s == 200).count();
        assert_eq!(ok, 1, "round {round}: exactly one acceptance, got {statuses:?}");
        assert!(statuses.iter().all(|s| *s == 200 || (400..500).contains(s)), "round {round}: {statuses:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_per_ip_budget_is_shared_by_the_instances() {
    let dir = scratch("inst-rate");
    let sink = SmtpSink::start(&dir);
    let secret = [8u8; 32];
    let upstream = Upstream::start(&secret).await;
    let (a, b) = pair(&sink, &upstream, &secret, 5, &fresh_prefix("rate"), None).await;
    let http = reqwest::Client::new();
    let started = std::time::Instant::now();
    let mut admitted = 0;
    for i in 0..40 {
        let srv = if i % 2 == 0 { &a } else { &b };
        let s = http.get(srv.url("/api/v3/account?timestamp=1")).send().await.unwrap().status().as_u16();
        if s != 429 {
            admitted += 1;
        }
    }
    let secs = started.elapsed().as_secs_f64();
    // One budget of 5/s with a burst of 5: at most 5 + 5 × elapsed (+1 for the boundary).
    // Two separate budgets would admit twice that.
    let bound = 5.0 + 5.0 * secs + 1.0;
    assert!((admitted as f64) <= bound, "{admitted} admitted in {secs:.2} s, bound {bound:.1}");
    assert!(admitted >= 5, "the burst itself is admitted: {admitted}");
    assert!(secs < 2.0, "the burst took {secs:.2} s; the bound would no longer tell one budget from two");
}

/// A key's budget for a route group lives in Redis too — written by the same script that
/// records the signature (one round trip) — so two instances together admit what one would.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_keys_budget_is_shared_by_the_instances() {
    let dir = scratch("inst-keyrate");
    let sink = SmtpSink::start(&dir);
    let secret = [9u8; 32];
    let upstream = Upstream::start(&secret).await;
    // `GET /api/v3/account` weighs 20 in the `default` group: 60 per minute with a burst of 60
    // admits three calls at once, then one every 20 s.
    let limits = r#"[{ name = "default", count = 60, period_ms = 60000 }, { name = "order", count = 100, period_ms = 10000 }, { name = "sapi", count = 12000, period_ms = 60000 }]"#;
    let (a, b) = pair(&sink, &upstream, &secret, 1000, &fresh_prefix("keyrate"), Some(limits)).await;
    let (id, key_secret) = view_key(&a, &sink, "keyrate@example.com").await;
    let http = reqwest::Client::new();
    let base = now_ms();
    let mut statuses = Vec::new();
    for i in 0..6 {
        let srv = if i % 2 == 0 { &a } else { &b };
        let path = signed_query(&key_secret, base - i);
        let r = http.get(srv.url(&path)).header("x-mbx-apikey", &id).send().await.unwrap();
        statuses.push(r.status().as_u16());
        if i == 3 {
            // The refusal is Binance's, with the weight header its clients read.
            assert!(r.headers()["retry-after"].to_str().unwrap().parse::<u64>().unwrap() > 0);
            let body: serde_json::Value = r.json().await.unwrap();
            assert_eq!(body["code"], -1003, "{body}");
        }
        // A refused request's signature is spent all the same: sent again, it is a replay.
        if i == 4 {
            let again = http.get(b.url(&path)).header("x-mbx-apikey", &id).send().await.unwrap();
            let body: serde_json::Value = again.json().await.unwrap();
            assert_eq!(body["code"], -1021, "replayed after a 429: {body}");
            assert!(body["msg"].as_str().unwrap().contains("already used"), "{body}");
        }
    }
    // Two budgets (one per instance) would have admitted all six.
    assert_eq!(statuses, [200, 200, 200, 429, 429, 429]);
}
