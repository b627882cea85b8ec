//! The risk engine at sign-in (issue 6): an operator denylist refuses a correct password; an
//! unfamiliar device and network on an account without a second factor is held until the
//! owner follows the emailed confirmation link, after which the same device signs in; every
//! decision is in the owner's security history with its reasons.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::{Backend, Device, Server, SmtpSink, register_verified, scratch};
use serde_json::{Value, json};

const PW: &str = "violet tram harbour 77";
const HOME_UA: &str = "Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0";
const HOME_IP: &str = "198.51.100.7";

async fn login_from(d: &mut Device, srv: &Server, ip: &str, email: &str, password: &str) -> (u16, Value) {
    let r = d
        .http
        .post(srv.api("/sessions"))
        .header("user-agent", &d.ua)
        .header("x-forwarded-for", ip)
        .header("gatehouse-device", d.device_id.clone().unwrap_or_default())
        .json(&json!({ "email": email, "password": password }))
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    let body: Value = r.json().await.unwrap();
    if status == 201 {
        d.access = body["access_token"].as_str().map(String::from);
        d.refresh = body["refresh_token"].as_str().map(String::from);
        d.device_id = body["device_id"].as_str().map(String::from);
    }
    (status, body)
}

fn link_params(mail: &Value) -> Value {
    let text = mail["text"].as_str().unwrap();
    let start = text.find("/confirm-sign-in?").expect("confirmation link") + "/confirm-sign-in?".len();
    let query: String = text[start..].chars().take_while(|c| !c.is_whitespace()).collect();
    let mut out = serde_json::Map::new();
    for pair in query.split('&') {
        let (k, v) = pair.split_once('=').unwrap();
        out.insert(k.to_owned(), Value::String(v.to_owned()));
    }
    Value::Object(out)
}

