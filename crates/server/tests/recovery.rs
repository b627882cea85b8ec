//! End-to-end tests of recovery (issue 5) against the spawned binary, on SQLite and
//! PostgreSQL: the password-reset link (single use, ≤ 30 min, hold afterwards) and the
//! human-reviewed lost-factor case with its waiting period, cancel link and two different
//! reviewers for a high-value account. Reviewers sign in with a passkey (the software
//! authenticator of `common::softkey`): a password-only admin session is refused
//! (`admin_webauthn_required`, ADR 0012). Emails are read from the real SMTP sink.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::softkey::SoftKey;
use common::{Backend, Device, Server, SmtpSink, register_verified, scratch, token_from_mail};
use serde_json::{Value, json};

const PW: &str = "violet tram harbour 77";
const PW2: &str = "amber kite lantern 31";
const ADMIN_PW: &str = "granite orchid ferry 58";
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

async fn login(srv: &Server, email: &str, pw: &str) -> Device {
    let mut d = Device::new("recovery-client/1.0");
    let (s, b) = d.login(srv, email, pw).await;
    assert_eq!(s, 201, "{email}: {b}");
    d
}

/// Adds a passkey (software authenticator `seed`) to the admin `email` from a password
/// session, which it returns with the key: that session stays a password-only one.
async fn admin_passkey(srv: &Server, email: &str, seed: u8) -> (SoftKey, Device) {
    let pw_session = login(srv, email, ADMIN_PW).await;
    let mut key = SoftKey::for_default_origin(seed);
    key.register(srv, &pw_session, "admin passkey", ADMIN_PW).await;
    (key, pw_session)
}

fn code(b: &Value) -> Option<&str> {
    b["error"]["code"].as_str()
}

fn link_token(text: &str, action: &str) -> String {
    let marker = format!("action={action}&token=");
    let start = text.find(&marker).unwrap_or_else(|| panic!("no {action} link in {text}")) + marker.len();
    text[start..].chars().take_while(|c| c.is_ascii_alphanumeric() || *c == '-' || *c == '_').collect()
}

fn kinds(hist: &Value) -> Vec<String> {
    hist["events"].as_array().unwrap().iter().map(|e| e["kind"].as_str().unwrap().to_owned()).collect()
}

