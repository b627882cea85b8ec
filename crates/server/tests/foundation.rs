//! End-to-end tests of the foundation (issue 2) against the spawned binary, on SQLite and on
//! PostgreSQL, with mail read from a real SMTP server.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::{Backend, Device, Server, SmtpSink, register_verified, scratch};
use serde_json::{Value, json};

const PW: &str = "violet tram harbour 77";
const PW2: &str = "amber kite lantern 31";

macro_rules! on_both_backends {
    ($name:ident, |$backend:ident| $body:block) => {
        mod $name {
            use super::*;
            async fn run($backend: Backend) $body
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn sqlite() { run(Backend::Sqlite).await }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn postgres() { run(Backend::Postgres).await }
        }
    };
}

on_both_backends!(register_verify_login_refresh_devices_revoke_change_password, |backend| {
    let dir = scratch("flow");
    let sink = SmtpSink::start(&dir);
    let srv = Server::start(backend, &sink, &[]).await;
    let email = "alice@example.com";
    register_verified(&srv, &sink, email, PW).await;

    // Device A signs in and rotates its refresh token.
    let mut a = Device::new("Mozilla/5.0 (X11; Linux x86_64) Firefox/120.0");
    let (s, body) = a.login(&srv, email, PW).await;
    assert_eq!(s, 201, "{body}");
    assert_eq!(body["notices"], json!(["no_second_factor"]));
    assert!(body["expires_in"].as_i64().unwrap() <= 600);
    let first_refresh = a.refresh.clone().unwrap();
    let (s, body) = a.refresh(&srv).await;
    assert_eq!(s, 200, "{body}");
    assert_ne!(a.refresh.as_deref(), Some(first_refresh.as_str()));
    let (s, me) = a.get(&srv.api("/account")).await;
    assert_eq!((s, me["email"].as_str()), (200, Some(email)));

    // Device B signs in; the device list shows both, A marked current.
    let mut b = Device::new("python-requests/2.34.2");
    assert_eq!(b.login(&srv, email, PW).await.0, 201);
    let (s, list) = a.get(&srv.api("/sessions")).await;
    assert_eq!(s, 200);
    let sessions = list["sessions"].as_array().unwrap();
    assert_eq!(sessions.len(), 2, "{list}");
    let current: Vec<_> = sessions.iter().filter(|s| s["current"] == json!(true)).collect();
    assert_eq!(current.len(), 1);
    assert_eq!(current[0]["device_name"], "Firefox on Linux");
    let b_id = sessions.iter().find(|s| s["current"] == json!(false)).unwrap()["id"].as_str().unwrap().to_owned();

    // Revoking needs a fresh second factor (step-up); an account without one is told to enrol
    // one first (the nudge), and the password alone is not enough.
    let (s, body) = a.post(&srv.api(&format!("/sessions/{b_id}/revoke")), json!({ "password": PW })).await;
    assert_eq!((s, body["error"]["code"].as_str()), (403, Some("second_factor_required")));
    let mfa = common::mfa::enrol_totp(&srv, &a, PW).await;
    let (s, body) = a.post(&srv.api(&format!("/sessions/{b_id}/revoke")), json!({ "password": PW })).await;
    assert_eq!((s, body["error"]["code"].as_str()), (403, Some("step_up_required")));
    let t = mfa.step_up(&srv, &mut a, "revoke_sessions").await;
    let (s, _) = a.post(&srv.api(&format!("/sessions/{b_id}/revoke")), json!({ "step_up_token": t })).await;
    assert_eq!(s, 204);
    assert_eq!(b.get(&srv.api("/account")).await.0, 401, "revoked device is out at once");
    assert_eq!(b.refresh(&srv).await.0, 400, "its refresh token is dead too");

    // B signs in again; A changes the password: B's access and refresh tokens are refused.
    let mut b = Device::new("python-requests/2.34.2");
    assert_eq!(mfa.login(&srv, &mut b, email, PW).await.0, 201);
    let (s, body) = a.post(&srv.api("/account/password"), json!({ "new_password": PW2 })).await;
    assert_eq!((s, body["error"]["code"].as_str()), (403, Some("reauth_required")), "current password needed (R10)");
    let (s, body) =
        a.post(&srv.api("/account/password"), json!({ "current_password": PW, "new_password": "password1234" })).await;
    assert_eq!((s, body["error"]["details"]["reason"].as_str()), (400, Some("breached")));
    let (s, body) = a.post(&srv.api("/account/password"), json!({ "current_password": PW, "new_password": PW2 })).await;
    assert_eq!((s, body["error"]["code"].as_str()), (403, Some("step_up_required")), "and a step-up");
    let t = mfa.step_up(&srv, &mut a, "change_password").await;
    let (s, body) = a
        .post(&srv.api("/account/password"), json!({ "current_password": PW, "new_password": PW2, "step_up_token": t }))
        .await;
    assert_eq!(s, 200, "{body}");
    assert_eq!(body["revoked_sessions"], 1);
    assert_eq!(b.get(&srv.api("/account")).await.0, 401);
    let (s, body) = b.refresh(&srv).await;
    assert_eq!((s, body["error"]["code"].as_str()), (400, Some("invalid_grant")));
    // A keeps working; the old password no longer does; the new one does.
    assert_eq!(a.get(&srv.api("/account")).await.0, 200);
    assert_eq!(Device::new("x").login(&srv, email, PW).await.0, 401);
    assert_eq!(mfa.login(&srv, &mut Device::new("x"), email, PW2).await.0, 201);
    sink.wait_for(email, "Your password was changed");

    // The security history tells the story.
    let (s, hist) = a.get(&srv.api("/account/security-history?limit=200")).await;
    assert_eq!(s, 200);
    let kinds: Vec<&str> = hist["events"].as_array().unwrap().iter().map(|e| e["kind"].as_str().unwrap()).collect();
    for k in [
        "account_registered",
        "email_verified",
        "login_succeeded",
        "token_refreshed",
        "session_revoked",
        "password_changed",
        "login_failed",
    ] {
        assert!(kinds.contains(&k), "missing {k} in {kinds:?}");
    }

    // Logout is immediate.
    assert_eq!(a.delete(&srv.api("/sessions/current")).await, 204);
    assert_eq!(a.get(&srv.api("/account")).await.0, 401);

    // And the chain verifies.
    let out = srv.cli(&["audit", "verify"], &srv.data_dir());
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stdout).contains("audit chain OK"));
});

