//! Second factors and step-up end to end (issue 4), on SQLite and PostgreSQL: TOTP enrolment
//! and login cross-checked with `oathtool` and `pyotp`, replay refusal with audit and mail,
//! backup codes, the pending-login token, throttling of factor failures, nudges for accounts
//! without a second factor, and the step-up matrix (action × factor × age).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::mfa::{Mfa, enrol_totp, server_now_ms, totp_at};
use common::{Backend, Device, Server, SmtpSink, register_verified, scratch};
use serde_json::{Value, json};

const PW: &str = "violet tram harbour 77";

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

/// The code `oathtool` computes for `secret` at Unix milliseconds `ms`.
fn oathtool(secret: &str, ms: i64) -> String {
    let at = format!("@{}", ms / 1000);
    let date = std::process::Command::new("date").args(["-u", "-d", &at, "+%F %T UTC"]).output().unwrap();
    let now = String::from_utf8(date.stdout).unwrap();
    let out = std::process::Command::new("oathtool")
        .args(["--totp", "-b", "-d", "6", "-s", "30", "--now", now.trim(), secret])
        .output()
        .expect("REQUIRED TOOL MISSING: oathtool (apt-get install oathtool)");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap().trim().to_owned()
}

/// The code `pyotp` computes for `secret` at Unix seconds `secs`.
fn pyotp(secret: &str, secs: i64) -> String {
    let out = std::process::Command::new(common::python())
        .args(["-c", &format!("import pyotp; print(pyotp.TOTP('{secret}').at({secs}))")])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap().trim().to_owned()
}

async fn signed_in(srv: &Server, sink: &SmtpSink, email: &str) -> Device {
    register_verified(srv, sink, email, PW).await;
    let mut d = Device::new("python-requests/2.34.2");
    let (s, b) = d.login(srv, email, PW).await;
    assert_eq!(s, 201, "{b}");
    d
}

async fn history_kinds(d: &Device, srv: &Server) -> Vec<String> {
    let (_, h) = d.get(&srv.api("/account/security-history?limit=200")).await;
    h["events"].as_array().unwrap().iter().map(|e| e["kind"].as_str().unwrap().to_owned()).collect()
}

async fn start_login(srv: &Server, d: &Device, email: &str) -> String {
    let (s, v) = d.post(&srv.api("/sessions"), json!({ "email": email, "password": PW })).await;
    assert_eq!((s, v["status"].as_str()), (200, Some("second_factor_required")), "{v}");
    assert!(v.get("access_token").is_none(), "no session before the second factor");
    assert_eq!(v["methods"], json!(["totp", "backup_code"]));
    v["pending_token"].as_str().unwrap().to_owned()
}

async fn finish(srv: &Server, d: &Device, pending: &str, method: &str, code: &str) -> (u16, Value) {
    d.post(&srv.api("/sessions/second-factor"), json!({ "pending_token": pending, "method": method, "code": code }))
        .await
}

