//! Secrets never leak (F21, F22): known canary secrets are planted through a full run — a
//! password, API-key secrets, access and refresh tokens, an email-verification token, the
//! master key — and afterwards none of them appears in any log line or anywhere in the
//! database (a raw scan of the SQLite files, and a `pg_dump` of the PostgreSQL schema).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use base64::Engine as _;
use common::upstream::Upstream;
use common::{Backend, Device, Server, SmtpSink, scratch, token_from_mail};
use serde_json::json;

const CANARY_PW: &str = "canary-Pa55word-7f3e9b1c";

fn files_contain(dir: &std::path::Path, needle: &[u8]) -> Vec<String> {
    let mut hits = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap().flatten() {
        let p = entry.path();
        if p.is_dir() {
            if p.file_name().is_some_and(|n| n == "mail") {
                continue; // the file transport is not used here; mail goes to the SMTP sink
            }
            hits.extend(files_contain(&p, needle));
        } else if p.file_name().is_some_and(|n| n != "master.key") {
            let bytes = std::fs::read(&p).unwrap_or_default();
            if bytes.windows(needle.len()).any(|w| w == needle) {
                hits.push(p.display().to_string());
            }
        }
    }
    hits
}

async fn run(backend: Backend) {
    let dir = scratch("canary");
    let sink = SmtpSink::start(&dir);
    let id_secret = [3u8; 32];
    let upstream = Upstream::start(&id_secret).await;
    let cfg = format!(
        "[gateway]\nidentity_secret = \"{}\"\n[[gateway.routes]]\nprefix = \"/v1\"\ndialect = \"upbit\"\nupstream = \"{}\"\ntable = \"upbit\"\n",
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(id_secret),
        upstream.base
    );
    let mut srv = Server::start_with_config(backend, &sink, &cfg, &[("GATEHOUSE_LOG", "debug")]).await;
    let email = "owner@example.com";
    let d = Device::new("python-requests/2.34.2");
    let (s, _) = d.post(&srv.api("/accounts"), json!({ "email": email, "password": CANARY_PW })).await;
    assert_eq!(s, 202);
    let verify_token = token_from_mail(&sink.wait_for(email, "Verify"));
    assert_eq!(d.post(&srv.api("/accounts/verify-email"), json!({ "token": verify_token })).await.0, 200);
    let mut a = Device::new("python-requests/2.34.2");
    assert_eq!(a.login(&srv, email, CANARY_PW).await.0, 201);
    let first_access = a.access.clone().unwrap();
    let first_refresh = a.refresh.clone().unwrap();
    assert_eq!(a.refresh(&srv).await.0, 200);
    // A wrong password and a refresh-token reuse, so failure paths log too.
    assert_eq!(Device::new("x").login(&srv, email, "canary-wrong-password-1").await.0, 401);
    let mfa = common::mfa::enrol_totp(&srv, &a, CANARY_PW).await;
    let t = mfa.step_up(&srv, &mut a, "create_api_key").await;
    let (s, key) = a
        .post(
            &srv.api("/api-keys"),
            json!({ "label": "canary", "kind": "hmac", "scopes": ["view_assets"], "step_up_token": t.clone() }),
        )
        .await;
    assert_eq!(s, 201);
    let api_secret = key["secret"].as_str().unwrap().to_owned();
    let key_id = key["id"].as_str().unwrap().to_owned();
    // Use the key (good and bad signatures) so the gateway paths log.
    let jwt = |secret: &str| {
        use hmac::{Hmac, KeyInit, Mac};
        let b64 = |b: &[u8]| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b);
        let h = b64(br#"{"alg":"HS256","typ":"JWT"}"#);
        let p = b64(json!({ "access_key": key_id, "nonce": format!("{}", std::process::id()) + secret.len().to_string().as_str() }).to_string().as_bytes());
        let mut mac = <Hmac<sha2::Sha256>>::new_from_slice(secret.as_bytes()).unwrap();
        mac.update(format!("{h}.{p}").as_bytes());
        format!("{h}.{p}.{}", b64(&mac.finalize().into_bytes()))
    };
    let good = jwt(&api_secret);
    let c = reqwest::Client::new();
    assert_eq!(c.get(format!("{}/v1/accounts", srv.base)).bearer_auth(&good).send().await.unwrap().status(), 200);
    assert_eq!(c.get(format!("{}/v1/accounts", srv.base)).bearer_auth(jwt("bad")).send().await.unwrap().status(), 401);
    let mut thief = a.clone();
    thief.refresh = Some(first_refresh.clone());
    assert_eq!(thief.refresh(&srv).await.0, 400);
    let current_access = a.access.clone().unwrap();
    // Let the usage flush and the mail worker run, then stop (a crash: nothing flushed on exit).
    sink.wait_for(email, "Security alert");
    srv.stop();

    let signature = good.rsplit('.').next().unwrap().to_owned();
    let master_key = std::fs::read_to_string(srv.data_dir().join("master.key"))
        .ok()
        .and_then(|t| t.lines().find(|l| !l.starts_with('#')).map(|l| l.split(':').nth(1).unwrap().to_owned()))
        .unwrap_or_else(|| common::TEST_MASTER_KEY.split(':').nth(1).unwrap().to_owned());
    let canaries: Vec<(&str, String)> = vec![
        ("password", CANARY_PW.into()),
        ("wrong password", "canary-wrong-password-1".into()),
        ("verification token", verify_token),
        ("first access token", first_access),
        ("first refresh token", first_refresh),
        ("current access token", current_access),
        ("API secret", api_secret),
        ("request signature", signature),
        ("master key", master_key),
        // second factors (feat/mfa): the seed, the backup codes, the step-up token
        ("TOTP seed", mfa.secret_b32.clone()),
        ("backup code", mfa.backup_codes.lock().unwrap()[0].replace('-', "")),
        ("step-up token", t),
    ];
    let log = srv.log();
    assert!(log.lines().count() > 3, "the run produced logs to check");
    // Positive control: the scans do see what is stored in clear (the address is not secret).
    match backend {
        Backend::Sqlite => {
            assert!(!files_contain(&srv.data_dir(), email.as_bytes()).is_empty(), "scanner sees stored data")
        }
        Backend::Postgres => {}
    }
    for (what, secret) in &canaries {
        assert!(!log.contains(secret.as_str()), "{what} found in the server log");
        match backend {
            Backend::Sqlite => {
                let hits = files_contain(&srv.data_dir(), secret.as_bytes());
                assert!(hits.is_empty(), "{what} found in {hits:?}");
            }
            Backend::Postgres => {
                let url = srv.database_url.clone().unwrap();
                let schema = url.rsplit("search_path%3D").next().unwrap().to_owned();
                let dump = std::process::Command::new("pg_dump")
                    .args(["-h", "127.0.0.1", "-U", "postgres", "-d", "test", "--schema", &schema, "--data-only"])
                    .output()
                    .expect("pg_dump is required (postgresql-client)");
                assert!(dump.status.success(), "{}", String::from_utf8_lossy(&dump.stderr));
                assert!(dump.stdout.len() > 1000, "the dump has data");
                assert!(String::from_utf8_lossy(&dump.stdout).contains(email), "the dump shows stored data");
                let text = String::from_utf8_lossy(&dump.stdout);
                assert!(!text.contains(secret.as_str()), "{what} found in pg_dump");
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_secret_in_logs_or_the_sqlite_database() {
    run(Backend::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_secret_in_logs_or_a_postgres_dump() {
    run(Backend::Postgres).await;
}
