//! Malformed and oversized input get a clear, documented answer (R101, R102, F11).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::{Backend, Server, SmtpSink, scratch};
use serde_json::Value;

async fn code(r: reqwest::Response) -> (u16, String, String) {
    let status = r.status().as_u16();
    let ctype = r.headers().get("content-type").map(|v| v.to_str().unwrap().to_owned()).unwrap_or_default();
    let body: Value = r.json().await.unwrap_or(Value::Null);
    (status, ctype, body["error"]["code"].as_str().unwrap_or("").to_owned())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_requests_get_documented_errors() {
    let dir = scratch("hostile");
    let sink = SmtpSink::start(&dir);
    let srv = Server::start(Backend::Sqlite, &sink, &[]).await;
    let c = reqwest::Client::new();
    let login = srv.api("/sessions");
    let cases: Vec<(reqwest::RequestBuilder, u16, &str)> = vec![
        // No content type.
        (c.post(&login).body(r#"{"email":"a@b.co","password":"x"}"#), 415, "unsupported_media_type"),
        // Not JSON.
        (c.post(&login).header("content-type", "application/json").body("{not json"), 400, "invalid_request"),
        // Unknown field (mass assignment).
        (
            c.post(&login)
                .header("content-type", "application/json")
                .body(r#"{"email":"a@b.co","password":"x","role":"admin"}"#),
            400,
            "invalid_request",
        ),
        // Nested a thousand levels deep: refused, no stack overflow.
        (
            c.post(&login).header("content-type", "application/json").body(format!(
                "{}{}",
                "[".repeat(1000),
                "]".repeat(1000)
            )),
            400,
            "invalid_request",
        ),
        // Wrong types.
        (
            c.post(&login).header("content-type", "application/json").body(r#"{"email":1,"password":2}"#),
            400,
            "invalid_request",
        ),
        // Unknown route and method.
        (c.get(srv.url("/_gh/api/v1/nope")), 404, "not_found"),
        (c.put(&login), 405, "method_not_allowed"),
        // A declared body over the limit: refused before reading it.
        (
            c.post(&login).header("content-type", "application/json").body(vec![b' '; 20 * 1024]),
            413,
            "payload_too_large",
        ),
        // Invalid UTF-8.
        (
            c.post(&login).header("content-type", "application/json").body(vec![b'"', 0xff, 0xfe, b'"']),
            400,
            "invalid_request",
        ),
    ];
    for (i, (req, status, error)) in cases.into_iter().enumerate() {
        let (s, ctype, e) = code(req.send().await.unwrap()).await;
        assert_eq!((s, e.as_str()), (status, error), "case {i}");
        assert!(ctype.starts_with("application/json"), "case {i}: {ctype}");
    }
    // Headers over 16 KiB: 431 from the HTTP layer, before any handler runs.
    let r = c.get(srv.url("/healthz")).header("x-big", "a".repeat(20 * 1024)).send().await.unwrap();
    assert_eq!(r.status().as_u16(), 431);
    // More than 100 header fields: 431 as well (reqwest adds a few of its own, hence 96 + 5).
    let with_headers = |n: usize| {
        let mut req = c.get(srv.url("/healthz"));
        for i in 0..n {
            req = req.header(format!("x-h{i}"), "1");
        }
        req
    };
    assert_eq!(with_headers(96 + 5).send().await.unwrap().status().as_u16(), 431, "over 100 header fields");
    assert_eq!(with_headers(90).send().await.unwrap().status().as_u16(), 200, "90 header fields");
    // The server is still serving.
    assert_eq!(c.get(srv.url("/healthz")).send().await.unwrap().status().as_u16(), 200);
    // Every answer carries the security headers.
    let r = c.get(srv.url("/healthz")).send().await.unwrap();
    for h in [
        "cache-control",
        "x-content-type-options",
        "content-security-policy",
        "strict-transport-security",
        "referrer-policy",
        "x-request-id",
    ] {
        assert!(r.headers().contains_key(h), "{h}");
    }
}
