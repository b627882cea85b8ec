//! The web pages (issue 7) driven through every flow by a real headless Chromium
//! (playwright-core, `tests/browser/pages.mjs`) against the spawned binary, on SQLite and on
//! PostgreSQL, with the verification link read from the real SMTP sink. The browser script
//! fails on any console error, failed request or unlabelled control and writes a screenshot
//! of every page to `test-artifacts/screenshots/`; this side then checks through the JSON
//! API that the pages changed what they claimed to change. A second test checks the page
//! rules that need no browser: CSP and headers, CSRF on the form posts, no open redirect.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::browser::run_browser;

use common::{Backend, Device, Server, SmtpSink, register_verified, scratch};
use serde_json::Value;

const PW: &str = "violet tram harbour 77";
const PW2: &str = "amber kite lantern 31";

/// The operator's choice of the password as step-up proof for the actions the main flow takes.
const PASSWORD_STEP_UP: &str = "[risk]\nenabled = false\n\n\
[mfa.step_up.actions.revoke_sessions]\nstrength = \"password\"\nmax_age_secs = 0\n\
[mfa.step_up.actions.change_password]\nstrength = \"password\"\nmax_age_secs = 0\n\
[mfa.step_up.actions.create_api_key]\nstrength = \"password\"\nmax_age_secs = 0\n\
[mfa.step_up.actions.rotate_api_key]\nstrength = \"password\"\nmax_age_secs = 0\n\
[mfa.step_up.actions.unlock_api_key]\nstrength = \"password\"\nmax_age_secs = 0\n\
[mfa.step_up.actions.change_api_key]\nstrength = \"password\"\nmax_age_secs = 0\n";

/// `application/x-www-form-urlencoded`, as a browser sends a form.
fn urlencoded(pairs: &[(&str, &str)]) -> String {
    let enc = |s: &str| {
        s.bytes()
            .map(|b| match b {
                b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'*' => (b as char).to_string(),
                b' ' => "+".into(),
                _ => format!("%{b:02X}"),
            })
            .collect::<String>()
    };
    pairs.iter().map(|(k, v)| format!("{}={}", enc(k), enc(v))).collect::<Vec<_>>().join("&")
}

fn events(history: &Value) -> Vec<String> {
    history["events"].as_array().unwrap().iter().map(|e| e["kind"].as_str().unwrap().to_owned()).collect()
}

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

on_both_backends!(every_page_flow_in_chromium, |backend| {
    let dir = scratch("pages");
    let sink = SmtpSink::start(&dir);
    // A password-only account, on a deployment whose operator lets the password re-entered
    // stand as the proof (the built-in policy asks for a second factor, and the risk engine
    // steps brand-new accounts up to one: both are exercised by `second_factors_in_chromium`).
    let srv = Server::start_with_config(backend, &sink, PASSWORD_STEP_UP, &[]).await;
    let email = format!("pat-{}@example.com", if backend == Backend::Sqlite { "lite" } else { "pg" });
    let shots = if backend == Backend::Sqlite { "sqlite" } else { "postgres" };
    let result = run_browser("pages.mjs", &srv, &sink, shots, &[("GH_EMAIL", &email), ("GH_PW", PW), ("GH_PW2", PW2)]);
    assert!(result["pages"].as_u64().unwrap() >= 15, "{result}");

    // The browser's password change took: the old password no longer signs in.
    let mut api = Device::new("verifier/1.0");
    assert_eq!(api.login(&srv, &email, PW).await.0, 401);
    assert_eq!(api.login(&srv, &email, PW2).await.0, 201);

    // The keys are as the pages left them: the first rotated (successor revoked by the page),
    // its predecessor narrowed to one address and unlocked for withdrawals.
    let (s, keys) = api.get(&srv.api("/api-keys")).await;
    assert_eq!(s, 200);
    let keys = keys["api_keys"].as_array().unwrap().clone();
    assert_eq!(keys.len(), 2, "{keys:?}");
    let first = keys.iter().find(|k| k["id"] == result["key_id"]).unwrap();
    assert_eq!(first["allowlist"], serde_json::json!(["203.0.113.7/32"]));
    assert_eq!(first["withdraw_locked"], false);
    assert_eq!(first["successor"], result["successor_id"]);
    let successor = keys.iter().find(|k| k["id"] == result["successor_id"]).unwrap();
    assert_eq!(successor["status"], "revoked");
    // The secret the page showed once is nowhere in the list.
    let secret = result["secret"].as_str().unwrap();
    assert!(secret.len() >= 40);
    assert!(!serde_json::to_string(&keys).unwrap().contains(secret));

    // Every action the pages took is in the audit log, through the API's own code path.
    let (_, history) = api.get(&srv.api("/account/security-history?limit=200")).await;
    let kinds = events(&history);
    for k in [
        "account_registered",
        "email_verified",
        "login_failed",
        "login_succeeded",
        "session_revoked",
        "password_change_failed",
        "password_changed",
        "api_key_created",
        "api_key_withdraw_unlocked",
        "api_key_allowlist_changed",
        "api_key_rotated",
        "api_key_revoked",
        "logout",
    ] {
        assert!(kinds.iter().any(|x| x == k), "{k} missing from {kinds:?}");
    }
    sink.wait_for(&email, "API key");
});

