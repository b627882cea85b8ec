//! Browser sessions bound to a non-extractable WebCrypto key (issue 9), in the Debian
//! chromium driven by `tests/browser/bound_session.mjs` (playwright-core): cookies copied into
//! another browser context are refused, the original context keeps working, and a copy used
//! with another key revokes the session.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::browser::{chromium, node_modules};

use std::process::Command;

use common::{Backend, Server, SmtpSink, register_verified, scratch, workspace};
use serde_json::{Value, json};

const PW: &str = "violet tram harbour 77";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn copied_cookies_are_useless_without_the_page_key() {
    let dir = scratch("bound-session");
    let sink = SmtpSink::start(&dir);
    // htu is signed with the public origin (the page passes it to the script); the access
    // cookie lives 3 s so the test can watch a copied one die (polled, no sleeps).
    let srv = Server::start(
        Backend::Sqlite,
        &sink,
        &[("GATEHOUSE_SERVER__PUBLIC_ORIGIN", "http://gh.test"), ("GATEHOUSE_SESSION__ACCESS_TTL_SECS", "3")],
    )
    .await;
    let email = "browser@example.com";
    register_verified(&srv, &sink, email, PW).await;
    // `localhost` is a secure context for chromium, so `__Host-` (Secure) cookies work over http.
    let base = srv.base.replace("127.0.0.1", "localhost");
    let out = Command::new("node")
        .arg(workspace().join("tests/browser/bound_session.mjs"))
        .args([&base, email, PW])
        .env("GH_CHROMIUM", chromium())
        .env("GH_BROWSER_NODE_MODULES", node_modules())
        .output()
        .expect("node runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    let v: Value = serde_json::from_str(stdout.lines().last().unwrap_or(""))
        .unwrap_or_else(|e| panic!("driver output is not JSON ({e}):\n{stdout}\n{stderr}\nserver log:\n{}", srv.log()));
    assert!(v.get("error").is_none(), "driver failed: {}\nserver log:\n{}", v["error"], srv.log());
    assert_eq!(v["script_loaded"], true, "{v}");

    // 1. Login through the script binds the cookie session to a non-extractable key.
    assert_eq!(v["login"]["status"], 201, "{v}");
    assert_eq!(v["login"]["body"]["cnf"]["jkt"].as_str().map(str::len), Some(43), "{v}");
    assert!(v["login"]["body"].get("access_token").is_none(), "browser tokens stay in cookies: {v}");
    assert_eq!(v["key_extractable"], json!({"extractable": false, "export": "refused"}), "{v}");
    assert_eq!(v["a_account"], 200, "{v}");
    assert_eq!(v["cookie_names"], json!(["__Host-gh_at", "__Host-gh_dev", "__Host-gh_rt"]), "{v}");

    // 2. The copied cookies in another context: no key, refresh refused.
    assert_eq!(v["b_has_key"], false, "{v}");
    assert_eq!(v["b_raw_refresh"]["status"], 400, "{v}");
    assert_eq!(v["b_raw_refresh"]["body"]["error"]["code"], "invalid_dpop_proof", "{v}");
    assert_eq!(v["b_script_refresh"]["reason"], "no_key", "{v}");
    assert_eq!(v["b_script_fetch"]["loginRequired"], true, "the page falls back to a full login: {v}");

    // 3. Once the access cookie expired, B is out and A refreshes with its key.
    assert_eq!(v["b_access_after_expiry"], 401, "{v}");
    assert_eq!(v["b_refresh_after_expiry"], 400, "{v}");
    assert_eq!(v["a_after_expiry"], json!({"status": 200, "email": email}), "{v}");
    assert_eq!(v["a_refresh"]["status"], 200, "{v}");

    // 4. B with a key of its own: invalid_grant and the session is revoked for everyone.
    assert_eq!(v["b_own_key_refresh"]["status"], 400, "{v}");
    assert_eq!(v["b_own_key_refresh"]["body"]["error"]["code"], "invalid_grant", "{v}");
    assert_eq!(v["a_after_revocation"]["refresh"], 400, "{v}");
    assert_eq!(v["a_after_revocation"]["fetch"], "login_required", "{v}");
    // After proof failures the risk engine holds the owner's next sign-in on an account without
    // a second factor until the emailed link confirms it (issue 6): never a silent session.
    let relogin = &v["a_relogin"];
    if relogin["status"] == 403 {
        assert_eq!(relogin["body"]["error"]["code"], "sign_in_confirmation_required", "{v}");
        sink.wait_for(email, "Confirm a sign-in from a new device");
    } else {
        assert_eq!(relogin["status"], 201, "{v}");
    }
    assert_eq!(v["console_errors"].as_array().map(Vec::len), Some(0), "CSP or script errors: {v}");
}