on_both_backends!(totp_enrolment_login_replay_and_crosscheck, |backend| {
    let dir = scratch("mfa-totp");
    let sink = SmtpSink::start(&dir);
    let srv = Server::start(backend, &sink, &[]).await;
    let email = "tess@example.com";
    let d = signed_in(&srv, &sink, email).await;

    // Nudge: no second factor yet, in the account answer; sensitive actions are refused.
    let (_, me) = d.get(&srv.api("/account")).await;
    assert_eq!(me["notices"], json!(["no_second_factor"]));
    let (s, e) = d.post(&srv.api("/api-keys"), json!({ "label": "bot", "kind": "hmac", "password": PW })).await;
    assert_eq!((s, e["error"]["code"].as_str()), (403, Some("second_factor_required")), "{e}");

    // Enrolment needs the password (first factor), shows seed, URI and QR once.
    let (s, e) = d.post(&srv.api("/account/factors/totp"), json!({})).await;
    assert_eq!((s, e["error"]["code"].as_str()), (403, Some("reauth_required")));
    let (s, start) = d.post(&srv.api("/account/factors/totp"), json!({ "password": PW })).await;
    assert_eq!(s, 201, "{start}");
    let secret = start["secret"].as_str().unwrap().to_owned();
    assert_eq!(secret.len(), 32, "160-bit seed = 32 base32 characters (R21)");
    let uri = start["otpauth_uri"].as_str().unwrap();
    assert!(uri.starts_with("otpauth://totp/") && uri.contains(&format!("secret={secret}")), "{uri}");
    assert!(start["qr_svg"].as_str().unwrap().contains("<svg"));

    // A wrong first code does not activate the factor (R26).
    let now = server_now_ms(&srv).await;
    let right = oathtool(&secret, now);
    assert_eq!(right, pyotp(&secret, now / 1000), "oathtool and pyotp agree");
    assert_eq!(right, totp_at(&secret, now), "and so does gatehouse");
    let wrong = format!("{:06}", (right.parse::<u32>().unwrap() + 1) % 1_000_000);
    let (s, e) = d.post(&srv.api("/account/factors/totp/confirm"), json!({ "code": wrong })).await;
    assert_eq!((s, e["error"]["code"].as_str()), (401, Some("invalid_code")));
    let (_, f) = d.get(&srv.api("/account/factors")).await;
    assert_eq!(f["totp"]["enabled"], json!(false));
    let (s, done) = d.post(&srv.api("/account/factors/totp/confirm"), json!({ "code": right })).await;
    assert_eq!(s, 200, "{done}");
    let codes = done["backup_codes"].as_array().unwrap();
    assert_eq!(codes.len(), 10);
    assert!(codes.iter().all(|c| c.as_str().unwrap().len() == 11), "ABCDE-FGHJK");
    sink.wait_for(email, "second factor was added");
    let (_, me) = d.get(&srv.api("/account")).await;
    assert_eq!(me["notices"], json!([]));
    assert_eq!(me["factors"]["backup_codes"]["remaining"], json!(10));

    // The seed is not in the database in clear (SQLite file, R26).
    if backend == Backend::Sqlite {
        let db = std::fs::read(srv.data_dir().join("gatehouse.db")).unwrap_or_default();
        let wal = std::fs::read(srv.data_dir().join("gatehouse.db-wal")).unwrap_or_default();
        for bytes in [db, wal] {
            assert!(!bytes.windows(secret.len()).any(|w| w == secret.as_bytes()), "seed found in the database");
        }
    }

    // Login: password, then the factor. Wrong code 401; a code for T+2 is refused (R23).
    let mut login = Device::new("python-requests/2.34.2");
    let pending = start_login(&srv, &login, email).await;
    let now = server_now_ms(&srv).await;
    let (s, e) = finish(&srv, &login, &pending, "totp", &oathtool(&secret, now + 60_000)).await;
    assert_eq!((s, e["error"]["code"].as_str()), (401, Some("invalid_code")), "T+2 is outside the window");
    // T+1 (pyotp) is accepted; a new session comes with new tokens (R43).
    let code = pyotp(&secret, now / 1000 + 30);
    let (s, body) = finish(&srv, &login, &pending, "totp", &code).await;
    assert_eq!(s, 201, "{body}");
    assert_eq!(body["factors"], json!(["password", "totp"]));
    assert_ne!(body["access_token"], json!(d.access.clone().unwrap()));
    // The pending token is single use.
    let (s, e) = finish(&srv, &login, &pending, "totp", &code).await;
    assert_eq!((s, e["error"]["code"].as_str()), (401, Some("pending_login_invalid")));
    // The same code in a new login: replay, audited and notified (R24).
    let pending = start_login(&srv, &login, email).await;
    let (s, e) = finish(&srv, &login, &pending, "totp", &code).await;
    assert_eq!((s, e["error"]["code"].as_str()), (401, Some("code_replayed")), "{e}");
    sink.wait_for(email, "authenticator code was reused");
    assert!(history_kinds(&d, &srv).await.iter().any(|k| k == "totp_replay"));
    // T−1 relative to a later clock is still accepted (newer than the T+1 used above).
    srv.advance(90_000).await;
    let now = server_now_ms(&srv).await;
    let (s, body) = finish(&srv, &login, &pending, "totp", &oathtool(&secret, now - 30_000)).await;
    assert_eq!(s, 201, "T−1 accepted: {body}");
    // A login answer says the factor is there; no nudge.
    assert!(body.get("notices").is_none() || body["notices"] == json!([]), "{body}");
    login.access = body["access_token"].as_str().map(String::from);
    login.device_id = body["device_id"].as_str().map(String::from);
    assert_eq!(login.get(&srv.api("/account")).await.0, 200);
    // A `time` field from the client is not accepted (R25: server clock only).
    let (s, _) = d
        .post(
            &srv.api("/account/step-up"),
            json!({ "action": "create_api_key", "method": "totp", "code": "000000", "time": 59 }),
        )
        .await;
    assert_eq!(s, 400);
});