/// Second factors through the pages (risk engine on): enrol an authenticator app from its QR
/// page, backup codes shown once, a sensitive action with a code, the two-step sign-in with a
/// code and with a backup code, new backup codes; two security keys added, then removed through
/// the page (one without script and a code, one with the key as the step-up factor).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn second_factors_in_chromium() {
    let dir = scratch("pages-mfa");
    let sink = SmtpSink::start(&dir);
    // WebAuthn needs a domain for its RP ID: the browser uses `localhost`.
    let cfg =
        "[mfa.webauthn]\nrp_id = \"localhost\"\norigins = [\"http://localhost:8080\"]\ndanger_allow_any_port = true\n";
    let srv = Server::start_with_config(Backend::Sqlite, &sink, cfg, &[]).await;
    let email = "two@example.com";
    register_verified(&srv, &sink, email, PW).await;
    let base = srv.base.replace("127.0.0.1", "localhost");
    let env = [("GH_EMAIL", email), ("GH_PW", PW), ("GH_BASE_URL", base.as_str())];
    let result = run_browser("factors.mjs", &srv, &sink, "factors", &env);
    assert_eq!(result["pages"], 11, "{result}");

    // Through the API: a password alone no longer signs in, no security key is offered any
    // more (both were removed, each with its notice), the old backup codes are dead.
    let mut api = Device::new("verifier/1.0");
    let (s, body) = api.login(&srv, email, PW).await;
    assert_eq!((s, body["status"].as_str()), (200, Some("second_factor_required")), "{body}");
    assert_eq!(body["methods"], serde_json::json!(["totp", "backup_code"]), "{body}");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while sink.count_for(email, "second factor was removed") < 2 {
        assert!(std::time::Instant::now() < deadline, "two removal notices: {:?}", sink.messages());
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let (s, body) = api
        .post(
            &srv.api("/sessions/second-factor"),
            serde_json::json!({
                "pending_token": body["pending_token"], "method": "backup_code", "code": result["old_code"]
            }),
        )
        .await;
    assert_eq!(s, 401, "a code from the replaced set: {body}");
}

/// Account protection and recovery through the pages: anti-phishing code (seen in the next
/// mail), a withdrawal address pending then cancelled from the emailed link, the settings lock
/// (lock, unlock scheduled, cancelled), a password reset by email, a recovery request.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn protection_and_recovery_in_chromium() {
    let dir = scratch("pages-protection");
    let sink = SmtpSink::start(&dir);
    let cfg = format!(
        "{PASSWORD_STEP_UP}\
[mfa.step_up.actions.add_withdrawal_address]\nstrength = \"password\"\nmax_age_secs = 0\n\
[mfa.step_up.actions.lift_settings_lock]\nstrength = \"password\"\nmax_age_secs = 0\n\
[mfa.step_up.actions.change_factors]\nstrength = \"password\"\nmax_age_secs = 0\n"
    );
    let srv = Server::start_with_config(Backend::Sqlite, &sink, &cfg, &[]).await;
    let email = "guard@example.com";
    register_verified(&srv, &sink, email, PW).await;
    let env = [("GH_EMAIL", email), ("GH_PW", PW), ("GH_PW2", PW2)];
    let result = run_browser("protection.mjs", &srv, &sink, "protection", &env);
    assert_eq!(result["pages"], 9, "{result}");
    // The reset took: the new password signs in, the old one does not.
    let mut api = Device::new("verifier/1.0");
    assert_eq!(api.login(&srv, email, PW).await.0, 401);
    assert_eq!(api.login(&srv, email, PW2).await.0, 201);
    let (_, history) = api.get(&srv.api("/account/security-history?limit=200")).await;
    let kinds = events(&history);
    for k in
        ["anti_phishing_code_changed", "withdrawal_address_added", "withdrawal_address_cancelled", "settings_locked"]
    {
        assert!(kinds.iter().any(|x| x == k), "{k} missing from {kinds:?}");
    }
}

