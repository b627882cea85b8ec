//! Changing the login email address (issues 4 and 5): step-up, a link to the new address and
//! a security notice to the current one; the link proves the new inbox, changes the address
//! and holds withdrawals; an edited or reused link, or an address another account took
//! meanwhile, changes nothing.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::{Backend, Device, SmtpSink, register_verified, scratch};
use serde_json::{Value, json};

const PW: &str = "violet tram harbour 77";

fn link_params(mail: &Value) -> (String, String) {
    let text = mail["text"].as_str().unwrap();
    let start = text.find("/confirm-email?").expect("confirmation link") + "/confirm-email?".len();
    let query: String = text[start..].chars().take_while(|c| !c.is_whitespace()).collect();
    let get = |k: &str| query.split('&').find_map(|p| p.strip_prefix(&format!("{k}="))).unwrap_or_default().to_owned();
    (get("token"), get("email"))
}

async fn run(backend: Backend) {
    let dir = scratch("email-change");
    let sink = SmtpSink::start(&dir);
    let srv = common::Server::start(backend, &sink, &[]).await;
    let (old, new, other) = ("erin@example.com", "erin.new@example.net", "frank@example.com");
    register_verified(&srv, &sink, old, PW).await;
    register_verified(&srv, &sink, other, PW).await;
    let mut d = Device::new("email-client/1.0");
    assert_eq!(d.login(&srv, old, PW).await.0, 201);

    // Without a second factor the change is refused (the nudge), then with a step-up it goes.
    let (s, b) = d.post(&srv.api("/account/email"), json!({ "new_email": new, "password": PW })).await;
    assert_eq!((s, b["error"]["code"].as_str()), (403, Some("second_factor_required")), "{b}");
    let mfa = common::mfa::enrol_totp(&srv, &d, PW).await;
    let (s, b) = d.post(&srv.api("/account/email"), json!({ "new_email": "not an address" })).await;
    assert_eq!((s, b["error"]["code"].as_str()), (400, Some("invalid_email")));
    let t = mfa.step_up(&srv, &mut d, "change_email").await;
    let (s, b) = d.post(&srv.api("/account/email"), json!({ "new_email": new, "step_up_token": t })).await;
    assert_eq!((s, b["status"].as_str()), (202, Some("confirmation_sent")), "{b}");

    // The current address is warned (with the freeze link); the new one gets the link.
    let warn = sink.wait_for(old, "A change of your email address was requested");
    assert!(warn["text"].as_str().unwrap().contains(new));
    assert!(warn["text"].as_str().unwrap().contains("action=freeze&token="), "{warn}");
    let mail = sink.wait_for(new, "Confirm your new email address");
    let (token, email) = link_params(&mail);
    assert_eq!(email, new);

    // An edited link is an invalid token; the page consumes nothing.
    let anon = Device::new("mail-reader/1.0");
    let (s, b) = anon.post(&srv.api("/account/email/confirm"), json!({ "token": token, "email": other })).await;
    assert_eq!((s, b["error"]["code"].as_str()), (400, Some("invalid_token")));
    let page = reqwest::get(srv.url(&format!("/_gh/confirm-email?token={token}&email={email}"))).await.unwrap();
    let html = common::layout_page(page).await;
    assert!(html.contains("Use this address") && html.contains(&format!("<strong>{email}</strong>")), "{html}");
    let (s, b) = anon.post(&srv.api("/account/email/confirm"), json!({ "token": token, "email": email })).await;
    assert_eq!((s, b["status"].as_str()), (200, Some("changed")), "{b}");
    let (s, _) = anon.post(&srv.api("/account/email/confirm"), json!({ "token": token, "email": email })).await;
    assert_eq!(s, 400, "the link works once");
    sink.wait_for(old, "Your email address was changed");
    sink.wait_for(new, "Your email address was changed");

    // The new address signs in; the old one is unknown; withdrawals are held; all audited.
    let mut again = Device::new("email-client/1.0");
    assert_eq!(mfa.login(&srv, &mut again, new, PW).await.0, 201);
    let mut stale = Device::new("email-client/1.0");
    assert_eq!(stale.login(&srv, old, PW).await.0, 401);
    let (_, me) = again.get(&srv.api("/account")).await;
    assert_eq!(me["email"], new);
    assert_eq!(me["friction"]["withdrawal_hold_reason"], "email_change", "{me}");
    let (_, hist) = again.get(&srv.api("/account/security-history?limit=200")).await;
    let kinds: Vec<&str> = hist["events"].as_array().unwrap().iter().filter_map(|e| e["kind"].as_str()).collect();
    assert!(kinds.contains(&"email_change_requested") && kinds.contains(&"email_changed"), "{kinds:?}");

    // An address another account holds is never taken over: 409 and the link stays unused.
    let t = mfa.step_up(&srv, &mut again, "change_email").await;
    let (s, _) = again.post(&srv.api("/account/email"), json!({ "new_email": other, "step_up_token": t })).await;
    assert_eq!(s, 202);
    let mail = sink.wait_for(other, "Confirm your new email address");
    let (token, email) = link_params(&mail);
    let (s, b) = anon.post(&srv.api("/account/email/confirm"), json!({ "token": token, "email": email })).await;
    assert_eq!((s, b["error"]["code"].as_str()), (409, Some("email_taken")), "{b}");
    let (_, me) = again.get(&srv.api("/account")).await;
    assert_eq!(me["email"], new);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite() {
    run(Backend::Sqlite).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres() {
    run(Backend::Postgres).await
}