on_both_backends!(password_reset_link_is_single_use_short_lived_and_holds_withdrawals, |backend| {
    let dir = scratch("reset");
    let sink = SmtpSink::start(&dir);
    let srv = Server::start(backend, &sink, &[]).await;
    let email = "frank@example.com";
    register_verified(&srv, &sink, email, PW).await;
    let old = login(&srv, email, PW).await;

    // Known and unknown addresses get the same answer.
    let anon = Device::new("reset-client");
    let (s1, b1) = anon.post(&srv.api("/recovery/password-reset"), json!({ "email": email })).await;
    let (s2, b2) = anon.post(&srv.api("/recovery/password-reset"), json!({ "email": "nobody@example.com" })).await;
    assert_eq!((s1, &b1), (s2, &b2));
    assert_eq!(s1, 202);
    let mail = sink.wait_for(email, "Reset your password");
    let text = mail["text"].as_str().unwrap();
    assert!(text.contains("expires in 30 minutes"), "{text}");
    assert!(text.contains("does not remove your second factor"));
    assert!(mail["html"].as_str().unwrap().contains("Choose a new password"));
    let token = token_from_mail(&mail);
    // The emailed link opens a form; viewing it does not use the token.
    let page = reqwest::get(srv.url(&format!("/_gh/reset-password?token={token}"))).await.unwrap();
    assert_eq!(page.status(), 200);
    let html = common::layout_page(page).await;
    assert!(html.contains("name=\"new_password\"") && html.contains(&format!("value=\"{token}\"")), "{html}");

    // A weak password is refused without using the token up.
    let complete = srv.api("/recovery/password-reset/complete");
    let (s, b) = anon.post(&complete, json!({ "token": token, "new_password": "password1234" })).await;
    assert_eq!((s, b["error"]["code"].as_str()), (400, Some("weak_password")));
    let (s, b) = anon.post(&complete, json!({ "token": token, "new_password": PW2 })).await;
    assert_eq!(s, 200, "{b}");
    assert_eq!(b["second_factor_unchanged"], true);
    let (s, b) = anon.post(&complete, json!({ "token": token, "new_password": PW })).await;
    assert_eq!((s, b["error"]["code"].as_str()), (400, Some("invalid_token")), "single use");
    assert_eq!(old.get(&srv.api("/account")).await.0, 401, "every session ended");
    assert_eq!(Device::new("x").login(&srv, email, PW).await.0, 401);
    let a = login(&srv, email, PW2).await;
    let (_, me) = a.get(&srv.api("/account")).await;
    assert_eq!(me["friction"]["withdrawal_hold_reason"], "password_reset");
    assert!(me["friction"]["withdrawals_held_until"].is_string());
    sink.wait_for(email, "Your password was reset");

    // A link older than 30 minutes is dead.
    let (s, _) = anon.post(&srv.api("/recovery/password-reset"), json!({ "email": email })).await;
    assert_eq!(s, 202);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    let second = loop {
        let msgs: Vec<Value> = sink
            .messages()
            .into_iter()
            .filter(|m| m["subject"].as_str().is_some_and(|s| s.contains("Reset your password")))
            .collect();
        if msgs.len() >= 2 {
            break msgs[1].clone();
        }
        assert!(std::time::Instant::now() < deadline, "no second reset mail");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    };
    let token2 = token_from_mail(&second);
    srv.advance(30 * 60_000 + 1_000).await;
    let (s, b) = anon.post(&complete, json!({ "token": token2, "new_password": PW })).await;
    assert_eq!((s, b["error"]["code"].as_str()), (400, Some("invalid_token")));
    let a = login(&srv, email, PW2).await;
    let (_, hist) = a.get(&srv.api("/account/security-history?limit=200")).await;
    let k = kinds(&hist);
    assert!(
        k.contains(&"password_reset_requested".to_owned()) && k.contains(&"password_reset_completed".to_owned()),
        "{k:?}"
    );
});