/// Passkeys through the pages (script from /_gh/assets/webauthn.js, DevTools virtual
/// authenticator): add one, use it as the second step, then sign in with it alone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn passkeys_in_chromium() {
    let dir = scratch("pages-passkeys");
    let sink = SmtpSink::start(&dir);
    // WebAuthn needs a domain for its RP ID (an IP address is not one): the browser uses
    // `localhost`, which chromium also treats as a secure context.
    let cfg =
        "[mfa.webauthn]\nrp_id = \"localhost\"\norigins = [\"http://localhost:8080\"]\ndanger_allow_any_port = true\n";
    let srv = Server::start_with_config(Backend::Sqlite, &sink, cfg, &[]).await;
    let email = "keys@example.com";
    register_verified(&srv, &sink, email, PW).await;
    let base = srv.base.replace("127.0.0.1", "localhost");
    let env = [("GH_EMAIL", email), ("GH_PW", PW), ("GH_BASE_URL", base.as_str())];
    let result = run_browser("passkeys.mjs", &srv, &sink, "passkeys", &env);
    assert_eq!(result["pages"], 5, "{result}");
    let mut api = Device::new("verifier/1.0");
    let (_, body) = api.login(&srv, email, PW).await;
    assert_eq!(body["methods"], serde_json::json!(["webauthn", "backup_code"]), "{body}");
}