on_both_backends!(backup_codes_single_use_regenerate_and_notify, |backend| {
    let dir = scratch("mfa-backup");
    let sink = SmtpSink::start(&dir);
    let srv = Server::start(backend, &sink, &[]).await;
    let email = "bea@example.com";
    let mut d = signed_in(&srv, &sink, email).await;
    let mfa = enrol_totp(&srv, &d, PW).await;
    let first = mfa.backup_codes.lock().unwrap()[0].clone();
    let login = Device::new("python-requests/2.34.2");
    let pending = start_login(&srv, &login, email).await;
    let (s, body) = finish(&srv, &login, &pending, "backup_code", &first.to_lowercase()).await;
    assert_eq!(s, 201, "{body}");
    assert_eq!(body["backup_codes_remaining"], json!(9));
    sink.wait_for(email, "A backup code was used");
    // Second use: already used.
    let pending = start_login(&srv, &login, email).await;
    let (s, e) = finish(&srv, &login, &pending, "backup_code", &first).await;
    assert_eq!((s, e["error"]["code"].as_str()), (401, Some("code_replayed")));
    assert!(history_kinds(&d, &srv).await.iter().any(|k| k == "backup_code_replay"));
    let (_, f) = d.get(&srv.api("/account/factors")).await;
    assert_eq!(f["backup_codes"]["remaining"], json!(9));
    // Regenerate (step-up change_factors): an old unused code fails, a new one works.
    let old_unused = mfa.backup_codes.lock().unwrap()[5].clone();
    let (s, e) = d.post(&srv.api("/account/backup-codes"), json!({ "password": PW })).await;
    assert_eq!((s, e["error"]["code"].as_str()), (403, Some("step_up_required")), "{e}");
    let token = mfa.step_up(&srv, &mut d, "change_factors").await;
    let (s, fresh) = d.post(&srv.api("/account/backup-codes"), json!({ "step_up_token": token })).await;
    assert_eq!(s, 201, "{fresh}");
    sink.wait_for(email, "New backup codes");
    let (s, e) = finish(&srv, &login, &pending, "backup_code", &old_unused).await;
    assert_eq!((s, e["error"]["code"].as_str()), (401, Some("invalid_code")));
    let new_code = fresh["backup_codes"][3].as_str().unwrap();
    let (s, body) = finish(&srv, &login, &pending, "backup_code", new_code).await;
    assert_eq!(s, 201, "{body}");
    // Stored hashed: the rows are Argon2id PHC strings (R37), checked on SQLite's file.
    if backend == Backend::Sqlite {
        let db = std::fs::read(srv.data_dir().join("gatehouse.db")).unwrap_or_default();
        let wal = std::fs::read(srv.data_dir().join("gatehouse.db-wal")).unwrap_or_default();
        let canon = new_code.replace('-', "");
        for bytes in [db, wal] {
            assert!(!bytes.windows(canon.len()).any(|w| w == canon.as_bytes()));
        }
    }
});

on_both_backends!(factor_failures_share_the_login_throttle, |backend| {
    let dir = scratch("mfa-throttle");
    let sink = SmtpSink::start(&dir);
    let srv = Server::start(backend, &sink, &[]).await;
    let email = "thor@example.com";
    let d = signed_in(&srv, &sink, email).await;
    let _mfa = enrol_totp(&srv, &d, PW).await;
    let login = Device::new("python-requests/2.34.2");
    let pending = start_login(&srv, &login, email).await;
    let mut statuses = vec![];
    for _ in 0..7 {
        let (s, _) = finish(&srv, &login, &pending, "totp", "000000").await;
        statuses.push(s);
    }
    // Five free failures (the sixth is still checked), then the progressive delay (R13/R15):
    // the same counter as passwords.
    assert_eq!(&statuses[..6], &[401; 6], "{statuses:?}");
    assert_eq!(statuses[6], 429, "{statuses:?}");
    let (s, e) = login.post(&srv.api("/sessions"), json!({ "email": email, "password": PW })).await;
    assert_eq!((s, e["error"]["code"].as_str()), (429, Some("rate_limited")), "passwords wait too: {e}");
});