async fn run(backend: Backend) {
    let dir = scratch("risk-login");
    let sink = SmtpSink::start(&dir);
    let cfg = "[server]\ntrusted_proxies = [\"127.0.0.1/32\"]\n\n[risk]\ndenylist = [\"203.0.113.0/24\"]\n";
    let srv = Server::start_with_config(backend, &sink, cfg, &[]).await;
    let email = "trader@example.com";
    register_verified(&srv, &sink, email, PW).await;

    // A habit: the same browser, device and network, sign-in after sign-in.
    let mut home = Device::new(HOME_UA);
    for _ in 0..6 {
        let (s, b) = login_from(&mut home, &srv, HOME_IP, email, PW).await;
        assert_eq!(s, 201, "{b}");
        srv.advance(3_600_000).await;
    }

    // The right password from a denylisted network is refused, and the owner is told.
    let mut bad = Device::new(HOME_UA);
    bad.device_id = home.device_id.clone();
    let (s, b) = login_from(&mut bad, &srv, "203.0.113.50", email, PW).await;
    assert_eq!((s, b["error"]["code"].as_str()), (403, Some("sign_in_refused")), "{b}");
    assert!(bad.access.is_none());
    let alert = sink.wait_for(email, "Unusual activity on your account");
    assert!(alert["text"].as_str().unwrap().contains("203.0.113.50"), "{alert}");

    // A wrong password from there is the ordinary answer (nothing about risk is revealed).
    let (s, b) = login_from(&mut bad, &srv, "203.0.113.50", email, "not the password at all").await;
    assert_eq!((s, b["error"]["code"].as_str()), (401, Some("invalid_credentials")));

    // A new device, browser and network: held until the owner confirms by email.
    let mut laptop =
        Device::new("Mozilla/5.0 (Macintosh; Intel Mac OS X 14_5) AppleWebKit/605.1.15 Version/17.5 Safari/605.1.15");
    laptop.device_id = Some("0193a6f0-7c1e-7a3b-9f00-00000000beef".into());
    let (s, b) = login_from(&mut laptop, &srv, "192.0.2.55", email, PW).await;
    assert_eq!((s, b["error"]["code"].as_str()), (403, Some("sign_in_confirmation_required")), "{b}");
    let mail = sink.wait_for(email, "Confirm a sign-in from a new device");
    assert!(mail["html"].as_str().unwrap().contains("Yes, this was me"));
    let params = link_params(&mail);
    assert_eq!(params["ip"], "192.0.2.55");
    assert_eq!(params["device"], "0193a6f0-7c1e-7a3b-9f00-00000000beef");

    // The link cannot be bent to vouch for another network.
    let mut forged = params.clone();
    forged["ip"] = json!("192.0.2.66");
    let (s, b) = laptop.post(&srv.api("/sessions/confirm-sign-in"), forged).await;
    assert_eq!((s, b["error"]["code"].as_str()), (400, Some("invalid_token")));
    // The page shows a button and consumes nothing.
    let page = reqwest::get(srv.url(&format!(
        "/_gh/confirm-sign-in?token={}&ip={}&device={}&ua={}",
        params["token"].as_str().unwrap(),
        params["ip"].as_str().unwrap(),
        params["device"].as_str().unwrap(),
        params["ua"].as_str().unwrap()
    )))
    .await
    .unwrap();
    assert_eq!(page.status(), 200);
    assert!(page.text().await.unwrap().contains("Yes, this was me"));
    let (s, b) = laptop.post(&srv.api("/sessions/confirm-sign-in"), params.clone()).await;
    assert_eq!((s, b["status"].as_str()), (200, Some("confirmed")), "{b}");
    let (s, _) = laptop.post(&srv.api("/sessions/confirm-sign-in"), params).await;
    assert_eq!(s, 400, "a confirmation link works once");

    let (s, b) = login_from(&mut laptop, &srv, "192.0.2.55", email, PW).await;
    assert_eq!(s, 201, "the confirmed device signs in: {b}");

    // The session used from a denylisted network is ended, not refreshed.
    let r = laptop
        .http
        .post(srv.api("/sessions/refresh"))
        .header("user-agent", &laptop.ua)
        .header("x-forwarded-for", "203.0.113.77")
        .header("gatehouse-device", laptop.device_id.clone().unwrap())
        .json(&json!({ "refresh_token": laptop.refresh.clone().unwrap() }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    let b: Value = r.json().await.unwrap();
    assert_eq!(b["error"]["code"], "session_expired");
    let (s, _) = laptop.get(&srv.api("/account")).await;
    assert_eq!(s, 401, "the session the refresh came from is revoked");
    let (s, b) = login_from(&mut laptop, &srv, "192.0.2.55", email, PW).await;
    assert_eq!(s, 201, "{b}");

    // Every decision is in the owner's history, with its score and reasons.
    let (s, hist) = laptop.get(&srv.api("/account/security-history?limit=200")).await;
    assert!(
        hist["events"].as_array().unwrap().iter().any(|e| e["kind"] == "risk_decision"
            && e["details"]["action"] == "session"
            && e["details"]["decision"] == "deny"),
        "{hist}"
    );
    assert_eq!(s, 200);
    let events = hist["events"].as_array().unwrap();
    let decisions: Vec<&Value> = events.iter().filter(|e| e["kind"] == "risk_decision").collect();
    assert!(decisions.len() >= 2, "{hist}");
    assert!(
        decisions.iter().any(|e| e["details"]["decision"] == "deny" || e["details"]["decision"] == "freeze"),
        "{hist}"
    );
    assert!(decisions.iter().any(|e| e["details"]["decision"] == "step_up"), "{hist}");
    assert!(decisions.iter().all(|e| e["details"]["reasons"].as_array().is_some_and(|r| !r.is_empty())), "{hist}");
    assert!(events.iter().any(|e| e["kind"] == "sign_in_confirmed"), "{hist}");
    assert!(events.iter().any(|e| e["kind"] == "login_succeeded" && e["details"]["risk"]["score"].is_u64()), "{hist}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite() {
    run(Backend::Sqlite).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres() {
    run(Backend::Postgres).await
}