on_both_backends!(lost_factor_case_waits_and_needs_two_different_reviewers_for_high_value, |backend| {
    let dir = scratch("case");
    let sink = SmtpSink::start(&dir);
    let srv = Server::start(backend, &sink, &[]).await;
    let user = "grace@example.com";
    let (r1, r2) = ("rev1@example.com", "rev2@example.com");
    for (e, pw) in [(user, PW), (r1, ADMIN_PW), (r2, ADMIN_PW)] {
        register_verified(&srv, &sink, e, pw).await;
    }
    for r in [r1, r2] {
        let out = srv.cli(&["admin", "grant", r], &srv.data_dir());
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    }
    // Before the account is flagged high-value: an authenticator app (the factor to be "lost")
    // and an API key made with it.
    let mut owner = login(&srv, user, PW).await;
    let mfa = common::mfa::enrol_totp(&srv, &owner, PW).await;
    let t = mfa.step_up(&srv, &mut owner, "create_api_key").await;
    let (s, key) =
        owner.post(&srv.api("/api-keys"), json!({ "step_up_token": t, "label": "bot", "kind": "hmac" })).await;
    assert_eq!((s, key["status"].as_str()), (201, Some("active")), "{key}");
    let out = srv.cli(&["admin", "high-value", user], &srv.data_dir());
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let out = srv.cli(&["admin", "grant", "nobody@example.com"], &srv.data_dir());
    assert!(!out.status.success());

    // The case: same answer for unknown addresses; the owner is told, with a cancel link.
    let anon = Device::new("recovery-form");
    let body = json!({ "email": user, "evidence": "I lost my phone; my ID card number ends in 1234." });
    let (s, b) = anon.post(&srv.api("/recovery/cases"), body).await;
    let (s2, b2) =
        anon.post(&srv.api("/recovery/cases"), json!({ "email": "nobody@example.com", "evidence": "x" })).await;
    assert_eq!((s, &b), (s2, &b2));
    assert_eq!(s, 202);
    let (s, b3) = anon.post(&srv.api("/recovery/cases"), json!({ "email": user, "evidence": "again" })).await;
    assert_eq!((s, &b3), (202, &b), "a second request answers the same…");
    let (s, b) = anon.post(&srv.api("/recovery/cases"), json!({ "email": user, "evidence": "" })).await;
    assert_eq!((s, b["error"]["code"].as_str()), (400, Some("invalid_request")));
    let notice = sink.wait_for(user, "Account recovery requested");
    assert!(notice["text"].as_str().unwrap().contains("action=cancel_recovery&token="));
    assert!(notice["text"].as_str().unwrap().contains("action=freeze&token="));

    // Only staff see the queue; the evidence is shown to them.
    let mut u = Device::new("recovery-client/1.0");
    assert_eq!(mfa.login(&srv, &mut u, user, PW).await.0, 201);
    let (s, b) = u.get(&srv.api("/admin/recovery")).await;
    assert_eq!((s, b["error"]["code"].as_str()), (403, Some("admin_required")));
    // …and only from a session signed in with WebAuthn: the session that added the passkey
    // was signed in with the password and stays refused, on every recovery endpoint.
    let (mut k1, a1_pw) = admin_passkey(&srv, r1, 1).await;
    let (mut k2, _) = admin_passkey(&srv, r2, 2).await;
    let (s, b) = a1_pw.get(&srv.api("/admin/recovery")).await;
    assert_eq!((s, code(&b)), (403, Some("admin_webauthn_required")), "{b}");
    let a1 = k1.sign_in(&srv, "reviewer-1").await;
    let (s, q) = a1.get(&srv.api("/admin/recovery")).await;
    assert_eq!(s, 200, "{q}");
    assert_eq!(q["cases"].as_array().unwrap().len(), 1, "…and opens no second case: {q}");
    let case = q["cases"][0].clone();
    assert_eq!(case["required_approvals"], 2, "high-value: two reviewers");
    let id = case["id"].as_str().unwrap().to_owned();
    let (_, full) = a1.get(&srv.api(&format!("/admin/recovery/{id}"))).await;
    assert!(full["evidence"].as_str().unwrap().contains("ends in 1234"));
    let approve = srv.api(&format!("/admin/recovery/{id}/approve"));
    let (s, b) = a1_pw.get(&srv.api(&format!("/admin/recovery/{id}"))).await;
    assert_eq!((s, code(&b)), (403, Some("admin_webauthn_required")), "{b}");
    for action in ["approve", "reject"] {
        let (s, b) =
            a1_pw.post(&srv.api(&format!("/admin/recovery/{id}/{action}")), json!({ "password": ADMIN_PW })).await;
        assert_eq!((s, code(&b)), (403, Some("admin_webauthn_required")), "{action}: {b}");
    }

    // Not before the waiting period.
    let (s, b) = a1.post(&approve, json!({ "password": ADMIN_PW })).await;
    assert_eq!((s, b["error"]["code"].as_str()), (409, Some("recovery_waiting")), "{b}");
    srv.advance(72 * HOUR + 60_000).await;
    let mut u = Device::new("recovery-client/1.0");
    assert_eq!(mfa.login(&srv, &mut u, user, PW).await.0, 201);
    let a1 = k1.sign_in(&srv, "reviewer-1").await;
    let a2 = k2.sign_in(&srv, "reviewer-2").await;
    let (s, b) = a1.post(&approve, json!({ "password": ADMIN_PW, "note": "ID checked" })).await;
    assert_eq!((s, b["status"].as_str()), (200, Some("awaiting_second_reviewer")), "{b}");
    let (s, b) = a1.post(&approve, json!({ "password": ADMIN_PW })).await;
    assert_eq!((s, b["error"]["code"].as_str()), (409, Some("reviewer_conflict")), "same reviewer twice");
    assert_eq!(u.get(&srv.api("/account")).await.0, 200, "nothing happened yet");
    let (s, b) = a2.post(&approve, json!({ "password": ADMIN_PW })).await;
    assert_eq!((s, b["status"].as_str()), (200, Some("executed")), "{b}");

    // Carried out: sessions revoked, withdrawals held 48 h, owner told.
    assert_eq!(u.get(&srv.api("/account")).await.0, 401);
    sink.wait_for(user, "Your account was recovered");
    // The lost factor is gone: the password alone signs in again (and the user is nudged).
    let u = login(&srv, user, PW).await;
    let (_, me) = u.get(&srv.api("/account")).await;
    assert_eq!(me["factors"]["has_second_factor"], false, "{me}");
    assert_eq!(me["friction"]["withdrawal_hold_reason"], "recovery");
    let (_, keys) = u.get(&srv.api("/api-keys")).await;
    assert_eq!(keys["api_keys"][0]["status"], "suspended", "{keys}");
    let (s, b) = u
        .post(&srv.api("/withdrawals"), json!({ "asset": "BTC", "amount": "0.1", "destination": "bc1qsomewhere0001" }))
        .await;
    assert_eq!((s, b["error"]["code"].as_str()), (403, Some("withdrawals_held")));
    let (s, b) = a2.post(&approve, json!({ "password": ADMIN_PW })).await;
    assert_eq!((s, b["error"]["code"].as_str()), (409, Some("recovery_closed")));
    let (_, hist) = u.get(&srv.api("/account/security-history?limit=200")).await;
    let k = kinds(&hist);
    for want in ["recovery_requested", "recovery_approved", "recovery_approval_refused", "recovery_executed"] {
        assert!(k.contains(&want.to_owned()), "missing {want} in {k:?}");
    }
    let out = srv.cli(&["audit", "verify"], &srv.data_dir());
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
});