on_both_backends!(step_up_matrix, |backend| {
    let dir = scratch("mfa-stepup");
    let sink = SmtpSink::start(&dir);
    let srv = Server::start(backend, &sink, &[]).await;
    let email = "stella@example.com";
    let mut d = signed_in(&srv, &sink, email).await;
    let mfa = enrol_totp(&srv, &d, PW).await;
    let key = json!({ "label": "bot", "kind": "hmac", "scopes": ["view_assets"] });
    let with = |extra: Value| {
        let mut b = key.clone();
        for (k, v) in extra.as_object().unwrap() {
            b[k] = v.clone();
        }
        b
    };

    // create_api_key: policy any_second_factor, max age 0 (every time).
    // (none) → step_up_required; password only → step_up_required.
    let (s, e) = d.post(&srv.api("/api-keys"), key.clone()).await;
    assert_eq!((s, e["error"]["code"].as_str()), (403, Some("step_up_required")), "{e}");
    assert_eq!(e["error"]["details"], json!({ "action": "create_api_key", "strength": "any_second_factor" }));
    let (s, e) = d.post(&srv.api("/api-keys"), with(json!({ "password": PW }))).await;
    assert_eq!((s, e["error"]["code"].as_str()), (403, Some("step_up_required")));
    // A token for another action does not fit.
    let other = mfa.step_up(&srv, &mut d, "change_password").await;
    let (s, e) = d.post(&srv.api("/api-keys"), with(json!({ "step_up_token": other }))).await;
    assert_eq!((s, e["error"]["code"].as_str()), (403, Some("step_up_invalid")));
    // TOTP token: allowed, once.
    let t = mfa.step_up(&srv, &mut d, "create_api_key").await;
    let (s, k) = d.post(&srv.api("/api-keys"), with(json!({ "step_up_token": t }))).await;
    assert_eq!(s, 201, "{k}");
    let (s, e) = d.post(&srv.api("/api-keys"), with(json!({ "step_up_token": t }))).await;
    assert_eq!((s, e["error"]["code"].as_str()), (403, Some("step_up_invalid")), "single use");
    // Backup-code token: allowed (any second factor).
    let code = mfa.backup_codes.lock().unwrap().pop().unwrap();
    let (s, v) = d
        .step_up_post(
            &srv.api("/account/step-up"),
            json!({ "action": "create_api_key", "method": "backup_code", "code": code }),
        )
        .await;
    assert_eq!((s, v["factor"].as_str()), (201, Some("backup_code")), "{v}");
    let (s, _) = d.post(&srv.api("/api-keys"), with(json!({ "step_up_token": v["step_up_token"] }))).await;
    assert_eq!(s, 201);
    // An expired token (older than the 300 s token lifetime): refused.
    let t = mfa.step_up(&srv, &mut d, "create_api_key").await;
    srv.advance(301_000).await;
    assert_eq!(d.refresh(&srv).await.0, 200);
    let (s, e) = d.post(&srv.api("/api-keys"), with(json!({ "step_up_token": t }))).await;
    assert_eq!((s, e["error"]["code"].as_str()), (403, Some("step_up_invalid")));
    // SMS is never a step-up factor (R39).
    let (s, e) =
        d.post(&srv.api("/account/step-up"), json!({ "action": "withdraw", "method": "sms", "code": "123456" })).await;
    assert_eq!((s, e["error"]["code"].as_str()), (400, Some("factor_not_allowed")));
    // Binding: a withdrawal token bound to one intent does not authorise another.
    let intent = "ab".repeat(32);
    let t = mfa.step_up_bound(&srv, &mut d, "withdraw", Some(&intent)).await;
    let (s, _) = d
        .post(
            &srv.api("/account/step-up"),
            json!({ "action": "withdraw", "method": "totp", "code": "1", "binding": "abcd" }),
        )
        .await;
    assert_eq!(s, 400, "binding must be 32 bytes");
    assert!(!t.is_empty());

    // revoke_sessions: policy any_second_factor, max age 300 s: a proof on this session from
    // the last 5 minutes is enough without a token; older is not.
    let mut other_dev = Device::new("curl/8.5.0");
    assert_eq!(mfa.login(&srv, &mut other_dev, email, PW).await.0, 201);
    let _ = mfa.step_up(&srv, &mut d, "change_factors").await; // a proof at age 0
    srv.advance(100_000).await;
    let (s, v) = d.post(&srv.api("/sessions/revoke-others"), json!({})).await;
    assert_eq!(s, 200, "age 100 s ≤ 300 s: {v}");
    srv.advance(301_000).await;
    assert_eq!(d.refresh(&srv).await.0, 200);
    let (s, e) = d.post(&srv.api("/sessions/revoke-others"), json!({})).await;
    assert_eq!((s, e["error"]["code"].as_str()), (403, Some("step_up_required")), "age 401 s > 300 s");
    let t = mfa.step_up(&srv, &mut d, "revoke_sessions").await;
    let (s, _) = d.post(&srv.api("/sessions/revoke-others"), json!({ "step_up_token": t })).await;
    assert_eq!(s, 200);
    // create_api_key has max age 0: a fresh session proof is not enough without a token.
    let _ = mfa.step_up(&srv, &mut d, "revoke_sessions").await;
    let (s, e) = d.post(&srv.api("/api-keys"), key.clone()).await;
    assert_eq!((s, e["error"]["code"].as_str()), (403, Some("step_up_required")));

    // A step-up token from another session does not work here.
    let mut third = Device::new("curl/8.5.0");
    assert_eq!(mfa.login(&srv, &mut third, email, PW).await.0, 201);
    let t = mfa.step_up(&srv, &mut third, "create_api_key").await;
    let (s, e) = d.post(&srv.api("/api-keys"), with(json!({ "step_up_token": t }))).await;
    assert_eq!((s, e["error"]["code"].as_str()), (403, Some("step_up_invalid")));

    // Removing TOTP needs change_factors; afterwards the account is nudged again.
    let t = mfa.step_up(&srv, &mut d, "change_factors").await;
    let (s, _) = d.post(&srv.api("/account/factors/totp/remove"), json!({ "step_up_token": t })).await;
    assert_eq!(s, 200);
    let (_, me) = d.get(&srv.api("/account")).await;
    assert_eq!(me["notices"], json!(["no_second_factor"]));
    // Enrolling again at once (a new seed) works: the old step history does not block it.
    let again = enrol_totp(&srv, &d, PW).await;
    let t = again.step_up(&srv, &mut d, "create_api_key").await;
    assert_eq!(d.post(&srv.api("/api-keys"), with(json!({ "step_up_token": t }))).await.0, 201);
    let history = history_kinds(&d, &srv).await;
    for k in ["totp_enabled", "step_up_succeeded", "step_up_denied", "totp_disabled", "backup_code_used"] {
        assert!(history.iter().any(|h| h == k), "{k} missing from {history:?}");
    }
});

/// Marks an account high-value directly in the database (there is no API for it).
async fn set_high_value(srv: &Server, email: &str) {
    use sqlx::Executor;
    sqlx::any::install_default_drivers();
    let url = srv
        .database_url
        .clone()
        .unwrap_or_else(|| format!("sqlite://{}", srv.data_dir().join("gatehouse.db").display()));
    let pool = sqlx::AnyPool::connect(&url).await.unwrap();
    pool.execute(sqlx::AssertSqlSafe(format!("UPDATE accounts SET high_value = 1 WHERE email = '{email}'")))
        .await
        .unwrap();
    pool.close().await;
}

