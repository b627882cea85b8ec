//! Several instances sharing one PostgreSQL and one Redis (F7–F9, F16, R13, R45).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::{Backend, Device, Server, SmtpSink, register_verified, scratch};
use serde_json::{Value, json};

const PW: &str = "violet tram harbour 77";

async fn pair(sink: &SmtpSink) -> (Server, Server) {
    let redis = ("GATEHOUSE_STORAGE__REDIS_URL", "redis://127.0.0.1:6379");
    let a = Server::start(Backend::Postgres, sink, &[redis]).await;
    let url = a.database_url.clone().unwrap();
    let b = Server::start(
        Backend::Sqlite,
        sink,
        &[
            redis,
            ("GATEHOUSE_STORAGE__DATABASE_URL", &url),
            ("GATEHOUSE_SECRETS__MASTER_KEYS", common::TEST_MASTER_KEY),
        ],
    )
    .await;
    (a, b)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn revocations_reach_the_other_instance_at_once() {
    let dir = scratch("inst-revoke");
    let sink = SmtpSink::start(&dir);
    let (a, b) = pair(&sink).await;
    register_verified(&a, &sink, "multi@example.com", PW).await;
    // Tokens issued by A work on B (shared state), and logout on A ends them on B.
    let mut d = Device::new("python-requests/2.34.2");
    assert_eq!(d.login(&a, "multi@example.com", PW).await.0, 201);
    assert_eq!(d.get(&b.api("/account")).await.0, 200);
    assert_eq!(d.delete(&a.api("/sessions/current")).await, 204);
    assert_eq!(d.get(&b.api("/account")).await.0, 401, "logout is immediate on every instance");
    // A password change on B ends the session created on A, its refresh token included.
    let mut x = Device::new("python-requests/2.34.2");
    assert_eq!(x.login(&a, "multi@example.com", PW).await.0, 201);
    let mfa = common::mfa::enrol_totp(&a, &x, PW).await;
    let mut y = Device::new("curl/8.5.0");
    assert_eq!(mfa.login(&b, &mut y, "multi@example.com", PW).await.0, 201);
    let t = mfa.step_up(&b, &mut y, "change_password").await;
    let (s, _) = y
        .post(
            &b.api("/account/password"),
            json!({ "current_password": PW, "new_password": "amber kite lantern 31", "step_up_token": t }),
        )
        .await;
    assert_eq!(s, 200);
    assert_eq!(x.get(&a.api("/account")).await.0, 401);
    assert_eq!(x.refresh(&a).await.0, 400);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn parallel_refreshes_across_instances_leave_at_most_one_successor() {
    let dir = scratch("inst-refresh");
    let sink = SmtpSink::start(&dir);
    let (a, b) = pair(&sink).await;
    register_verified(&a, &sink, "race@example.com", PW).await;
    let mut d = Device::new("python-requests/2.34.2");
    assert_eq!(d.login(&a, "race@example.com", PW).await.0, 201);
    let mut tasks = Vec::new();
    for i in 0..50 {
        let base = if i % 2 == 0 { a.base.clone() } else { b.base.clone() };
        let dd = d.clone();
        tasks.push(tokio::spawn(async move {
            let r = dd
                .http
                .post(format!("{base}/_gh/api/v1/sessions/refresh"))
                .header("user-agent", &dd.ua)
                .header("gatehouse-device", dd.device_id.clone().unwrap())
                .json(&json!({ "refresh_token": dd.refresh.clone().unwrap() }))
                .send()
                .await
                .unwrap();
            let s = r.status().as_u16();
            let v: Value = r.json().await.unwrap();
            (s, v["refresh_token"].as_str().map(String::from))
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
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn login_throttling_is_shared_by_instances() {
    let dir = scratch("inst-throttle");
    let sink = SmtpSink::start(&dir);
    let (a, b) = pair(&sink).await;
    register_verified(&a, &sink, "slow@example.com", PW).await;
    // Six failures, alternating instances: the seventh attempt waits on either.
    for i in 0..6 {
        let srv = if i % 2 == 0 { &a } else { &b };
        assert_eq!(Device::new("probe/1.0").login(srv, "slow@example.com", "wrong password!!").await.0, 401);
    }
    for srv in [&a, &b] {
        let (s, body) = Device::new("probe/1.0").login(srv, "slow@example.com", PW).await;
        assert_eq!((s, body["error"]["code"].as_str()), (429, Some("rate_limited")));
    }
}
