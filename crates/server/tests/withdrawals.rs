//! End-to-end tests of withdrawals (issue 5) against the spawned binary, on SQLite and
//! PostgreSQL: address book with activation delay and cancel link, transaction-bound
//! confirmation, exactly-once delivery to a back end that fails the first time, daily limits,
//! the hold after a security change, allowlist-only mode, the settings lock, the freeze link,
//! and the anti-phishing decoration of every email (read from the real SMTP sink).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::{Request, State};
use axum::http::StatusCode;
use common::{Backend, Device, Server, SmtpSink, register_verified, scratch};
use gatehouse_core::clock::Timestamp;
use gatehouse_core::secret::SecretBytes;
use serde_json::{Value, json};

const PW: &str = "violet tram harbour 77";
const PW2: &str = "amber kite lantern 31";
const SECRET: &str = "0123456789abcdef0123456789abcdef-upstream";
const GOOD: &str = "bc1qgoodaddress00000001";
const CODE: &str = "blue heron 42";
const HOUR: i64 = 3_600_000;

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

/// One delivery as the back end saw it.
#[derive(Debug, Clone)]
struct Delivery {
    key: String,
    signature: String,
    body: String,
    answered: u16,
}

/// A local exchange back end that answers 500 to the very first delivery, 200 afterwards.
#[derive(Clone, Default)]
struct Receiver {
    seen: Arc<Mutex<Vec<Delivery>>>,
}

async fn receive(State(r): State<Receiver>, req: Request) -> StatusCode {
    let (parts, body) = req.into_parts();
    let body = axum::body::to_bytes(body, 1 << 20).await.unwrap_or_default();
    let h = |n: &str| parts.headers.get(n).and_then(|v| v.to_str().ok()).unwrap_or("").to_owned();
    let mut seen = r.seen.lock().unwrap();
    let status = if seen.is_empty() { 500 } else { 200 };
    seen.push(Delivery {
        key: h("idempotency-key"),
        signature: h("x-gatehouse-signature"),
        body: String::from_utf8_lossy(&body).into_owned(),
        answered: status,
    });
    StatusCode::from_u16(status).unwrap()
}

