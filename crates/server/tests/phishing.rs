//! Anti-phishing surfaces end to end: the URL checker (API, page, CLI), the official-channels
//! page, and the Host allowlist.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::{Backend, Server, SmtpSink, scratch};
use serde_json::Value;

const CONFIG: &str = r#"
[phishing]
official_domains = ["upbit.com", "gatehouse.example"]
brand_words = ["upbit"]
support_addresses = ["security@upbit.com"]
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_url_checker_answers_official_lookalike_or_unknown() {
    let dir = scratch("phish");
    let sink = SmtpSink::start(&dir);
    let srv = Server::start_with_config(Backend::Sqlite, &sink, CONFIG, &[]).await;
    let c = reqwest::Client::new();
    let check = |u: &str| c.get(srv.api("/check-url")).query(&[("url", u)]).send();
    let cases = [
        ("https://www.upbit.com/login", "official", None),
        ("https://xn--upbt-n9d.com/", "lookalike", Some("confusable_with")),
        ("https://upbit.com.secure-login.xyz/", "lookalike", Some("brand_in_subdomain")),
        ("https://upblt.com", "lookalike", Some("edit_distance")),
        ("https://upbit.com@evil.tld/", "lookalike", None),
        ("https://bit.ly/abc", "unknown", Some("url_shortener")),
        ("https://example.org/", "unknown", None),
    ];
    for (url, class, reason) in cases {
        let v: Value = check(url).await.unwrap().json().await.unwrap();
        assert_eq!(v["class"], class, "{url}: {v}");
        if let Some(r) = reason {
            assert!(v["reasons"].as_array().unwrap().iter().any(|x| x["code"] == r), "{url}: {v}");
        }
    }
    let r = check(&"a".repeat(3000)).await.unwrap();
    assert_eq!(r.status(), 400);
    // The page works without JavaScript and escapes what it echoes.
    let html = c.get(srv.url("/_gh/check-url")).query(&[("url", "https://upblt.com/<script>")]).send().await.unwrap();
    assert!(html.headers()["content-security-policy"].to_str().unwrap().contains("frame-ancestors 'none'"));
    let html = html.text().await.unwrap();
    assert!(html.contains("data-class=\"lookalike\""));
    assert!(!html.contains("<script>"));
    assert!(html.contains("/_gh/official"), "footer links the official-channels page");
    let official = c.get(srv.url("/_gh/official")).send().await.unwrap().text().await.unwrap();
    assert!(official.contains("upbit.com") && official.contains("security@upbit.com"));
    // The CLI gives the same answer.
    let cfg = srv.dir.join("gatehouse.toml");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_gatehouse"))
        .args(["check-url", "--json", "--config", cfg.to_str().unwrap(), "https://upbit-login.com/"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["class"], "lookalike");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_for_other_hosts_are_refused() {
    let dir = scratch("hosts");
    let sink = SmtpSink::start(&dir);
    let srv =
        Server::start_with_config(Backend::Sqlite, &sink, "[server]\nallowed_hosts = [\"account.example.com\"]\n", &[])
            .await;
    let c = reqwest::Client::new();
    let r = c.get(srv.url("/_gh/official")).header("host", "evil.example").send().await.unwrap();
    assert_eq!(r.status(), 421);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["error"]["code"], "misdirected_request");
    let r = c.get(srv.url("/_gh/official")).header("host", "account.example.com").send().await.unwrap();
    assert_eq!(r.status(), 200);
}
