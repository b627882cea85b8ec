//! Fault scenarios: a database or Redis that stops answering (F1, F3). Security decisions fail
//! closed with 503 and `Retry-After`, nothing is issued, readiness goes false, and the service
//! recovers by itself once the dependency is back.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::time::{Duration, Instant};

use common::relay::Relay;
use common::upstream::Upstream;
use common::{Backend, Device, Server, SmtpSink, register_verified, scratch};
use serde_json::json;

const PW: &str = "violet tram harbour 77";

async fn until(what: &str, deadline: Duration, mut f: impl AsyncFnMut() -> bool) {
    let end = Instant::now() + deadline;
    while !f().await {
        assert!(Instant::now() < end, "{what} did not happen within {deadline:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_unreachable_means_503_nothing_issued_and_recovery() {
    let dir = scratch("pgdown");
    let sink = SmtpSink::start(&dir);
    let relay = Relay::start("127.0.0.1:5432").await;
    // A fresh schema reached through the relay.
    let direct = common::fresh_pg_url().await;
    let through = direct.replacen("127.0.0.1:5432", &format!("127.0.0.1:{}", relay.port), 1);
    let srv = Server::start(
        Backend::Sqlite,
        &sink,
        &[
            ("GATEHOUSE_STORAGE__DATABASE_URL", &through),
            ("GATEHOUSE_SECRETS__MASTER_KEYS", common::TEST_MASTER_KEY),
            ("GATEHOUSE_STORAGE__DB_ACQUIRE_TIMEOUT_MS", "500"),
        ],
    )
    .await;
    register_verified(&srv, &sink, "pg@example.com", PW).await;
    let mut d = Device::new("python-requests/2.34.2");
    assert_eq!(d.login(&srv, "pg@example.com", PW).await.0, 201);
    let c = reqwest::Client::new();
    assert_eq!(c.get(srv.url("/readyz")).send().await.unwrap().status(), 200);

    relay.cut();
    until("readiness false", Duration::from_secs(10), async || {
        c.get(srv.url("/readyz")).send().await.unwrap().status() == 503
    })
    .await;
    // Liveness is unaffected; every decision that needs the database fails closed.
    assert_eq!(c.get(srv.url("/healthz")).send().await.unwrap().status(), 200);
    let r =
        c.post(srv.api("/sessions")).json(&json!({ "email": "pg@example.com", "password": PW })).send().await.unwrap();
    assert_eq!(r.status(), 503);
    assert!(r.headers().contains_key("retry-after"));
    let body: serde_json::Value = r.json().await.unwrap();
    assert_eq!(body["error"]["code"], "unavailable");
    assert!(body.get("access_token").is_none());
    let (s, _) = d.get(&srv.api("/account")).await;
    assert_eq!(s, 503, "a token cannot be checked, so it is not accepted");
    let (s, _) = d.refresh(&srv).await;
    assert_eq!(s, 503);
    let (s, _) =
        Device::new("x").post(&srv.api("/accounts"), json!({ "email": "new@example.com", "password": PW })).await;
    assert_eq!(s, 503);

    relay.restore();
    until("recovery", Duration::from_secs(30), async || {
        c.get(srv.url("/readyz")).send().await.unwrap().status() == 200
    })
    .await;
    let mut again = Device::new("python-requests/2.34.2");
    assert_eq!(again.login(&srv, "pg@example.com", PW).await.0, 201);
    assert_eq!(d.get(&srv.api("/account")).await.0, 200, "the old session survived the outage");
    // The audit chain is intact.
    let out = srv.cli(&["audit", "verify"], &srv.data_dir());
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_unreachable_fails_signed_requests_closed() {
    use base64::Engine as _;
    let dir = scratch("redisdown");
    let sink = SmtpSink::start(&dir);
    let relay = Relay::start("127.0.0.1:6379").await;
    let secret = [9u8; 32];
    let upstream = Upstream::start(&secret).await;
    let cfg = format!(
        "[gateway]\nidentity_secret = \"{}\"\n[[gateway.routes]]\nprefix = \"/api\"\ndialect = \"binance\"\nupstream = \"{}\"\ntable = \"binance\"\n",
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(secret),
        upstream.base
    );
    let redis = format!("redis://127.0.0.1:{}", relay.port);
    let srv =
        Server::start_with_config(Backend::Sqlite, &sink, &cfg, &[("GATEHOUSE_STORAGE__REDIS_URL", &redis)]).await;
    register_verified(&srv, &sink, "r@example.com", PW).await;
    let mut owner = Device::new("python-requests/2.34.2");
    assert_eq!(owner.login(&srv, "r@example.com", PW).await.0, 201);
    let mfa = common::mfa::enrol_totp(&srv, &owner, PW).await;
    let t = mfa.step_up(&srv, &mut owner, "create_api_key").await;
    let (s, k) = owner
        .post(
            &srv.api("/api-keys"),
            json!({ "label": "bot", "kind": "hmac", "scopes": ["view_assets"], "step_up_token": t }),
        )
        .await;
    assert_eq!(s, 201);
    let (id, key_secret) = (k["id"].as_str().unwrap().to_owned(), k["secret"].as_str().unwrap().to_owned());
    let sign = |ts: i64| {
        use hmac::{Hmac, KeyInit, Mac};
        let q = format!("timestamp={ts}&recvWindow=10000");
        let mut mac = <Hmac<sha2::Sha256>>::new_from_slice(key_secret.as_bytes()).unwrap();
        mac.update(q.as_bytes());
        format!("{}/api/v3/account?{q}&signature={}", srv.base, hex::encode(mac.finalize().into_bytes()))
    };
    let now = || std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as i64;
    let c = reqwest::Client::new();
    assert_eq!(c.get(sign(now())).header("x-mbx-apikey", &id).send().await.unwrap().status(), 200);
    relay.cut();
    let mut n = 0;
    until("signed requests refused", Duration::from_secs(10), async || {
        n += 1;
        c.get(sign(now() - n)).header("x-mbx-apikey", &id).send().await.unwrap().status() == 503
    })
    .await;
    assert_eq!(c.get(srv.url("/readyz")).send().await.unwrap().status(), 503);
    // Never "unlimited", never "unchecked": no signed request reaches the upstream meanwhile.
    let before = upstream.seen().len();
    for i in 0..5 {
        let r = c.get(sign(now() - 100 - i)).header("x-mbx-apikey", &id).send().await.unwrap();
        assert_eq!(r.status(), 503);
        assert!(r.headers().contains_key("retry-after"));
    }
    assert_eq!(upstream.seen().len(), before);
    relay.restore();
    until("recovery", Duration::from_secs(30), async || {
        n += 1;
        c.get(sign(now() - 200 - n)).header("x-mbx-apikey", &id).send().await.unwrap().status() == 200
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_skewed_instance_reports_unready_and_still_refuses_replays() {
    use base64::Engine as _;
    let dir = scratch("skew");
    let sink = SmtpSink::start(&dir);
    let secret = [5u8; 32];
    let upstream = Upstream::start(&secret).await;
    let cfg = format!(
        "[gateway]\nidentity_secret = \"{}\"\n[[gateway.routes]]\nprefix = \"/api\"\ndialect = \"binance\"\nupstream = \"{}\"\ntable = \"binance\"\n",
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(secret),
        upstream.base
    );
    let redis = [("GATEHOUSE_STORAGE__REDIS_URL", "redis://127.0.0.1:6379")];
    let a = Server::start_with_config(Backend::Postgres, &sink, &cfg, &redis).await;
    let url = a.database_url.clone().unwrap();
    let b = Server::start_with_config(
        Backend::Sqlite,
        &sink,
        &cfg,
        &[
            redis[0],
            ("GATEHOUSE_STORAGE__DATABASE_URL", &url),
            ("GATEHOUSE_SECRETS__MASTER_KEYS", common::TEST_MASTER_KEY),
        ],
    )
    .await;
    let c = reqwest::Client::new();
    let ready = |s: &Server| c.get(s.url("/readyz")).send();
    assert_eq!(ready(&a).await.unwrap().status(), 200);
    assert_eq!(ready(&b).await.unwrap().status(), 200);
    // B's clock falls two seconds behind.
    b.advance(-2000).await;
    let r = ready(&b).await.unwrap();
    assert_eq!(r.status(), 503);
    let body: serde_json::Value = r.json().await.unwrap();
    assert_eq!(body["clock"], "skewed");
    assert!(body["clock_skew_ms"].as_i64().unwrap() <= -1000, "{body}");
    assert_eq!(ready(&a).await.unwrap().status(), 200);
    // A request accepted by A is still a replay at B: retention covers the skew (F5).
    register_verified(&a, &sink, "skew@example.com", PW).await;
    let mut owner = Device::new("python-requests/2.34.2");
    assert_eq!(owner.login(&a, "skew@example.com", PW).await.0, 201);
    let mfa = common::mfa::enrol_totp(&a, &owner, PW).await;
    let t = mfa.step_up(&a, &mut owner, "create_api_key").await;
    let (_, k) = owner
        .post(
            &a.api("/api-keys"),
            json!({ "label": "bot", "kind": "hmac", "scopes": ["view_assets"], "step_up_token": t }),
        )
        .await;
    let (id, key_secret) = (k["id"].as_str().unwrap(), k["secret"].as_str().unwrap());
    let ts = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as i64 - 2500;
    let q = format!("timestamp={ts}&recvWindow=10000");
    let sig = {
        use hmac::{Hmac, KeyInit, Mac};
        let mut mac = <Hmac<sha2::Sha256>>::new_from_slice(key_secret.as_bytes()).unwrap();
        mac.update(q.as_bytes());
        hex::encode(mac.finalize().into_bytes())
    };
    let path = format!("/api/v3/account?{q}&signature={sig}");
    assert_eq!(c.get(a.url(&path)).header("x-mbx-apikey", id).send().await.unwrap().status(), 200);
    let r = c.get(b.url(&path)).header("x-mbx-apikey", id).send().await.unwrap();
    assert_eq!(r.status(), 400);
    let body: serde_json::Value = r.json().await.unwrap();
    assert_eq!(body["code"], -1021, "{body}");
    assert!(
        body["msg"].as_str().unwrap().contains("already used"),
        "refused as a replay, not for its timestamp: {body}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_during_flows_leaves_no_change_without_its_audit_event() {
    let dir = scratch("kill9");
    let sink = SmtpSink::start(&dir);
    let mut srv = Server::start(Backend::Sqlite, &sink, &[]).await;
    register_verified(&srv, &sink, "kill@example.com", PW).await;
    for round in 0..5u64 {
        let base = srv.base.clone();
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let mut workers = Vec::new();
        for w in 0..3u64 {
            let base = base.clone();
            let stop = stop.clone();
            workers.push(tokio::spawn(async move {
                let c = reqwest::Client::new();
                let mut i = 0u64;
                while !stop.load(std::sync::atomic::Ordering::SeqCst) {
                    i += 1;
                    let email = format!("r{round}w{w}i{i}@example.com");
                    // Registrations, logins, failures and refreshes, all racing the kill.
                    let _ = c.post(format!("{base}/_gh/api/v1/accounts")).json(&json!({ "email": email, "password": PW })).send().await;
                    let login = c
                        .post(format!("{base}/_gh/api/v1/sessions"))
                        .header("user-agent", "killer/1.0")
                        .json(&json!({ "email": "kill@example.com", "password": if i.is_multiple_of(3) { "wrong password!!" } else { PW } }))
                        .send()
                        .await;
                    if let Ok(r) = login
                        && let Ok(v) = r.json::<serde_json::Value>().await
                        && let (Some(rt), Some(dev)) = (v["refresh_token"].as_str(), v["device_id"].as_str())
                    {
                        let _ = c
                            .post(format!("{base}/_gh/api/v1/sessions/refresh"))
                            .header("user-agent", "killer/1.0")
                            .header("gatehouse-device", dev)
                            .json(&json!({ "refresh_token": rt }))
                            .send()
                            .await;
                    }
                }
            }));
        }
        // Kill at a different moment each round (deterministic, no sleep-as-synchronisation:
        // we wait for the server to have done some work, observed through its metrics).
        let target = 5.0 + 7.0 * round as f64;
        let end = Instant::now() + Duration::from_secs(30);
        while srv.metric("gatehouse_password_hashes_total").await < target {
            assert!(Instant::now() < end, "no progress");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        srv.restart();
        stop.store(true, std::sync::atomic::Ordering::SeqCst);
        for w in workers {
            let _ = w.await;
        }
        // After the crash: the chain verifies…
        let out = srv.cli(&["audit", "verify"], &srv.data_dir());
        assert!(out.status.success(), "round {round}: {}", String::from_utf8_lossy(&out.stderr));
        // …and every account and every session has its audit event.
        sqlx::any::install_default_drivers();
        let pool = sqlx::AnyPool::connect(&format!("sqlite://{}", srv.data_dir().join("gatehouse.db").display()))
            .await
            .unwrap();
        let orphans: i64 = sqlx::Row::get(
            &sqlx::query(
                "SELECT COUNT(*) AS n FROM accounts a WHERE NOT EXISTS \
                 (SELECT 1 FROM audit_events e WHERE e.subject = a.id AND e.kind = 'account_registered')",
            )
            .fetch_one(&pool)
            .await
            .unwrap(),
            "n",
        );
        assert_eq!(orphans, 0, "round {round}: accounts without their registration event");
        let sessions_without_event: i64 = sqlx::Row::get(
            &sqlx::query(
                "SELECT COUNT(*) AS n FROM sessions s WHERE NOT EXISTS \
                 (SELECT 1 FROM audit_events e WHERE e.kind = 'login_succeeded' AND e.details LIKE '%' || s.id || '%')",
            )
            .fetch_one(&pool)
            .await
            .unwrap(),
            "n",
        );
        assert_eq!(sessions_without_event, 0, "round {round}: sessions without their login event");
        pool.close().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_mailer_outage_delays_mail_but_never_loses_it() {
    let dir = scratch("maildown");
    // The SMTP server refuses the first three deliveries (451), as during an outage.
    let sink = SmtpSink::start_failing(&dir, 3);
    let srv = Server::start(Backend::Sqlite, &sink, &[]).await;
    let (s, _) =
        Device::new("x").post(&srv.api("/accounts"), json!({ "email": "late@example.com", "password": PW })).await;
    assert_eq!(s, 202, "the operation completes although mail cannot go out yet");
    // Retried every 5 s of server time: move the clock instead of waiting.
    let end = Instant::now() + Duration::from_secs(30);
    while sink.count_for("late@example.com", "Verify") == 0 {
        assert!(Instant::now() < end, "mail never delivered");
        srv.advance(5_000).await;
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(sink.count_for("late@example.com", "Verify"), 1, "delivered exactly once");
}