on_both_backends!(refresh_reuse_revokes_the_family_and_is_audited, |backend| {
    let dir = scratch("reuse");
    let sink = SmtpSink::start(&dir);
    let srv = Server::start(backend, &sink, &[]).await;
    let email = "bob@example.com";
    register_verified(&srv, &sink, email, PW).await;
    let mut d = Device::new("python-requests/2.34.2");
    assert_eq!(d.login(&srv, email, PW).await.0, 201);
    let r1 = d.refresh.clone().unwrap();
    assert_eq!(d.refresh(&srv).await.0, 200);
    let r2 = d.refresh.clone().unwrap();
    // R1 again: reuse.
    d.refresh = Some(r1);
    let (s, body) = d.refresh(&srv).await;
    assert_eq!((s, body["error"]["code"].as_str()), (400, Some("invalid_grant")));
    // R2 is dead too, and so is the access token.
    d.refresh = Some(r2);
    assert_eq!(d.refresh(&srv).await.0, 400);
    assert_eq!(d.get(&srv.api("/account")).await.0, 401);
    // Audited and notified.
    let mut other = Device::new("python-requests/2.34.2");
    assert_eq!(other.login(&srv, email, PW).await.0, 201);
    let (_, hist) = other.get(&srv.api("/account/security-history")).await;
    assert!(hist["events"].as_array().unwrap().iter().any(|e| e["kind"] == "refresh_reuse"), "{hist}");
    sink.wait_for(email, "Security alert");
});