on_both_backends!(a_case_cancelled_from_its_notice_cannot_be_approved, |backend| {
    let dir = scratch("case-cancel");
    let sink = SmtpSink::start(&dir);
    let srv = Server::start(backend, &sink, &[]).await;
    let (user, rev) = ("heidi@example.com", "rev@example.com");
    register_verified(&srv, &sink, user, PW).await;
    register_verified(&srv, &sink, rev, ADMIN_PW).await;
    assert!(srv.cli(&["admin", "grant", rev], &srv.data_dir()).status.success());
    let (mut key, _) = admin_passkey(&srv, rev, 3).await;
    let anon = Device::new("recovery-form");
    let (s, _) = anon.post(&srv.api("/recovery/cases"), json!({ "email": user, "evidence": "lost phone" })).await;
    assert_eq!(s, 202);
    let notice = sink.wait_for(user, "Account recovery requested");
    let cancel = link_token(notice["text"].as_str().unwrap(), "cancel_recovery");
    let (s, b) = anon.post(&srv.api("/links/redeem"), json!({ "token": cancel })).await;
    assert_eq!((s, b["action"].as_str(), b["changed"].as_bool()), (200, Some("cancel_recovery"), Some(true)));
    sink.wait_for(user, "Account recovery closed");
    srv.advance(73 * HOUR).await;
    let r = key.sign_in(&srv, "reviewer").await;
    let (_, q) = r.get(&srv.api("/admin/recovery?state=all")).await;
    let case = &q["cases"][0];
    assert_eq!((case["state"].as_str(), case["required_approvals"].as_i64()), (Some("cancelled"), Some(1)));
    let (s, b) = r
        .post(
            &srv.api(&format!("/admin/recovery/{}/approve", case["id"].as_str().unwrap())),
            json!({ "password": ADMIN_PW }),
        )
        .await;
    assert_eq!((s, b["error"]["code"].as_str()), (409, Some("recovery_closed")));
});