on_both_backends!(high_value_accounts_need_phishing_resistant_factors, |backend| {
    let dir = scratch("mfa-hv");
    let sink = SmtpSink::start(&dir);
    let srv = Server::start(backend, &sink, &[]).await;
    let email = "hv@example.com";
    let d = signed_in(&srv, &sink, email).await;
    let mfa = enrol_totp(&srv, &d, PW).await;
    set_high_value(&srv, email).await;
    let code = mfa.totp(&srv).await;
    let (s, e) = d
        .post(&srv.api("/account/step-up"), json!({ "action": "create_api_key", "method": "totp", "code": code }))
        .await;
    assert_eq!((s, e["error"]["code"].as_str()), (403, Some("phishing_resistant_required")), "{e}");
    assert_eq!(e["error"]["details"]["strength"], json!("phishing_resistant"));
    let (s, e) = d.post(&srv.api("/api-keys"), json!({ "label": "x", "kind": "hmac" })).await;
    assert_eq!((s, e["error"]["code"].as_str()), (403, Some("phishing_resistant_required")));
});

/// Issue 8: on PostgreSQL behind two instances, the same TOTP code and the same backup code
/// submitted to both at once each succeed exactly once (F8).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn same_code_on_two_instances_succeeds_once() {
    let dir = scratch("mfa-inst");
    let sink = SmtpSink::start(&dir);
    let a = Server::start(Backend::Postgres, &sink, &[]).await;
    let url = a.database_url.clone().unwrap();
    let b = Server::start(
        Backend::Sqlite,
        &sink,
        &[("GATEHOUSE_STORAGE__DATABASE_URL", &url), ("GATEHOUSE_SECRETS__MASTER_KEYS", common::TEST_MASTER_KEY)],
    )
    .await;
    let email = "twin@example.com";
    let d = signed_in(&a, &sink, email).await;
    let mfa: Mfa = enrol_totp(&a, &d, PW).await;
    for round in 0..5 {
        // Both instances' test clocks move together, so they agree on the TOTP step.
        a.advance(30_000).await;
        b.advance(30_000).await;
        let (method, code) = if round % 2 == 0 {
            ("totp", mfa.totp(&a).await)
        } else {
            ("backup_code", mfa.backup_codes.lock().unwrap().pop().unwrap())
        };
        let pa = start_login(&a, &Device::new("python-requests/2.34.2"), email).await;
        let pb = start_login(&b, &Device::new("python-requests/2.34.2"), email).await;
        let da = Device::new("python-requests/2.34.2");
        let db = Device::new("python-requests/2.34.2");
        let (ra, rb) = tokio::join!(finish(&a, &da, &pa, method, &code), finish(&b, &db, &pb, method, &code));
        let ok = [ra.0, rb.0].iter().filter(|s| **s == 201).count();
        let replayed = [&ra.1, &rb.1].iter().filter(|v| v["error"]["code"] == json!("code_replayed")).count();
        assert_eq!((ok, replayed), (1, 1), "round {round} ({method}): {ra:?} {rb:?}");
    }
}

/// A tiny HTTP receiver standing in for the operator's SMS provider: records every JSON body.
struct SmsReceiver {
    url: String,
    got: std::sync::Arc<std::sync::Mutex<Vec<Value>>>,
}

impl SmsReceiver {
    fn start() -> Self {
        use std::io::{Read, Write};
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}/sms", listener.local_addr().unwrap());
        let got = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let sink = got.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(mut s) = stream else { continue };
                let mut buf = Vec::new();
                let mut chunk = [0u8; 4096];
                loop {
                    let n = s.read(&mut chunk).unwrap_or(0);
                    if n == 0 {
                        break;
                    }
                    buf.extend_from_slice(&chunk[..n]);
                    let text = String::from_utf8_lossy(&buf).to_string();
                    if let Some(i) = text.find("\r\n\r\n") {
                        let len = text[..i]
                            .lines()
                            .find_map(|l| {
                                l.to_ascii_lowercase()
                                    .strip_prefix("content-length:")
                                    .map(|v| v.trim().parse::<usize>().unwrap_or(0))
                            })
                            .unwrap_or(0);
                        if buf.len() >= i + 4 + len {
                            let body: Value = serde_json::from_slice(&buf[i + 4..i + 4 + len]).unwrap_or(Value::Null);
                            sink.lock().unwrap().push(body);
                            let _ = s.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\nconnection: close\r\n\r\n");
                            break;
                        }
                    }
                }
            }
        });
        Self { url, got }
    }

    fn last_code(&self) -> String {
        let msgs = self.got.lock().unwrap();
        let text = msgs.last().unwrap()["text"].as_str().unwrap().to_owned();
        text.split_whitespace().next().unwrap().to_owned()
    }
}