on_both_backends!(fifty_parallel_refreshes_leave_at_most_one_live_successor, |backend| {
    let dir = scratch("race");
    let sink = SmtpSink::start(&dir);
    let srv = Server::start(backend, &sink, &[]).await;
    let email = "carol@example.com";
    register_verified(&srv, &sink, email, PW).await;
    let mut d = Device::new("python-requests/2.34.2");
    assert_eq!(d.login(&srv, email, PW).await.0, 201);
    let mut tasks = Vec::new();
    for _ in 0..50 {
        let mut dd = d.clone();
        let base = srv.base.clone();
        tasks.push(tokio::spawn(async move {
            let body = json!({ "refresh_token": dd.refresh.clone().unwrap() });
            let r = dd
                .http
                .post(format!("{base}/_gh/api/v1/sessions/refresh"))
                .header("user-agent", &dd.ua)
                .header("gatehouse-device", dd.device_id.clone().unwrap())
                .json(&body)
                .send()
                .await
                .unwrap();
            let s = r.status().as_u16();
            let v: Value = r.json().await.unwrap();
            dd.refresh = v["refresh_token"].as_str().map(String::from);
            (s, dd.refresh)
        }));
    }
    let mut successors = std::collections::HashSet::new();
    for t in tasks {
        let (s, r) = t.await.unwrap();
        if s == 200 {
            successors.insert(r.unwrap());
        }
    }
    assert!(successors.len() <= 1, "{successors:?}");
    // With the default grace of 0 the losers trigger reuse detection: the family is revoked,
    // so even the single successor is dead.
    for r in successors {
        d.refresh = Some(r);
        assert_eq!(d.refresh(&srv).await.0, 400);
    }
});