impl Receiver {
    async fn start() -> (Self, String) {
        let r = Self::default();
        let app = axum::Router::new().fallback(receive).with_state(r.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/withdrawals", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await });
        (r, url)
    }

    fn seen(&self) -> Vec<Delivery> {
        self.seen.lock().unwrap().clone()
    }
}

/// The step-up policy of an operator who lets the password re-entered authorise these actions,
/// with the risk engine off (on a fresh profile it would raise every one of them to a second
/// factor, see `stepup::require`): the withdrawal rules are under test here, the second factors
/// in `mfa.rs` and `webauthn.rs` (including a WebAuthn step-up bound to one withdrawal intent).
const PASSWORD_POLICY: &str = "[risk]\nenabled = false\n\n[mfa.step_up.actions.withdraw]\nstrength = \"password\"\nmax_age_secs = 0\n\
    [mfa.step_up.actions.add_withdrawal_address]\nstrength = \"password\"\nmax_age_secs = 0\n\
    [mfa.step_up.actions.change_password]\nstrength = \"password\"\nmax_age_secs = 0\n\
    [mfa.step_up.actions.create_api_key]\nstrength = \"password\"\nmax_age_secs = 0\n\
    [mfa.step_up.actions.lift_settings_lock]\nstrength = \"password\"\nmax_age_secs = 0\n\
    [mfa.step_up.actions.change_factors]\nstrength = \"password\"\nmax_age_secs = 0\n";

fn config(upstream: &str) -> String {
    format!(
        "[friction]\nupstream_url = \"{upstream}\"\nupstream_secret = \"{SECRET}\"\ndelivery_retry_secs = 1\n\n\
         [friction.assets.BTC]\ndaily_limit = \"2\"\nphishing_resistant_above = \"1\"\n\n{PASSWORD_POLICY}"
    )
}

fn link_token(text: &str, action: &str) -> String {
    let marker = format!("action={action}&token=");
    let start = text.find(&marker).unwrap_or_else(|| panic!("no {action} link in {text}")) + marker.len();
    text[start..].chars().take_while(|c| c.is_ascii_alphanumeric() || *c == '-' || *c == '_').collect()
}

/// Every mail carries the code (text and HTML), the official-channels link, and security
/// notices carry a freeze link.
fn assert_decorated(mail: &Value, code: &str, security: bool) {
    let text = mail["text"].as_str().unwrap();
    let html = mail["html"].as_str().unwrap();
    let line = if code.is_empty() {
        "You have not chosen an anti-phishing code yet".to_owned()
    } else {
        format!("Your anti-phishing code: {code}")
    };
    assert!(text.contains(&line), "{text}");
    assert!(html.contains(&line), "{html}");
    assert!(text.contains("/_gh/official") && html.contains("/_gh/official"));
    assert_eq!(text.contains("action=freeze&token="), security, "{text}");
    if security {
        assert!(html.contains("Freeze my account now"), "{html}");
    }
}

async fn login(srv: &Server, email: &str, pw: &str) -> Device {
    let mut d = Device::new("withdrawal-client/1.0");
    let (s, b) = d.login(srv, email, pw).await;
    assert_eq!(s, 201, "{b}");
    d
}

async fn wait_until<F: Fn(&[Delivery]) -> bool>(r: &Receiver, what: &str, f: F) -> Vec<Delivery> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let seen = r.seen();
        if f(&seen) {
            return seen;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}: {seen:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

on_both_backends!(address_book_confirmation_exactly_once_limits_and_holds, |backend| {
    let dir = scratch("withdraw");
    let sink = SmtpSink::start(&dir);
    let (receiver, upstream) = Receiver::start().await;
    let srv = Server::start_with_config(backend, &sink, &config(&upstream), &[]).await;
    let email = "alice@example.com";
    register_verified(&srv, &sink, email, PW).await;
    let a = login(&srv, email, PW).await;

    // The anti-phishing code is a security setting: step-up required, then shown in mail.
    let (s, b) = a.post(&srv.api("/account/anti-phishing-code"), json!({ "code": CODE })).await;
    assert_eq!((s, b["error"]["code"].as_str()), (403, Some("reauth_required")));
    let (s, b) = a.post(&srv.api("/account/anti-phishing-code"), json!({ "code": "<a href=x>", "password": PW })).await;
    assert_eq!((s, b["error"]["code"].as_str()), (400, Some("invalid_request")));
    let (s, _) = a.post(&srv.api("/account/anti-phishing-code"), json!({ "code": CODE, "password": PW })).await;
    assert_eq!(s, 200);
    assert_decorated(&sink.wait_for(email, "anti-phishing code was changed"), CODE, true);

    // Adding an address needs step-up; it starts pending, announced with a cancel link.
    let add = json!({ "asset": "BTC", "address": GOOD, "label": "cold wallet" });
    let (s, b) = a.post(&srv.api("/withdrawal-addresses"), add.clone()).await;
    assert_eq!((s, b["error"]["code"].as_str()), (403, Some("reauth_required")));
    let mut with_pw = add.clone();
    with_pw["password"] = json!(PW);
    let (s, entry) = a.post(&srv.api("/withdrawal-addresses"), with_pw.clone()).await;
    assert_eq!((s, entry["state"].as_str()), (201, Some("pending")), "{entry}");
    let notice = sink.wait_for(email, "A withdrawal address was added");
    assert_decorated(&notice, CODE, true);
    assert!(notice["text"].as_str().unwrap().contains(GOOD));
    assert!(notice["text"].as_str().unwrap().contains("action=cancel_address&token="));

    // Refused to the unactivated address, with the activation time.
    let w = |amount: &str, to: &str| json!({ "asset": "BTC", "amount": amount, "destination": to });
    let (s, b) = a.post(&srv.api("/withdrawals"), w("0.5", GOOD)).await;
    assert_eq!((s, b["error"]["code"].as_str()), (403, Some("address_not_active")), "{b}");
    assert_eq!(b["error"]["details"]["active_at"], entry["active_at"]);
    let (s, b) = a.post(&srv.api("/withdrawals"), w("0.5e1", GOOD)).await;
    assert_eq!((s, b["error"]["code"].as_str()), (400, Some("invalid_withdrawal")));
    let (s, b) = a.post(&srv.api("/withdrawals"), json!({ "asset": "DOGE", "amount": "1", "destination": GOOD })).await;
    assert_eq!((s, b["error"]["code"].as_str()), (400, Some("invalid_withdrawal")));

    // After the activation delay it is usable.
    srv.advance(24 * HOUR + 60_000).await;
    let a = login(&srv, email, PW).await;
    let (s, intent) = a.post(&srv.api("/withdrawals"), w("0.5", GOOD)).await;
    assert_eq!(s, 201, "{intent}");
    assert_eq!(intent["state"], "pending");
    assert_eq!(intent["intent"]["amount"], "0.5");
    assert_eq!(intent["intent"]["destination"], GOOD);
    assert_eq!(intent["intent"]["label"], "cold wallet");
    assert_eq!(intent["required_step_up"], "password");
    let id = intent["id"].as_str().unwrap().to_owned();
    let hash = intent["intent_hash"].as_str().unwrap().to_owned();
    // The hash is the SHA-256 of exactly the canonical JSON shown.
    let canonical = intent["intent_canonical"].as_str().unwrap();
    assert_eq!(hex::encode(gatehouse_core::withdrawal::hash_canonical(canonical)), hash);

    // Confirmation commits to the shown hash and needs step-up.
    let confirm = srv.api(&format!("/withdrawals/{id}/confirm"));
    let (s, b) = a.post(&confirm, json!({ "intent_hash": "00".repeat(32), "password": PW })).await;
    assert_eq!((s, b["error"]["code"].as_str()), (409, Some("intent_mismatch")));
    let (s, b) = a.post(&confirm, json!({ "intent_hash": hash })).await;
    assert_eq!((s, b["error"]["code"].as_str()), (403, Some("reauth_required")));
    assert!(receiver.seen().is_empty(), "nothing is delivered before confirmation");
    let (s, b) = a.post(&confirm, json!({ "intent_hash": hash, "password": PW })).await;
    assert_eq!((s, b["status"].as_str()), (200, Some("confirmed")), "{b}");
    assert_decorated(&sink.wait_for(email, "Withdrawal confirmed"), CODE, true);

    // The back end fails the first delivery; the retry carries the same idempotency key and
    // is acknowledged; the intent shows it delivered.
    let seen = wait_until(&receiver, "a retried delivery", |s| s.len() >= 2).await;
    assert_eq!((seen[0].answered, seen[1].answered), (500, 200));
    assert_eq!((seen[0].key.as_str(), seen[1].key.as_str()), (id.as_str(), id.as_str()));
    let body: Value = serde_json::from_str(&seen[1].body).unwrap();
    assert_eq!(body["intent_hash"], hash.as_str());
    assert_eq!(body["intent"]["amount"], "0.5");
    let t: i64 = seen[1].signature.strip_prefix("t=").unwrap().split(',').next().unwrap().parse().unwrap();
    let expected = gatehouse_server::notify::signature(
        &SecretBytes::new(SECRET.as_bytes().to_vec()),
        &id,
        Timestamp::from_millis(t),
        &seen[1].body,
    );
    assert_eq!(seen[1].signature, expected, "the delivery is signed");
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let (_, got) = a.get(&srv.api(&format!("/withdrawals/{id}"))).await;
        if got["delivered_at"].is_string() {
            break;
        }
        assert!(Instant::now() < deadline, "never marked delivered: {got}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Confirming again changes nothing.
    let (s, b) = a.post(&confirm, json!({ "intent_hash": hash, "password": PW })).await;
    assert_eq!((s, b["status"].as_str()), (200, Some("already_confirmed")));

    // Above the phishing-resistant threshold a password proof is too weak.
    let (s, big) = a.post(&srv.api("/withdrawals"), w("1.5", GOOD)).await;
    assert_eq!((s, big["required_step_up"].as_str()), (201, Some("phishing_resistant")), "{big}");
    let (s, b) = a
        .post(
            &srv.api(&format!("/withdrawals/{}/confirm", big["id"].as_str().unwrap())),
            json!({ "intent_hash": big["intent_hash"], "password": PW }),
        )
        .await;
    assert_eq!((s, b["error"]["code"].as_str()), (403, Some("step_up_too_weak")), "{b}");
    // The daily limit counts what was confirmed (0.5 of 2).
    let (s, b) = a.post(&srv.api("/withdrawals"), w("1.50000001", GOOD)).await;
    assert_eq!((s, b["error"]["code"].as_str()), (403, Some("daily_limit_exceeded")), "{b}");

    // A second withdrawal (to an address outside the book: allowed unless allowlist-only) is
    // delivered at the first attempt; the first one was acknowledged exactly once.
    let other = "bc1qotheraddress0000002";
    let (s, second) = a.post(&srv.api("/withdrawals"), w("0.25", other)).await;
    assert_eq!(s, 201, "{second}");
    let id2 = second["id"].as_str().unwrap().to_owned();
    // Two confirmations at once (R78): exactly one performs it.
    let url2 = srv.api(&format!("/withdrawals/{id2}/confirm"));
    let body2 = json!({ "intent_hash": second["intent_hash"], "password": PW });
    let (r1, r2) = tokio::join!(a.post(&url2, body2.clone()), a.post(&url2, body2.clone()));
    assert_eq!((r1.0, r2.0), (200, 200), "{r1:?} {r2:?}");
    let mut statuses = [r1.1["status"].as_str().unwrap(), r2.1["status"].as_str().unwrap()];
    statuses.sort_unstable();
    assert_eq!(statuses, ["already_confirmed", "confirmed"]);
    let seen = wait_until(&receiver, "the second delivery", |s| s.iter().any(|d| d.key == id2)).await;
    let acked_first = seen.iter().filter(|d| d.key == id && d.answered == 200).count();
    assert_eq!(acked_first, 1, "{seen:?}");
    assert_eq!(seen.iter().filter(|d| d.key == id).count(), 2);
    assert_eq!(seen.iter().filter(|d| d.key == id2).count(), 1);
    let deadline = Instant::now() + Duration::from_secs(20);
    while sink.count_for(email, "Withdrawal confirmed") < 2 {
        assert!(Instant::now() < deadline, "no notice for the second withdrawal");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(sink.count_for(email, "Withdrawal confirmed"), 2, "one notice per confirmed withdrawal");

    // Allowlist-only mode refuses destinations outside the book.
    let (s, _) = a.post(&srv.api("/withdrawal-settings"), json!({ "allowlist_only": true })).await;
    assert_eq!(s, 200);
    let (s, b) = a.post(&srv.api("/withdrawals"), w("0.1", other)).await;
    assert_eq!((s, b["error"]["code"].as_str()), (403, Some("address_not_allowlisted")));
    let (s, b) = a.post(&srv.api("/withdrawal-settings"), json!({ "allowlist_only": false })).await;
    assert_eq!((s, b["error"]["code"].as_str()), (403, Some("reauth_required")), "turning it off needs step-up");

    // Hold after a security change: a password change holds withdrawals for 24 h, visibly.
    let (s, _) = a.post(&srv.api("/account/password"), json!({ "current_password": PW, "new_password": PW2 })).await;
    assert_eq!(s, 200);
    let (_, me) = a.get(&srv.api("/account")).await;
    let held_until = me["friction"]["withdrawals_held_until"].as_str().expect("hold visible").to_owned();
    assert_eq!(me["friction"]["withdrawal_hold_reason"], "password_change");
    let (s, b) = a.post(&srv.api("/withdrawals"), w("0.1", GOOD)).await;
    assert_eq!((s, b["error"]["code"].as_str()), (403, Some("withdrawals_held")));
    assert_eq!(b["error"]["details"]["held_until"].as_str(), Some(held_until.as_str()));
    srv.advance(24 * HOUR - 120_000).await;
    let a = login(&srv, email, PW2).await;
    let (s, b) = a.post(&srv.api("/withdrawals"), w("0.1", GOOD)).await;
    assert_eq!((s, b["error"]["code"].as_str()), (403, Some("withdrawals_held")), "still held at 23h58m");
    srv.advance(180_000).await;
    let a = login(&srv, email, PW2).await;
    let (s, b) = a.post(&srv.api("/withdrawals"), w("0.1", GOOD)).await;
    assert_eq!(s, 201, "the hold ended: {b}");

    // A new API key with withdraw scope holds withdrawals too.
    let (s, key) = a
        .post(
            &srv.api("/api-keys"),
            json!({ "password": PW2, "label": "bot", "kind": "hmac", "scopes": ["view_assets", "withdraw"], "allowlist": ["203.0.113.7/32"] }),
        )
        .await;
    assert_eq!(s, 201, "{key}");
    let (s, b) = a.post(&srv.api("/withdrawals"), w("0.1", GOOD)).await;
    assert_eq!((s, b["error"]["code"].as_str()), (403, Some("withdrawals_held")));

    // The security history tells the story.
    let (_, hist) = a.get(&srv.api("/account/security-history?limit=200")).await;
    let kinds: Vec<&str> = hist["events"].as_array().unwrap().iter().map(|e| e["kind"].as_str().unwrap()).collect();
    for k in [
        "anti_phishing_code_changed",
        "withdrawal_address_added",
        "withdrawal_intent_created",
        "withdrawal_confirmed",
        "withdrawal_delivered",
        "withdrawal_refused",
        "withdrawal_allowlist_mode_changed",
    ] {
        assert!(kinds.contains(&k), "missing {k} in {kinds:?}");
    }
    let out = srv.cli(&["audit", "verify"], &srv.data_dir());
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
});

on_both_backends!(settings_lock_cancel_links_and_one_click_freeze, |backend| {
    let dir = scratch("lock");
    let sink = SmtpSink::start(&dir);
    let srv = Server::start_with_config(backend, &sink, PASSWORD_POLICY, &[]).await;
    let email = "dora@example.com";
    register_verified(&srv, &sink, email, PW).await;
    let a = login(&srv, email, PW).await;
    // No code chosen yet: every mail says so instead.
    let verify = sink.wait_for(email, "Verify your email");
    assert!(verify["text"].as_str().unwrap().contains("You have not chosen an anti-phishing code yet"));
    assert!(!verify["text"].as_str().unwrap().contains("action=freeze"), "not a security notice");

    // Lock: security settings are refused with settings_locked.
    let (s, b) = a.post(&srv.api("/account/settings-lock"), json!({})).await;
    assert_eq!((s, b["locked"].as_bool()), (200, Some(true)), "{b}");
    sink.wait_for(email, "security settings are locked");
    let (s, b) = a.post(&srv.api("/account/password"), json!({ "current_password": PW, "new_password": PW2 })).await;
    assert_eq!((s, b["error"]["code"].as_str()), (403, Some("settings_locked")));
    let (s, b) = a
        .post(
            &srv.api("/withdrawal-addresses"),
            json!({ "asset": "BTC", "address": GOOD, "label": "x", "password": PW }),
        )
        .await;
    assert_eq!((s, b["error"]["code"].as_str()), (403, Some("settings_locked")));
    let (s, b) = a.post(&srv.api("/api-keys"), json!({ "password": PW, "label": "k", "kind": "hmac" })).await;
    assert_eq!((s, b["error"]["code"].as_str()), (403, Some("settings_locked")));

    // Unlocking needs step-up, waits 3 days, is announced with a cancel link that works once.
    let (s, b) = a.post(&srv.api("/account/settings-lock/unlock"), json!({})).await;
    assert_eq!((s, b["error"]["code"].as_str()), (403, Some("reauth_required")));
    let (s, b) = a.post(&srv.api("/account/settings-lock/unlock"), json!({ "password": PW })).await;
    assert_eq!((s, b["locked"].as_bool()), (200, Some(true)));
    assert!(b["unlock_at"].is_string(), "{b}");
    let notice = sink.wait_for(email, "will be unlocked");
    assert_decorated(&notice, "", true);
    let cancel = link_token(notice["text"].as_str().unwrap(), "cancel_settings_unlock");
    let anon = Device::new("mail-client");
    let (s, b) = anon.post(&srv.api("/links/redeem"), json!({ "token": cancel })).await;
    assert_eq!((s, b["action"].as_str(), b["changed"].as_bool()), (200, Some("cancel_settings_unlock"), Some(true)));
    let (s, b) = anon.post(&srv.api("/links/redeem"), json!({ "token": cancel })).await;
    assert_eq!((s, b["error"]["code"].as_str()), (400, Some("invalid_token")), "single use");
    let (_, st) = a.get(&srv.api("/account/settings-lock")).await;
    assert_eq!((st["locked"].as_bool(), st["unlock_at"].is_null()), (Some(true), true));

    // Request again and let the delay pass: settings are open again.
    let (s, _) = a.post(&srv.api("/account/settings-lock/unlock"), json!({ "password": PW })).await;
    assert_eq!(s, 200);
    srv.advance(3 * 24 * HOUR - 60_000).await;
    let a = login(&srv, email, PW).await;
    let (s, b) = a.post(&srv.api("/account/password"), json!({ "current_password": PW, "new_password": PW2 })).await;
    assert_eq!((s, b["error"]["code"].as_str()), (403, Some("settings_locked")), "one minute early");
    srv.advance(120_000).await;
    let a = login(&srv, email, PW).await;
    let (s, _) = a.post(&srv.api("/account/password"), json!({ "current_password": PW, "new_password": PW2 })).await;
    assert_eq!(s, 200);

    // The freeze link in that security notice: one click signs everyone out and blocks
    // withdrawals.
    let notice = sink.wait_for(email, "Your password was changed");
    assert_decorated(&notice, "", true);
    let freeze = link_token(notice["text"].as_str().unwrap(), "freeze");
    let page = reqwest::get(srv.url(&format!("/_gh/link?action=freeze&token={freeze}"))).await.unwrap();
    assert_eq!(page.status(), 200);
    let html = common::layout_page(page).await;
    assert!(html.contains("Freeze my account now") && html.contains(&format!("value=\"{freeze}\"")), "{html}");
    assert_eq!(a.get(&srv.api("/account")).await.0, 200, "viewing the link page changes nothing");
    let (s, b) = anon.post(&srv.api("/links/redeem"), json!({ "token": freeze })).await;
    assert_eq!((s, b["action"].as_str()), (200, Some("freeze")), "{b}");
    assert_eq!(a.get(&srv.api("/account")).await.0, 401, "sessions revoked");
    sink.wait_for(email, "Your account is frozen");
    let a = login(&srv, email, PW2).await;
    let (_, me) = a.get(&srv.api("/account")).await;
    assert_eq!(me["friction"]["frozen"], true);
    let (s, b) =
        a.post(&srv.api("/withdrawals"), json!({ "asset": "BTC", "amount": "0.1", "destination": GOOD })).await;
    assert_eq!((s, b["error"]["code"].as_str()), (403, Some("account_frozen")));
    let (_, hist) = a.get(&srv.api("/account/security-history?limit=200")).await;
    let kinds: Vec<&str> = hist["events"].as_array().unwrap().iter().map(|e| e["kind"].as_str().unwrap()).collect();
    for k in [
        "settings_locked",
        "settings_change_refused",
        "settings_unlock_requested",
        "settings_unlock_cancelled",
        "account_frozen",
    ] {
        assert!(kinds.contains(&k), "missing {k} in {kinds:?}");
    }
});

on_both_backends!(an_address_cancelled_from_its_notice_never_receives_funds, |backend| {
    let dir = scratch("cancel-addr");
    let sink = SmtpSink::start(&dir);
    let srv = Server::start_with_config(backend, &sink, PASSWORD_POLICY, &[]).await;
    let email = "erin@example.com";
    register_verified(&srv, &sink, email, PW).await;
    let a = login(&srv, email, PW).await;
    let (s, _) = a
        .post(
            &srv.api("/withdrawal-addresses"),
            json!({ "asset": "BTC", "address": GOOD, "label": "x", "password": PW }),
        )
        .await;
    assert_eq!(s, 201);
    let notice = sink.wait_for(email, "A withdrawal address was added");
    let cancel = link_token(notice["text"].as_str().unwrap(), "cancel_address");
    let (s, b) = Device::new("m").post(&srv.api("/links/redeem"), json!({ "token": cancel })).await;
    assert_eq!((s, b["changed"].as_bool()), (200, Some(true)));
    srv.advance(25 * HOUR).await;
    let a = login(&srv, email, PW).await;
    let (_, list) = a.get(&srv.api("/withdrawal-addresses")).await;
    assert_eq!(list["addresses"][0]["state"], "cancelled");
    let (s, b) =
        a.post(&srv.api("/withdrawals"), json!({ "asset": "BTC", "amount": "0.1", "destination": GOOD })).await;
    assert_eq!((s, b["error"]["code"].as_str()), (403, Some("address_not_allowlisted")));
});