on_both_backends!(sms_is_a_bound_expiring_last_resort, |backend| {
    let dir = scratch("mfa-sms");
    let sink = SmtpSink::start(&dir);
    let rx = SmsReceiver::start();
    let srv = Server::start(backend, &sink, &[("GATEHOUSE_MFA__SMS__WEBHOOK_URL", &rx.url)]).await;
    let email = "sam@example.com";
    let mut d = signed_in(&srv, &sink, email).await;
    let (s, e) = d.post(&srv.api("/account/factors/sms"), json!({ "phone": "12345", "password": PW })).await;
    assert_eq!((s, e["error"]["code"].as_str()), (400, Some("invalid_request")));
    // Setting the number sends a code to it; until that code comes back, SMS is not offered
    // (R39: validated numbers only).
    let (s, v) = d.post(&srv.api("/account/factors/sms"), json!({ "phone": "+15551234567", "password": PW })).await;
    assert_eq!(
        (s, v["status"].as_str(), v["weaker"].as_bool()),
        (200, Some("pending_confirmation"), Some(true)),
        "{v}"
    );
    assert_eq!(v["to"], json!("…67"));
    assert_eq!(rx.got.lock().unwrap().last().unwrap()["to"], json!("+15551234567"));
    let confirm_code = rx.last_code();
    let (_, f) = d.get(&srv.api("/account/factors")).await;
    assert_eq!(f["sms"]["enabled"], json!(false), "not before the code is confirmed: {f}");
    let probe = Device::new("python-requests/2.34.2");
    let (s, a) = probe.post(&srv.api("/sessions"), json!({ "email": email, "password": PW })).await;
    assert!(s == 201 || a["status"] != json!("second_factor_required"), "no SMS step for an unconfirmed number: {a}");
    // A wrong code does not confirm it (and counts as a failure); the right one does, once.
    let wrong = if confirm_code == "000000" { "111111" } else { "000000" };
    let (s, e) = d.post(&srv.api("/account/factors/sms/confirm"), json!({ "code": wrong })).await;
    assert_eq!((s, e["error"]["code"].as_str()), (401, Some("invalid_code")), "{e}");
    let (s, v) = d.post(&srv.api("/account/factors/sms/confirm"), json!({ "code": confirm_code })).await;
    assert_eq!((s, v["status"].as_str()), (200, Some("enabled")), "{v}");
    let (s, e) = d.post(&srv.api("/account/factors/sms/confirm"), json!({ "code": confirm_code })).await;
    assert_eq!((s, e["error"]["code"].as_str()), (401, Some("invalid_code")), "single use: {e}");
    let (_, f) = d.get(&srv.api("/account/factors")).await;
    assert_eq!((f["sms"]["enabled"].as_bool(), f["sms"]["weaker"].as_bool()), (Some(true), Some(true)));
    // SMS alone is not a second factor for sensitive actions: still nudged.
    let (_, me) = d.get(&srv.api("/account")).await;
    assert_eq!(me["notices"], json!(["no_second_factor"]));

    // Login: password → pending with SMS labelled weaker.
    let login = Device::new("python-requests/2.34.2");
    let (s, a) = login.post(&srv.api("/sessions"), json!({ "email": email, "password": PW })).await;
    assert_eq!((s, a["weaker_methods"].clone()), (200, json!(["sms"])), "{a}");
    let pa = a["pending_token"].as_str().unwrap().to_owned();
    let (s, v) = login.post(&srv.api("/sessions/second-factor/sms/send"), json!({ "pending_token": pa })).await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(rx.got.lock().unwrap().last().unwrap()["to"], json!("+15551234567"));
    let code_a1 = rx.last_code();
    // A resend replaces the first code (R38).
    let (s, _) = login.post(&srv.api("/sessions/second-factor/sms/send"), json!({ "pending_token": pa })).await;
    assert_eq!(s, 200);
    let code_a2 = rx.last_code();
    if code_a1 != code_a2 {
        let (s, e) = finish(&srv, &login, &pa, "sms", &code_a1).await;
        assert_eq!((s, e["error"]["code"].as_str()), (401, Some("invalid_code")), "the replaced code fails");
    }
    // A code from flow A does not work in flow B (bound to the request).
    let (_, b) = login.post(&srv.api("/sessions"), json!({ "email": email, "password": PW })).await;
    let pb = b["pending_token"].as_str().unwrap().to_owned();
    let (s, e) = finish(&srv, &login, &pb, "sms", &code_a2).await;
    assert_eq!((s, e["error"]["code"].as_str()), (401, Some("invalid_code")));
    // The right code in its own flow works, once.
    let (s, body) = finish(&srv, &login, &pa, "sms", &code_a2).await;
    assert_eq!(s, 201, "{body}");
    assert_eq!(body["factors"], json!(["password", "sms"]));
    // Expiry: a code older than its lifetime (300 s here, ≤ 600 s by configuration) fails.
    let (s, _) = login.post(&srv.api("/sessions/second-factor/sms/send"), json!({ "pending_token": pb })).await;
    assert_eq!(s, 200);
    let code_b = rx.last_code();
    srv.advance(301_000).await;
    let (s, e) = finish(&srv, &login, &pb, "sms", &code_b).await;
    assert!(
        s == 401 && ["invalid_code", "pending_login_invalid"].contains(&e["error"]["code"].as_str().unwrap()),
        "{e}"
    );
    // At most three codes per pending login (SMS pumping).
    let (_, c) = login.post(&srv.api("/sessions"), json!({ "email": email, "password": PW })).await;
    let pc = c["pending_token"].as_str().unwrap().to_owned();
    for _ in 0..3 {
        assert_eq!(
            login.post(&srv.api("/sessions/second-factor/sms/send"), json!({ "pending_token": pc })).await.0,
            200
        );
    }
    let (s, e) = login.post(&srv.api("/sessions/second-factor/sms/send"), json!({ "pending_token": pc })).await;
    assert_eq!((s, e["error"]["code"].as_str()), (429, Some("rate_limited")));
    // Never for step-up (R39), and not enough for sensitive actions.
    let (s, e) = d
        .post(&srv.api("/account/step-up"), json!({ "action": "create_api_key", "method": "sms", "code": code_b }))
        .await;
    assert_eq!((s, e["error"]["code"].as_str()), (400, Some("factor_not_allowed")));
    // Changing the number: a code goes to the new one, and sign-in codes keep going to the
    // confirmed number until the new one is confirmed.
    let (s, v) = d.post(&srv.api("/account/factors/sms"), json!({ "phone": "+15557654321", "password": PW })).await;
    assert_eq!((s, v["status"].as_str()), (200, Some("pending_confirmation")), "{v}");
    assert_eq!(rx.got.lock().unwrap().last().unwrap()["to"], json!("+15557654321"));
    let new_code = rx.last_code();
    let (_, e) = login.post(&srv.api("/sessions"), json!({ "email": email, "password": PW })).await;
    let pe = e["pending_token"].as_str().unwrap().to_owned();
    assert_eq!(login.post(&srv.api("/sessions/second-factor/sms/send"), json!({ "pending_token": pe })).await.0, 200);
    assert_eq!(rx.got.lock().unwrap().last().unwrap()["to"], json!("+15551234567"), "the confirmed number");
    // A sign-in code does not confirm a number.
    let login_code = rx.last_code();
    if login_code != new_code {
        let (s, _) = d.post(&srv.api("/account/factors/sms/confirm"), json!({ "code": login_code })).await;
        assert_eq!(s, 401);
    }
    let (s, v) = d.post(&srv.api("/account/factors/sms/confirm"), json!({ "code": new_code })).await;
    assert_eq!((s, v["status"].as_str()), (200, Some("enabled")), "{v}");
    assert_eq!(login.post(&srv.api("/sessions/second-factor/sms/send"), json!({ "pending_token": pe })).await.0, 200);
    assert_eq!(rx.got.lock().unwrap().last().unwrap()["to"], json!("+15557654321"), "the new number");
    // With a real second factor, changing the number needs a step-up, as before.
    let mfa = enrol_totp(&srv, &d, PW).await;
    let (s, e) = d.post(&srv.api("/account/factors/sms"), json!({ "phone": "+15550000001", "password": PW })).await;
    assert_eq!((s, e["error"]["code"].as_str()), (403, Some("step_up_required")), "{e}");
    let t = mfa.step_up(&srv, &mut d, "change_factors").await;
    let (s, v) = d.post(&srv.api("/account/factors/sms"), json!({ "phone": "+15550000001", "step_up_token": t })).await;
    assert_eq!((s, v["status"].as_str()), (200, Some("pending_confirmation")), "{v}");
    // At most three confirmation codes per account and hour (SMS pumping): this is the fourth.
    let t = mfa.step_up(&srv, &mut d, "change_factors").await;
    let (s, e) = d.post(&srv.api("/account/factors/sms"), json!({ "phone": "+15550000001", "step_up_token": t })).await;
    assert_eq!((s, e["error"]["code"].as_str()), (429, Some("rate_limited")), "{e}");
    assert_eq!(rx.got.lock().unwrap().last().unwrap()["to"], json!("+15550000001"));
    let history = history_kinds(&d, &srv).await;
    for k in ["sms_code_sent", "sms_code_failed", "sms_number_set"] {
        assert!(history.iter().any(|h| h == k), "{k} missing from {history:?}");
    }

    // The code and the number never reach the database in clear.
    if backend == Backend::Sqlite {
        let db = std::fs::read(srv.data_dir().join("gatehouse.db")).unwrap_or_default();
        let wal = std::fs::read(srv.data_dir().join("gatehouse.db-wal")).unwrap_or_default();
        for bytes in [db, wal] {
            assert!(!bytes.windows(12).any(|w| w == b"+15551234567"), "number in clear");
        }
    }
});