/// Status, headers (without the per-request ones) and body (without request_id).
async fn login_answer(srv: &Server, email: &str, password: &str) -> (u16, Vec<(String, String)>, Value) {
    let r = reqwest::Client::new()
        .post(srv.api("/sessions"))
        .header("user-agent", "enum-probe/1.0")
        .json(&json!({ "email": email, "password": password }))
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    let mut headers: Vec<(String, String)> = r
        .headers()
        .iter()
        .filter(|(k, _)| !matches!(k.as_str(), "x-request-id" | "date"))
        .map(|(k, v)| (k.to_string(), v.to_str().unwrap().to_owned()))
        .collect();
    headers.sort();
    let mut body: Value = r.json().await.unwrap();
    body["error"]["request_id"] = Value::Null;
    (status, headers, body)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_locked_disabled_and_wrong_password_answer_identically() {
    let dir = scratch("enum");
    let sink = SmtpSink::start(&dir);
    // A low lock threshold in the test configuration (Keycloak's habit); delays start later.
    let srv = Server::start(
        Backend::Sqlite,
        &sink,
        &[("GATEHOUSE_THROTTLE__LOCK_AFTER", "3"), ("GATEHOUSE_THROTTLE__FREE_FAILURES", "10")],
    )
    .await;
    register_verified(&srv, &sink, "known@example.com", PW).await;
    register_verified(&srv, &sink, "locked@example.com", PW).await;
    register_verified(&srv, &sink, "disabled@example.com", PW).await;
    for _ in 0..3 {
        assert_eq!(login_answer(&srv, "locked@example.com", "wrong password!!").await.0, 401);
    }
    // Disable one account directly in the database (there is no admin API for it yet).
    {
        sqlx::any::install_default_drivers();
        let url = format!("sqlite://{}", srv.data_dir().join("gatehouse.db").display());
        let pool = sqlx::AnyPool::connect(&url).await.unwrap();
        sqlx::query("UPDATE accounts SET status = 'disabled' WHERE email = 'disabled@example.com'")
            .execute(&pool)
            .await
            .unwrap();
        pool.close().await;
    }
    let hashes_before = srv.metric("gatehouse_password_hashes_total").await;
    let wrong = login_answer(&srv, "known@example.com", "wrong password!!").await;
    let unknown = login_answer(&srv, "nobody@example.com", "wrong password!!").await;
    // Locked and disabled answer the same even with the right password.
    let locked = login_answer(&srv, "locked@example.com", PW).await;
    let disabled = login_answer(&srv, "disabled@example.com", PW).await;
    assert_eq!(wrong.0, 401);
    assert_eq!(wrong, unknown);
    assert_eq!(wrong, locked);
    assert_eq!(wrong, disabled);
    // Every one of them spent exactly one Argon2 operation (timing parity by construction).
    let hashes_after = srv.metric("gatehouse_password_hashes_total").await;
    assert_eq!(hashes_after - hashes_before, 4.0);
    // The lock was audited (internal events may say which case it was).
    let out = srv.cli(&["audit", "verify"], &srv.data_dir());
    assert!(out.status.success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_login_body_is_413_before_any_hashing() {
    let dir = scratch("413");
    let sink = SmtpSink::start(&dir);
    let srv = Server::start(Backend::Sqlite, &sink, &[]).await;
    let before = srv.metric("gatehouse_password_hashes_total").await;
    let big = "a".repeat(1024 * 1024);
    let r = reqwest::Client::new()
        .post(srv.api("/sessions"))
        .header("content-type", "application/json")
        .body(format!("{{\"email\":\"x@example.com\",\"password\":\"{big}\"}}"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 413);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["error"]["code"], "payload_too_large");
    // A password over 4096 bytes inside an allowed body: also refused without hashing.
    let long = "b".repeat(5000);
    let (s, body) =
        Device::new("x").post(&srv.api("/sessions"), json!({ "email": "x@example.com", "password": long })).await;
    assert_eq!((s, body["error"]["code"].as_str()), (413, Some("payload_too_large")));
    assert_eq!(srv.metric("gatehouse_password_hashes_total").await, before);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn throttling_delays_then_locks_and_unlocks_with_time() {
    let dir = scratch("throttle");
    let sink = SmtpSink::start(&dir);
    let srv = Server::start(Backend::Sqlite, &sink, &[]).await;
    let email = "dave@example.com";
    register_verified(&srv, &sink, email, PW).await;
    for i in 0..6 {
        let (s, _, _) = login_answer(&srv, email, "wrong password!!").await;
        assert_eq!(s, 401, "failure {i}");
    }
    // Sixth failure recorded: the next attempt must wait 30 s (R13).
    let r = reqwest::Client::new()
        .post(srv.api("/sessions"))
        .header("user-agent", "enum-probe/1.0")
        .json(&json!({ "email": email, "password": PW }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 429);
    assert_eq!(r.headers()["retry-after"], "30");
    // An unknown address behaves the same way: no enumeration through throttling.
    for _ in 0..6 {
        login_answer(&srv, "ghost@example.com", "wrong password!!").await;
    }
    assert_eq!(login_answer(&srv, "ghost@example.com", "wrong password!!").await.0, 429);
    srv.advance(30_000).await;
    // After the wait, the right password works and resets the counter (R14).
    assert_eq!(Device::new("enum-probe/1.0").login(&srv, email, PW).await.0, 201);
    assert_eq!(login_answer(&srv, email, "wrong password!!").await.0, 401);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn registration_does_not_reveal_existing_accounts() {
    let dir = scratch("reg");
    let sink = SmtpSink::start(&dir);
    let srv = Server::start(Backend::Sqlite, &sink, &[]).await;
    register_verified(&srv, &sink, "erin@example.com", PW).await;
    let d = Device::new("x");
    let before = srv.metric("gatehouse_password_hashes_total").await;
    let (s1, b1) = d.post(&srv.api("/accounts"), json!({ "email": "erin@example.com", "password": PW2 })).await;
    let (s2, b2) = d.post(&srv.api("/accounts"), json!({ "email": "fresh@example.com", "password": PW2 })).await;
    assert_eq!((s1, &b1), (s2, &b2));
    assert_eq!(srv.metric("gatehouse_password_hashes_total").await - before, 2.0, "same work either way");
    sink.wait_for("erin@example.com", "Sign-up attempt");
    sink.wait_for("fresh@example.com", "Verify your email");
    // Policy answers carry the reason.
    let (s, b) = d.post(&srv.api("/accounts"), json!({ "email": "x@example.com", "password": "short" })).await;
    assert_eq!((s, b["error"]["details"]["reason"].as_str()), (400, Some("too_short")));
    let (s, b) =
        d.post(&srv.api("/accounts"), json!({ "email": "x@example.com", "password": "gatehouse2025!!" })).await;
    assert_eq!((s, b["error"]["details"]["reason"].as_str()), (400, Some("context")));
    // Unverified accounts cannot sign in (after the right password only).
    let (s, b) = Device::new("x").login(&srv, "fresh@example.com", PW2).await;
    assert_eq!((s, b["error"]["code"].as_str()), (403, Some("email_unverified")));
    // Verification tokens are single use.
    let token = common::token_from_mail(&sink.wait_for("fresh@example.com", "Verify your email"));
    assert_eq!(d.post(&srv.api("/accounts/verify-email"), json!({ "token": token })).await.0, 200);
    let (s, b) = d.post(&srv.api("/accounts/verify-email"), json!({ "token": token })).await;
    assert_eq!((s, b["error"]["code"].as_str()), (400, Some("invalid_token")));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_used_from_another_device_is_refused_and_audited() {
    let dir = scratch("device");
    let sink = SmtpSink::start(&dir);
    let srv = Server::start(Backend::Sqlite, &sink, &[]).await;
    let email = "fay@example.com";
    register_verified(&srv, &sink, email, PW).await;
    let mut d = Device::new("python-requests/2.34.2");
    assert_eq!(d.login(&srv, email, PW).await.0, 201);
    // Same token, other user-agent family.
    let mut thief = d.clone();
    thief.ua = "curl/8.5.0".into();
    let (s, b) = thief.get(&srv.api("/account")).await;
    assert_eq!((s, b["error"]["code"].as_str()), (401, Some("device_mismatch")));
    // Same token, no device id.
    thief.ua = d.ua.clone();
    thief.device_id = None;
    assert_eq!(thief.get(&srv.api("/account")).await.0, 401);
    let (_, hist) = d.get(&srv.api("/account/security-history")).await;
    assert!(hist["events"].as_array().unwrap().iter().any(|e| e["kind"] == "session_device_mismatch"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_and_absolute_limits_end_sessions() {
    let dir = scratch("idle");
    let sink = SmtpSink::start(&dir);
    let srv = Server::start(Backend::Sqlite, &sink, &[]).await;
    let email = "gus@example.com";
    register_verified(&srv, &sink, email, PW).await;
    let mut d = Device::new("python-requests/2.34.2");
    assert_eq!(d.login(&srv, email, PW).await.0, 201);
    // Active every 9 minutes: refresh keeps it alive until the absolute limit.
    for _ in 0..(12 * 60 / 9 - 1) {
        srv.advance(9 * 60 * 1000).await;
        let (s, b) = d.refresh(&srv).await;
        assert_eq!(s, 200, "{b}");
    }
    srv.advance(12 * 60 * 1000).await;
    assert_eq!(d.refresh(&srv).await.0, 400, "absolute 12 h limit");
    // Idle: 30 minutes without use ends it.
    let mut e = Device::new("python-requests/2.34.2");
    assert_eq!(e.login(&srv, email, PW).await.0, 201);
    srv.advance(30 * 60 * 1000).await;
    assert_eq!(e.refresh(&srv).await.0, 400, "idle 30 min");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn browser_sessions_use_host_cookies_and_csrf_checks() {
    let dir = scratch("cookies");
    let sink = SmtpSink::start(&dir);
    let srv = Server::start(Backend::Sqlite, &sink, &[]).await;
    let email = "hal@example.com";
    register_verified(&srv, &sink, email, PW).await;
    let http = reqwest::Client::new();
    let r = http
        .post(srv.api("/sessions"))
        .header("user-agent", "Mozilla/5.0 (X11; Linux x86_64) Chrome/156.0 Safari/537.36")
        .json(&json!({ "email": email, "password": PW, "session_type": "browser" }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 201);
    let cookies: Vec<String> =
        r.headers().get_all("set-cookie").iter().map(|v| v.to_str().unwrap().to_owned()).collect();
    let body: Value = r.json().await.unwrap();
    assert!(body.get("access_token").is_none() && body.get("refresh_token").is_none(), "no token in the body (R49)");
    assert_eq!(cookies.len(), 3);
    for c in &cookies {
        assert!(c.starts_with("__Host-"), "{c}");
        for attr in ["Secure", "HttpOnly", "SameSite=Strict", "Path=/"] {
            assert!(c.contains(attr), "{c}");
        }
        assert!(!c.contains("Domain"), "{c}");
        assert!(c.split(';').next().unwrap().len() <= 4096);
    }
    let jar: String = cookies.iter().map(|c| c.split(';').next().unwrap()).collect::<Vec<_>>().join("; ");
    let ua = "Mozilla/5.0 (X11; Linux x86_64) Chrome/156.0 Safari/537.36";
    let r = http.get(srv.api("/account")).header("cookie", &jar).header("user-agent", ua).send().await.unwrap();
    assert_eq!(r.status().as_u16(), 200);
    // A cross-site POST with the cookies is refused (R50)…
    let r = http
        .post(srv.api("/sessions/revoke-others"))
        .header("cookie", &jar)
        .header("user-agent", ua)
        .header("origin", "https://evil.example")
        .json(&json!({ "password": PW }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 403);
    let b: Value = r.json().await.unwrap();
    assert_eq!(b["error"]["code"], "csrf_rejected");
    // …a same-origin one is not.
    let r = http
        .post(srv.api("/sessions/revoke-others"))
        .header("cookie", &jar)
        .header("user-agent", ua)
        .header("sec-fetch-site", "same-origin")
        .json(&json!({ "password": PW }))
        .send()
        .await
        .unwrap();
    // (it passes the CSRF check and reaches the step-up policy: no second factor yet)
    assert_eq!(r.status().as_u16(), 403);
    let b: Value = r.json().await.unwrap();
    assert_eq!(b["error"]["code"], "second_factor_required");
    // Refresh through the cookie rotates the cookies.
    let r = http
        .post(srv.api("/sessions/refresh"))
        .header("cookie", &jar)
        .header("user-agent", ua)
        .header("sec-fetch-site", "same-origin")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    assert_eq!(r.headers().get_all("set-cookie").iter().count(), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn audit_verify_detects_edited_deleted_and_swapped_rows() {
    let dir = scratch("audit");
    let sink = SmtpSink::start(&dir);
    let mut srv = Server::start(Backend::Sqlite, &sink, &[]).await;
    register_verified(&srv, &sink, "ida@example.com", PW).await;
    for _ in 0..3 {
        Device::new("x").login(&srv, "ida@example.com", "wrong password!!").await;
    }
    assert_eq!(Device::new("x").login(&srv, "ida@example.com", PW).await.0, 201);
    srv.stop();
    let ok = srv.cli(&["audit", "verify"], &srv.data_dir());
    assert!(ok.status.success(), "{}", String::from_utf8_lossy(&ok.stderr));

    async fn tampered(srv: &Server, sql: &[&str]) -> std::process::Output {
        let copy = scratch("audit-copy");
        // The server was killed: committed transactions may still be in the WAL file.
        for f in ["gatehouse.db", "gatehouse.db-wal", "gatehouse.db-shm", "master.key"] {
            if srv.data_dir().join(f).exists() {
                std::fs::copy(srv.data_dir().join(f), copy.join(f)).unwrap();
            }
        }
        sqlx::any::install_default_drivers();
        let pool = sqlx::AnyPool::connect(&format!("sqlite://{}", copy.join("gatehouse.db").display())).await.unwrap();
        for s in sql {
            sqlx::query(sqlx::AssertSqlSafe(s.to_string())).execute(&pool).await.unwrap();
        }
        pool.close().await;
        srv.cli(&["audit", "verify"], &copy)
    }
    let edited = tampered(&srv, &["UPDATE audit_events SET ip = '10.9.9.9' WHERE seq = 3"]).await;
    assert!(!edited.status.success());
    assert!(String::from_utf8_lossy(&edited.stderr).contains("event 3"), "{}", String::from_utf8_lossy(&edited.stderr));
    let deleted = tampered(&srv, &["DELETE FROM audit_events WHERE seq = 4"]).await;
    assert!(!deleted.status.success());
    assert!(
        String::from_utf8_lossy(&deleted.stderr).contains("event 5"),
        "{}",
        String::from_utf8_lossy(&deleted.stderr)
    );
    let swapped = tampered(
        &srv,
        &[
            "UPDATE audit_events SET seq = -1 WHERE seq = 2",
            "UPDATE audit_events SET seq = 2 WHERE seq = 3",
            "UPDATE audit_events SET seq = 3 WHERE seq = -1",
        ],
    )
    .await;
    assert!(!swapped.status.success());
    assert!(
        String::from_utf8_lossy(&swapped.stderr).contains("event 2"),
        "{}",
        String::from_utf8_lossy(&swapped.stderr)
    );
}