/// A held sign-in (risk engine) confirmed from the emailed link in the browser.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn held_sign_in_confirmed_in_chromium() {
    let dir = scratch("pages-confirm");
    let sink = SmtpSink::start(&dir);
    let cfg = "[server]\ntrusted_proxies = [\"127.0.0.1/32\"]\n";
    let srv = Server::start_with_config(Backend::Sqlite, &sink, cfg, &[]).await;
    let email = "held@example.com";
    register_verified(&srv, &sink, email, PW).await;
    // A habit: the same client and network, sign-in after sign-in, an hour apart.
    let mut home = Device::new("Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0");
    for _ in 0..6 {
        let r = home
            .http
            .post(srv.api("/sessions"))
            .header("user-agent", &home.ua)
            .header("x-forwarded-for", "198.51.100.7")
            .header("gatehouse-device", home.device_id.clone().unwrap_or_default())
            .json(&serde_json::json!({ "email": email, "password": PW }))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 201);
        let body: Value = r.json().await.unwrap();
        home.device_id = body["device_id"].as_str().map(String::from);
        srv.advance(3_600_000).await;
    }
    let env = [("GH_EMAIL", email), ("GH_PW", PW), ("GH_FORWARDED_FOR", "192.0.2.55")];
    let result = run_browser("confirm.mjs", &srv, &sink, "confirm", &env);
    assert_eq!(result["pages"], 5);
    let mut api = Device::new("verifier/1.0");
    assert_eq!(api.login(&srv, email, PW).await.0, 201);
    let (_, history) = api.get(&srv.api("/account/security-history?limit=200")).await;
    assert!(events(&history).iter().any(|k| k == "sign_in_confirmed"), "{history}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn page_headers_csrf_and_redirects() {
    let dir = scratch("pages-rules");
    let sink = SmtpSink::start(&dir);
    let srv = Server::start(Backend::Sqlite, &sink, &[]).await;
    let email = "rules@example.com";
    register_verified(&srv, &sink, email, PW).await;
    let http = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap();

    // Every page carries the strict CSP (no inline script), no-store and the framing ban.
    for path in [
        "/_gh/login",
        "/_gh/register",
        "/_gh/official",
        "/_gh/check-url?url=https://x.example/",
        "/_gh/verify-email?token=abc",
    ] {
        let r = http.get(srv.url(path)).send().await.unwrap();
        assert_eq!(r.status(), 200, "{path}");
        let h = r.headers();
        let csp = h["content-security-policy"].to_str().unwrap();
        assert!(csp.contains("script-src 'self'") && !csp.contains("unsafe-inline"), "{path}: {csp}");
        assert!(csp.contains("frame-ancestors 'none'") && csp.contains("form-action 'self'"), "{csp}");
        assert_eq!(h["cache-control"], "no-store", "{path}");
        assert_eq!(h["x-content-type-options"], "nosniff");
        assert!(h["content-type"].to_str().unwrap().starts_with("text/html"));
        let html = r.text().await.unwrap();
        assert!(!html.contains("<script>") && !html.contains(" style="), "{path}: inline script or style");
        assert!(html.contains("href=\"/_gh/official\""), "{path}: footer links the official-channels page");
    }
    let css = http.get(srv.url("/_gh/assets/style.css")).send().await.unwrap();
    assert_eq!(
        (css.status().as_u16(), css.headers()["content-type"].to_str().unwrap()),
        (200, "text/css; charset=utf-8")
    );
    assert_eq!(http.get(srv.url("/_gh/assets/../Cargo.toml")).send().await.unwrap().status(), 404);

    // A cross-site form post is refused before any work: no login, no session, no cookie (R50).
    let form = [("email", email), ("password", PW)];
    let r = http
        .post(srv.url("/_gh/login"))
        .header("sec-fetch-site", "cross-site")
        .header("content-type", "application/x-www-form-urlencoded")
        .body(urlencoded(&form))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    assert!(r.headers().get("set-cookie").is_none());
    let r = http
        .post(srv.url("/_gh/login"))
        .header("origin", "https://evil.example")
        .header("content-type", "application/x-www-form-urlencoded")
        .body(urlencoded(&form))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    let r = http
        .post(srv.url("/_gh/register"))
        .header("sec-fetch-site", "cross-site")
        .header("content-type", "application/x-www-form-urlencoded")
        .body(urlencoded(&form))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);

    // A same-origin post signs in with __Host- cookies and a 303 to the security centre; a
    // next= outside our account pages is ignored (no open redirect).
    let form = [("email", email), ("password", PW), ("next", "https://evil.example/")];
    let r = http
        .post(srv.url("/_gh/login"))
        .header("sec-fetch-site", "same-origin")
        .header("content-type", "application/x-www-form-urlencoded")
        .body(urlencoded(&form))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 303);
    assert_eq!(r.headers()["location"], "/_gh/account/security");
    let cookies: Vec<String> = r
        .headers()
        .get_all("set-cookie")
        .iter()
        .map(|v| v.to_str().unwrap().split(';').next().unwrap().to_owned())
        .collect();
    assert_eq!(cookies.len(), 3, "{cookies:?}");
    assert!(cookies.iter().all(|c| c.starts_with("__Host-")));
    let jar = cookies.join("; ");

    // With the cookies, pages render; a cross-site post with them is refused (the API's rule).
    let r = http.get(srv.url("/_gh/account/devices")).header("cookie", &jar).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert!(r.text().await.unwrap().contains("this device"));
    let r = http
        .post(srv.url("/_gh/logout"))
        .header("cookie", &jar)
        .header("sec-fetch-site", "cross-site")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    let r = http.get(srv.url("/_gh/account/security")).header("cookie", &jar).send().await.unwrap();
    assert_eq!(r.status(), 200, "the cross-site logout did not sign out");

    // After the access token expires (10 min), a page refreshes the session through the API's
    // rotation and comes back; without cookies it sends you to sign in.
    srv.advance(11 * 60 * 1000).await;
    // (A browser sends Sec-Fetch-Site on navigations; the refresh applies the API's CSRF rule.)
    let r = http
        .get(srv.url("/_gh/account/history"))
        .header("cookie", &jar)
        .header("sec-fetch-site", "none")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 303);
    assert_eq!(r.headers()["location"], "/_gh/account/history");
    assert_eq!(r.headers().get_all("set-cookie").iter().count(), 3);
    let r = http.get(srv.url("/_gh/account/history")).send().await.unwrap();
    assert_eq!(r.status(), 303);
    assert_eq!(r.headers()["location"], "/_gh/login?next=/_gh/account/history");
}