// Group commit (issue 4): a step-up answered 201 has its used step (and `totp_verified`) on
// disk — after a SIGKILL and restart the same code is a replay, not a second success.
on_both_backends!(used_steps_survive_a_crash, |backend| {
    let dir = scratch("mfa-crash");
    let sink = SmtpSink::start(&dir);
    let mut srv = Server::start(backend, &sink, &[]).await;
    let mut d = signed_in(&srv, &sink, "crash@example.com").await;
    let mfa = enrol_totp(&srv, &d, PW).await;
    let code = mfa.totp(&srv).await;
    let body = json!({ "action": "create_api_key", "method": "totp", "code": code });
    let (s, v) = d.step_up_post(&srv.api("/account/step-up"), body.clone()).await;
    assert_eq!(s, 201, "{v}");
    let now = server_now_ms(&srv).await;
    srv.restart();
    // The manual clock restarts from the wall clock: put it back where the code was accepted.
    let r =
        reqwest::Client::new().post(srv.url("/_gh/test/clock")).json(&json!({ "set_ms": now })).send().await.unwrap();
    assert_eq!(r.status().as_u16(), 200);
    let (s, e) = d.post(&srv.api("/account/step-up"), body).await;
    assert_eq!((s, e["error"]["code"].as_str()), (401, Some("code_replayed")), "{e}");
    let kinds = history_kinds(&d, &srv).await;
    assert!(kinds.iter().any(|k| k == "totp_verified"), "{kinds:?}");
});

