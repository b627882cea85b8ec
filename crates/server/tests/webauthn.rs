//! WebAuthn end to end in headless Chromium with the DevTools virtual authenticator
//! (`tests/browser/webauthn.mjs`, playwright-core driving the Debian chromium), on SQLite and
//! PostgreSQL: register a passkey, finish a login with it, sign in with no password, step up
//! (phishing-resistant, user verification required), refuse an assertion without user
//! verification and an authenticator that cannot verify the user, flag a cloned credential
//! (sign counter regression), and remove a credential only after step-up.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::io::{BufRead, BufReader, Write};
use std::process::{Child, ChildStdin, Command, Stdio};

use common::{Backend, Device, Server, SmtpSink, register_verified, scratch, workspace};
use serde_json::{Value, json};

const PW: &str = "violet tram harbour 77";

const CONFIG: &str = r#"
[mfa.webauthn]
rp_id = "localhost"
origins = ["http://localhost:8080"]
danger_allow_any_port = true
"#;

/// The authenticator service: one Chromium with one virtual authenticator.
struct Browser {
    child: Child,
    stdin: ChildStdin,
    out: BufReader<std::process::ChildStdout>,
}

impl Browser {
    fn start(srv: &Server, has_uv: bool) -> Self {
        let origin = srv.base.replace("127.0.0.1", "localhost");
        let modules = std::env::var("GH_BROWSER_NODE_MODULES")
            .unwrap_or_else(|_| workspace().join("tests/browser/node_modules").display().to_string());
        let chromium = std::env::var("GH_CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into());
        assert!(std::path::Path::new(&chromium).exists(), "REQUIRED TOOL MISSING: chromium at {chromium}");
        assert!(
            std::path::Path::new(&modules).join("playwright-core").exists(),
            "REQUIRED TOOL MISSING: playwright-core — run `cd tests/browser && npm ci`"
        );
        let mut child = Command::new("node")
            .arg(workspace().join("tests/browser/webauthn.mjs"))
            .arg(&origin)
            .arg(has_uv.to_string())
            .env("GH_BROWSER_NODE_MODULES", &modules)
            .env("GH_CHROMIUM", &chromium)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("REQUIRED TOOL MISSING: node");
        let stdin = child.stdin.take().unwrap();
        let out = BufReader::new(child.stdout.take().unwrap());
        let mut b = Self { child, stdin, out };
        let ready = b.read();
        assert_eq!(ready["secure"], json!(true), "{ready}");
        assert_eq!(ready["origin"], json!(origin));
        b
    }

    fn read(&mut self) -> Value {
        let mut line = String::new();
        let n = self.out.read_line(&mut line).unwrap();
        assert!(n > 0, "browser driver exited");
        serde_json::from_str(&line).unwrap()
    }

    fn call(&mut self, cmd: Value) -> Value {
        writeln!(self.stdin, "{cmd}").unwrap();
        self.stdin.flush().unwrap();
        self.read()
    }

    fn create(&mut self, options: &Value) -> Value {
        let r = self.call(json!({ "op": "create", "options": options }));
        assert_eq!(r["ok"], json!(true), "{r}");
        r["credential"].clone()
    }

    fn get(&mut self, options: &Value, uv: Option<&str>) -> Value {
        self.call(json!({ "op": "get", "options": options, "uv": uv }))
    }

    fn screenshot(&mut self, name: &str) {
        let dir = workspace().join("test-artifacts");
        std::fs::create_dir_all(&dir).unwrap();
        let r = self.call(json!({ "op": "screenshot", "path": dir.join(name).display().to_string() }));
        assert_eq!(r["ok"], json!(true));
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = writeln!(self.stdin, "{}", json!({ "op": "quit" }));
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while std::time::Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Steps up with the security key for `action`; returns the answer of `/finish`.
/// `d` adopts the session's rotated access token on success (R43).
async fn step_up(srv: &Server, d: &mut Device, b: &mut Browser, action: &str, uv: Option<&str>) -> (u16, Value) {
    let (s, start) = d.post(&srv.api("/account/step-up/webauthn/start"), json!({ "action": action })).await;
    assert_eq!(s, 200, "{start}");
    assert_eq!(start["options"]["publicKey"]["userVerification"], json!("required"), "UV required (R35)");
    let got = b.get(&start["options"], uv);
    if got["ok"] != json!(true) {
        return (0, got);
    }
    d.step_up_post(
        &srv.api("/account/step-up/webauthn/finish"),
        json!({ "ceremony_id": start["ceremony_id"], "credential": got["credential"] }),
    )
    .await
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

on_both_backends!(passkeys_in_chromium, |backend| {
    let dir = scratch("webauthn");
    let sink = SmtpSink::start(&dir);
    let srv = Server::start_with_config(backend, &sink, CONFIG, &[]).await;
    let email = "wendy@example.com";
    register_verified(&srv, &sink, email, PW).await;
    let mut d = Device::new("python-requests/2.34.2");
    assert_eq!(d.login(&srv, email, PW).await.0, 201);
    let mut b = Browser::start(&srv, true);

    // Register a passkey (first factor: the password). Backup codes come with it.
    let (s, start) = d
        .post(
            &srv.api("/account/webauthn/register/start"),
            json!({ "name": "Laptop", "kind": "passkey", "password": PW }),
        )
        .await;
    assert_eq!(s, 200, "{start}");
    let pk = &start["options"]["publicKey"];
    assert_eq!(pk["rp"]["id"], json!("localhost"), "RP ID pinned in config (R34)");
    let handle = pk["user"]["id"].as_str().unwrap().to_owned();
    assert!(!handle.contains("wendy"), "opaque user handle (R33)");
    // R33: 64 random bytes (86 characters of unpadded base64url), no PII, the same for every
    // registration of the account.
    use base64::Engine as _;
    let raw = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(&handle).expect("base64url user handle");
    assert_eq!(raw.len(), 64, "{handle}");
    assert!(!raw.windows(5).any(|w| w == b"wendy"));
    let cred = b.create(&start["options"]);
    let (s, reg) = d
        .post(
            &srv.api("/account/webauthn/register/finish"),
            json!({ "ceremony_id": start["ceremony_id"], "credential": cred }),
        )
        .await;
    assert_eq!(s, 201, "{reg}");
    assert_eq!(reg["backup_codes"].as_array().unwrap().len(), 10);
    let cred_id = reg["id"].as_str().unwrap().to_owned();
    // The ceremony is single use.
    let (s, e) = d
        .post(
            &srv.api("/account/webauthn/register/finish"),
            json!({ "ceremony_id": start["ceremony_id"], "credential": cred }),
        )
        .await;
    assert_eq!((s, e["error"]["code"].as_str()), (400, Some("ceremony_invalid")));
    sink.wait_for(email, "second factor was added");
    b.screenshot("webauthn-registered.png");

    // Login: password, then the passkey; a new session (R43).
    let l = Device::new("python-requests/2.34.2");
    let (s, p) = l.post(&srv.api("/sessions"), json!({ "email": email, "password": PW })).await;
    assert_eq!((s, p["status"].as_str()), (200, Some("second_factor_required")), "{p}");
    assert_eq!(p["methods"], json!(["webauthn", "backup_code"]));
    let (s, st) = l
        .post(&srv.api("/sessions/second-factor/webauthn/start"), json!({ "pending_token": p["pending_token"] }))
        .await;
    assert_eq!(s, 200, "{st}");
    let got = b.get(&st["options"], None);
    assert_eq!(got["ok"], json!(true), "{got}");
    let fin = json!({ "pending_token": p["pending_token"], "ceremony_id": st["ceremony_id"], "credential": got["credential"] });
    let (s, body) = l.post(&srv.api("/sessions/second-factor/webauthn/finish"), fin.clone()).await;
    assert_eq!(s, 201, "{body}");
    assert_eq!(body["factors"], json!(["password", "webauthn"]));
    // Replaying the completed assertion: refused (the ceremony is gone, R29).
    let (s, _) = l.post(&srv.api("/sessions/second-factor/webauthn/finish"), fin).await;
    assert!(s == 400 || s == 401, "replayed assertion refused: {s}");

    // Passwordless sign-in with the passkey.
    let (s, st) = l.post(&srv.api("/sessions/passkey/start"), json!({})).await;
    assert_eq!(s, 200, "{st}");
    let got = b.get(&st["options"], None);
    assert_eq!(got["ok"], json!(true), "{got}");
    let (s, body) = l
        .post(
            &srv.api("/sessions/passkey/finish"),
            json!({ "ceremony_id": st["ceremony_id"], "credential": got["credential"] }),
        )
        .await;
    assert_eq!(s, 201, "{body}");
    assert_eq!(body["factors"], json!(["passkey"]));

    // Step-up with the passkey: phishing-resistant, accepted for an API key. It rotates the
    // session's access token (R43): the old value gets 401, the new one works.
    let stale = d.clone();
    let (s, t) = step_up(&srv, &mut d, &mut b, "create_api_key", None).await;
    assert_eq!((s, t["strength"].as_str()), (201, Some("phishing_resistant")), "{t}");
    assert_ne!(t["access_token"].as_str(), stale.access.as_deref(), "{t}");
    assert_eq!(stale.get(&srv.api("/account")).await.0, 401, "the pre-step-up token is dead");
    assert_eq!(d.get(&srv.api("/account")).await.0, 200);
    let (s, k) = d
        .post(&srv.api("/api-keys"), json!({ "label": "bot", "kind": "hmac", "step_up_token": t["step_up_token"] }))
        .await;
    assert_eq!(s, 201, "{k}");

    // The challenge commits to the action and binding: an assertion made for one withdrawal
    // intent does not finish the ceremony of another, and its token is for that action only.
    let (x, y) = ("ab".repeat(32), "cd".repeat(32));
    let (_, sa) =
        d.post(&srv.api("/account/step-up/webauthn/start"), json!({ "action": "withdraw", "binding": x })).await;
    let (_, sb) =
        d.post(&srv.api("/account/step-up/webauthn/start"), json!({ "action": "withdraw", "binding": y })).await;
    assert_ne!(sa["options"]["publicKey"]["challenge"], sb["options"]["publicKey"]["challenge"]);
    let got = b.get(&sa["options"], None);
    assert_eq!(got["ok"], json!(true), "{got}");
    let (s, e) = d
        .post(
            &srv.api("/account/step-up/webauthn/finish"),
            json!({ "ceremony_id": sb["ceremony_id"], "credential": got["credential"] }),
        )
        .await;
    assert_eq!((s, e["error"]["code"].as_str()), (401, Some("webauthn_failed")), "assertion for intent X on intent Y");
    let (s, t) = d
        .step_up_post(
            &srv.api("/account/step-up/webauthn/finish"),
            json!({ "ceremony_id": sa["ceremony_id"], "credential": got["credential"] }),
        )
        .await;
    assert_eq!(s, 201, "{t}");
    assert_eq!(t["action"], json!("withdraw"));
    let (s, e) = d
        .post(&srv.api("/api-keys"), json!({ "label": "x", "kind": "hmac", "step_up_token": t["step_up_token"] }))
        .await;
    assert_eq!((s, e["error"]["code"].as_str()), (403, Some("step_up_invalid")), "a withdraw token is not a key token");

    // No user verification: the browser cannot satisfy "required"; an assertion made with UV
    // discouraged (UV=0) is refused by the server (R30, R35).
    assert_eq!(b.call(json!({ "op": "set_uv", "value": false }))["ok"], json!(true));
    let (s, r) = step_up(&srv, &mut d, &mut b, "create_api_key", None).await;
    assert!(s == 0 || s == 401, "UV required but not performed: {s} {r}");
    let (s, e) = step_up(&srv, &mut d, &mut b, "create_api_key", Some("discouraged")).await;
    assert_eq!((s, e["error"]["code"].as_str()), (401, Some("webauthn_failed")), "{e}");
    assert_eq!(b.call(json!({ "op": "set_uv", "value": true }))["ok"], json!(true));

    // Removing a credential needs a step-up.
    let (s, e) = d.post(&srv.api("/account/webauthn/remove"), json!({ "id": cred_id })).await;
    assert_eq!((s, e["error"]["code"].as_str()), (403, Some("step_up_required")));

    // A cloned authenticator: the sign counter goes back; the credential is flagged (R31).
    let r = b.call(json!({ "op": "rewind_counter" }));
    assert_eq!(r["ok"], json!(true), "{r}");
    let (s, e) = step_up(&srv, &mut d, &mut b, "create_api_key", None).await;
    assert_eq!((s, e["error"]["code"].as_str()), (403, Some("credential_flagged")), "{e}");
    sink.wait_for(email, "may have been cloned");
    let (_, f) = d.get(&srv.api("/account/factors")).await;
    assert_eq!(f["webauthn"][0]["flagged"], json!(true), "{f}");
    let (_, h) = d.get(&srv.api("/account/security-history?limit=200")).await;
    let kinds: Vec<&str> = h["events"].as_array().unwrap().iter().map(|e| e["kind"].as_str().unwrap()).collect();
    for k in ["webauthn_registered", "webauthn_failed", "webauthn_clone_suspected", "step_up_succeeded"] {
        assert!(kinds.contains(&k), "{k} missing: {kinds:?}");
    }
    b.screenshot("webauthn-after-clone.png");

    // Remove it after a step-up with a backup code (the only factor left).
    let code = reg["backup_codes"][0].as_str().unwrap();
    let (s, t) = d
        .step_up_post(
            &srv.api("/account/step-up"),
            json!({ "action": "change_factors", "method": "backup_code", "code": code }),
        )
        .await;
    assert_eq!(s, 201, "{t}");
    let (s, r) = d
        .post(&srv.api("/account/webauthn/remove"), json!({ "id": cred_id, "step_up_token": t["step_up_token"] }))
        .await;
    assert_eq!(s, 200, "{r}");
    sink.wait_for(email, "second factor was removed");
    drop(b);

    // An authenticator that cannot verify the user cannot register (UV is required).
    let mut weak = Browser::start(&srv, false);
    let (s, start) =
        d.post(&srv.api("/account/webauthn/register/start"), json!({ "name": "No PIN", "password": PW })).await;
    assert_eq!(s, 200, "{start}");
    assert_eq!(start["options"]["publicKey"]["user"]["id"].as_str(), Some(handle.as_str()), "one handle per account");
    let r = weak.call(json!({ "op": "create", "options": start["options"] }));
    assert_eq!(r["ok"], json!(false), "a UV-less authenticator must not register: {r}");
    weak.screenshot("webauthn-no-uv.png");
});