// R43: a successful step-up issues a new session token and the old value gets 401; the
// session itself (its id, its refresh family, its step-up tokens) stays. A refused step-up
// (wrong or replayed code, too weak a factor) changes nothing.
on_both_backends!(step_up_rotates_the_session_token, |backend| {
    let dir = scratch("mfa-r43");
    let sink = SmtpSink::start(&dir);
    let srv = Server::start(backend, &sink, &[]).await;
    let email = "rot@example.com";
    let mut d = signed_in(&srv, &sink, email).await;
    let mfa = enrol_totp(&srv, &d, PW).await;
    let (_, before) = d.get(&srv.api("/sessions")).await;
    let old = d.access.clone().unwrap();

    // A wrong code: refused, and the token in use keeps working.
    let (s, e) = d
        .post(&srv.api("/account/step-up"), json!({ "action": "create_api_key", "method": "totp", "code": "000000" }))
        .await;
    assert_eq!((s, e["error"]["code"].as_str()), (401, Some("invalid_code")), "{e}");
    assert!(e["error"].get("access_token").is_none() && e.get("access_token").is_none());
    assert_eq!(d.get(&srv.api("/account")).await.0, 200, "a refused step-up does not rotate");

    // TOTP step-up: a new token in the answer, shaped as at login; the old one is dead.
    let code = mfa.totp(&srv).await;
    let body = json!({ "action": "create_api_key", "method": "totp", "code": code });
    let (s, v) = d.post(&srv.api("/account/step-up"), body.clone()).await;
    assert_eq!(s, 201, "{v}");
    let new = v["access_token"].as_str().expect("rotated access token").to_owned();
    assert_ne!(new, old);
    assert_eq!(v["token_type"], json!("Bearer"));
    assert!(v["access_token_expires_in"].as_i64().is_some_and(|n| n > 0 && n <= 600), "{v}");
    assert!(v["step_up_token"].is_string());
    let (s, e) = d.get(&srv.api("/account")).await;
    assert_eq!((s, e["error"]["code"].as_str()), (401, Some("unauthenticated")), "the old token: {e}");
    d.adopt(&v);
    assert_eq!(d.get(&srv.api("/account")).await.0, 200, "the new token works");
    // Same session: same id in the device list; the step-up token minted on it still works.
    let (_, after) = d.get(&srv.api("/sessions")).await;
    let current = |l: &Value| {
        l["sessions"].as_array().unwrap().iter().find(|x| x["current"] == json!(true)).unwrap()["id"].clone()
    };
    assert_eq!(current(&after), current(&before));
    assert_eq!(after["sessions"].as_array().unwrap().len(), before["sessions"].as_array().unwrap().len());
    let key = json!({ "label": "r43", "kind": "hmac", "scopes": ["view_assets"], "step_up_token": v["step_up_token"] });
    assert_eq!(
        d.post(&srv.api("/api-keys"), key).await.0,
        201,
        "the step-up token is tied to the session, not the token"
    );

    // The replayed code is refused as a whole: nothing rotates, no token is minted.
    let (s, e) = d.post(&srv.api("/account/step-up"), body).await;
    assert_eq!((s, e["error"]["code"].as_str()), (401, Some("code_replayed")), "{e}");
    assert_eq!(d.get(&srv.api("/account")).await.0, 200);

    // A backup code rotates too, and the refresh family survives the rotations.
    let code = mfa.backup_codes.lock().unwrap().pop().unwrap();
    let before_backup = d.access.clone().unwrap();
    let (s, v) = d
        .step_up_post(
            &srv.api("/account/step-up"),
            json!({ "action": "change_factors", "method": "backup_code", "code": code }),
        )
        .await;
    assert_eq!(s, 201, "{v}");
    let mut stale = d.clone();
    stale.access = Some(before_backup);
    assert_eq!(stale.get(&srv.api("/account")).await.0, 401);
    assert_eq!(d.get(&srv.api("/account")).await.0, 200);
    let (s, r) = d.refresh(&srv).await;
    assert_eq!(s, 200, "the refresh family is the session's, unchanged: {r}");
    assert_eq!(d.get(&srv.api("/account")).await.0, 200);

    let history = history_kinds(&d, &srv).await;
    assert_eq!(history.iter().filter(|k| *k == "step_up_succeeded").count(), 2, "{history:?}");
});
