//! Forward auth behind a real nginx (Debian package): nginx's `auth_request` asks gatehouse's
//! `/_gh/auth/forward` about every request to `/api/`, and forwards the granted ones to the
//! test upstream with the identity gatehouse minted.
//!
//! The nginx configuration is `tests/tools/nginx/` (the same snippets the gateway benchmark
//! uses). Refusals reach the client with gatehouse's status and Binance body, which nginx
//! would otherwise collapse into 500: 400 with −1022 for a bad signature, 400 with −1021 for
//! a replayed one, 401 with −2015 for an unknown key or a key without the scope.
//!
//! nginx is required: the test fails (never skips) when it cannot be found. `scripts/test`
//! installs it (`apt-get install nginx`).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use base64::Engine as _;
use common::upstream::Upstream;
use common::{Backend, Server, SmtpSink, register_verified, scratch, workspace};
use serde_json::Value;

const PW: &str = "violet tram harbour 77";
const SECRET: [u8; 32] = [9; 32];
const EMAIL: &str = "trader@example.com";

/// nginx, wherever Debian or a local build put it; a missing nginx is a test failure.
fn nginx_binary() -> PathBuf {
    let mut candidates: Vec<PathBuf> = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).map(|d| d.join("nginx")).collect())
        .unwrap_or_default();
    candidates.extend(["/usr/sbin/nginx", "/usr/local/sbin/nginx", "/usr/local/nginx/sbin/nginx"].map(PathBuf::from));
    candidates.into_iter().find(|p| p.is_file()).unwrap_or_else(|| {
        panic!(
            "REQUIRED TOOL MISSING: nginx (not in PATH nor /usr/sbin) — run scripts/test, or `apt-get install -y nginx`"
        )
    })
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// A running nginx with a generated configuration; killed on drop.
struct Nginx {
    child: Child,
    dir: PathBuf,
    base: String,
}

impl Nginx {
    fn start(gatehouse: &str, upstream: &str) -> Self {
        let dir = scratch("nginx");
        std::fs::create_dir_all(dir.join("tmp")).unwrap();
        let tools = workspace().join("tests/tools/nginx");
        let port = free_port();
        let conf = std::fs::read_to_string(tools.join("forward_auth.conf.in"))
            .unwrap()
            .replace("@DIR@", &dir.display().to_string())
            .replace("@TOOLS@", &tools.display().to_string())
            .replace("@PORT@", &port.to_string())
            .replace("@GATEHOUSE@", gatehouse.trim_start_matches("http://"))
            .replace("@UPSTREAM@", upstream.trim_start_matches("http://"));
        let unfilled = conf.lines().any(|l| !l.trim_start().starts_with('#') && l.matches('@').count() >= 2);
        assert!(!unfilled, "unfilled placeholder in the nginx template:\n{conf}");
        std::fs::write(dir.join("nginx.conf"), conf).unwrap();
        let d = dir.display().to_string();
        let child = Command::new(nginx_binary())
            .args(["-p", &d, "-e", &format!("{d}/error.log"), "-c", &format!("{d}/nginx.conf"), "-g"])
            .arg(format!("daemon off; pid {d}/nginx.pid; error_log {d}/error.log;"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn nginx");
        let mut nginx = Self { child, dir, base: format!("http://127.0.0.1:{port}") };
        nginx.wait_ready(port);
        nginx
    }

    /// Polls the listening socket and the readiness location until a deadline.
    fn wait_ready(&mut self, port: u16) {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                panic!("nginx exited with {status} at startup:\n{}", self.error_log());
            }
            if self.ready_probe(port) {
                return;
            }
            assert!(Instant::now() < deadline, "nginx did not become ready:\n{}", self.error_log());
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn ready_probe(&self, port: u16) -> bool {
        use std::io::{Read, Write};
        let Ok(mut s) = TcpStream::connect(("127.0.0.1", port)) else { return false };
        let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
        if s.write_all(b"GET /_nginx_ready HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n").is_err() {
            return false;
        }
        let mut buf = String::new();
        let _ = s.read_to_string(&mut buf);
        buf.starts_with("HTTP/1.1 204")
    }

    fn error_log(&self) -> String {
        std::fs::read_to_string(self.dir.join("error.log")).unwrap_or_default()
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }
}

impl Drop for Nginx {
    /// SIGTERM to the master (nginx's fast shutdown: it stops its workers, then exits); SIGKILL
    /// only if it has not exited by a deadline. A SIGKILLed master would leave its workers
    /// running, still listening.
    fn drop(&mut self) {
        let _ = Command::new("kill").arg("-TERM").arg(self.child.id().to_string()).status();
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn config(upstream: &str) -> String {
    let secret = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(SECRET);
    format!(
        r#"
[server]
trusted_proxies = ["127.0.0.1/32"]

[gateway]
identity_secret = "{secret}"

[[gateway.routes]]
prefix = "/api"
dialect = "binance"
upstream = "{upstream}"
table = "binance"
public = ["/api/v3/ping"]
"#
    )
}

/// hex(HMAC-SHA256(secret, payload)) by Python's standard library (an independent signer).
fn hmac_hex(secret: &str, payload: &str) -> String {
    let out = Command::new(common::python())
        .args([
            "-c",
            "import hmac, hashlib, sys; print(hmac.new(sys.argv[1].encode(), sys.argv[2].encode(), hashlib.sha256).hexdigest())",
            secret,
            payload,
        ])
        .output()
        .unwrap();
    assert!(out.status.success(), "signer failed: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap().trim().to_owned()
}

fn now_ms() -> u128 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis()
}

/// A signed `GET /api/v3/account` path (the query is the whole payload: no body).
fn signed_account(secret: &str, nonce: u32) -> String {
    let q = format!("omitZeroBalances=true&n={nonce}&timestamp={}&recvWindow=5000", now_ms());
    format!("/api/v3/account?{q}&signature={}", hmac_hex(secret, &q))
}

/// An API key created with the operator CLI; returns (id, secret).
fn cli_key(srv: &Server, label: &str, scopes: &str) -> (String, String) {
    let out = srv.cli(
        &["apikey", "create", "--email", EMAIL, "--label", label, "--kind", "hmac", "--scopes", scopes, "--json"],
        &srv.data_dir(),
    );
    assert!(out.status.success(), "apikey create: {}", String::from_utf8_lossy(&out.stderr));
    let v: Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("apikey create printed no JSON ({e}): {}", String::from_utf8_lossy(&out.stdout)));
    (v["id"].as_str().unwrap().to_owned(), v["secret"].as_str().unwrap().to_owned())
}

struct Answer {
    status: u16,
    body: Value,
}

async fn get(http: &reqwest::Client, url: &str, headers: &[(&str, &str)]) -> Answer {
    let mut r = http.get(url).header("user-agent", "python-requests/2.34.2");
    for (k, v) in headers {
        r = r.header(*k, *v);
    }
    let resp = r.send().await.unwrap();
    let status = resp.status().as_u16();
    let text = resp.text().await.unwrap();
    Answer { status, body: serde_json::from_str(&text).unwrap_or(Value::String(text)) }
}

fn assert_refused(a: &Answer, status: u16, code: i64, what: &str) {
    assert_eq!((a.status, a.body["code"].as_i64()), (status, Some(code)), "{what}: {}", a.body);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nginx_auth_request_through_gatehouse() {
    nginx_binary(); // fail before any setup when nginx is missing
    let dir = scratch("fwd-nginx");
    let sink = SmtpSink::start(&dir);
    let upstream = Upstream::start(&SECRET).await;
    let srv = Server::start_with_config(Backend::Sqlite, &sink, &config(&upstream.base), &[]).await;
    register_verified(&srv, &sink, EMAIL, PW).await;
    let (key, secret) = cli_key(&srv, "bot", "view_assets,view_orders,place_orders");
    let (ro_key, ro_secret) = cli_key(&srv, "orders-only", "view_orders");
    let nginx = Nginx::start(&srv.base, &upstream.base);
    let http = reqwest::Client::new();
    let seen_before = |n: usize| upstream.seen().len() == n;

    // 1. A correctly signed GET reaches the upstream with a verified identity for this key,
    //    without the client's credentials; the upstream's answer comes back.
    let path = signed_account(&secret, 1);
    let a = get(&http, &nginx.url(&path), &[("X-MBX-APIKEY", &key)]).await;
    assert_eq!(a.status, 200, "{}\nnginx: {}", a.body, nginx.error_log());
    assert_eq!(a.body["canTrade"], true, "{}", a.body);
    let seen = upstream.seen();
    assert_eq!(seen.len(), 1, "{seen:?}");
    let s = &seen[0];
    assert_eq!((s.method.as_str(), s.path.as_str()), ("GET", "/api/v3/account"));
    assert_eq!(s.query.as_deref(), path.split_once('?').map(|x| x.1), "the query is forwarded unchanged");
    let id = s.identity.as_ref().expect("the upstream verified gatehouse's identity assertion");
    assert_eq!(id.key.to_string(), key);
    assert_eq!(id.dialect, "binance");
    let header = |name: &str| s.headers.iter().filter(|(h, _)| h == name).map(|(_, v)| v.clone()).collect::<Vec<_>>();
    assert!(header("x-mbx-apikey").is_empty(), "credentials stripped: {s:?}");
    assert_eq!(header("x-gatehouse-key"), vec![key.clone()]);
    let scopes = header("x-gatehouse-scopes");
    assert_eq!(scopes.len(), 1, "{s:?}");
    assert!(scopes[0].split(',').any(|x| x == "view_assets"), "{scopes:?}");

    // 2. A bad signature: 400 / −1022 at the client, nothing reaches the upstream.
    let q = format!("n=2&timestamp={}&recvWindow=5000", now_ms());
    let forged = format!("/api/v3/account?{q}&signature={}", hmac_hex("not-the-secret-0000000000000000", &q));
    let a = get(&http, &nginx.url(&forged), &[("X-MBX-APIKEY", &key)]).await;
    assert_refused(&a, 400, -1022, "bad signature");
    assert!(seen_before(1));

    // 3. Replaying the request of step 1 byte for byte: 400 / −1021 (single-use signatures).
    let a = get(&http, &nginx.url(&path), &[("X-MBX-APIKEY", &key)]).await;
    assert_refused(&a, 400, -1021, "replay");
    assert!(seen_before(1));

    // 4. A key without the scope (`GET /api/v3/account` needs view_assets): 401 / −2015.
    let a = get(&http, &nginx.url(&signed_account(&ro_secret, 4)), &[("X-MBX-APIKEY", &ro_key)]).await;
    assert_refused(&a, 401, -2015, "missing scope");
    assert!(seen_before(1));

    // 5. An unknown (well-formed) key: 401 / −2015, like Binance.
    let unknown = uuid_like(&key);
    let a = get(&http, &nginx.url(&signed_account(&secret, 5)), &[("X-MBX-APIKEY", &unknown)]).await;
    assert_refused(&a, 401, -2015, "unknown key");
    // No key at all: also refused, never forwarded.
    let a = get(&http, &nginx.url(&signed_account(&secret, 6)), &[]).await;
    assert!(matches!(a.status, 400 | 401), "no key: {} {}", a.status, a.body);
    assert!(seen_before(1));

    // 6. A client-sent X-Gatehouse-Identity (and friends) never reaches the upstream: on a
    //    refused request nothing is forwarded; on a granted one the upstream sees only the
    //    assertion gatehouse minted.
    let fake = format!("v1;user={unknown};key={unknown};scopes=withdraw;dialect=binance;ts=1;sig=AAAA");
    let fakes = [
        ("X-Gatehouse-Identity", fake.as_str()),
        ("X-Gatehouse-User", "someone-else"),
        ("X-Gatehouse-Scopes", "withdraw"),
    ];
    let mut with_key = fakes.to_vec();
    with_key.push(("X-MBX-APIKEY", &key));
    let a = get(&http, &nginx.url(&forged), &with_key).await;
    assert_refused(&a, 400, -1022, "bad signature with a fake identity");
    let a = get(&http, &nginx.url(&signed_account(&secret, 7)), &fakes).await;
    assert!(matches!(a.status, 400 | 401), "fake identity without a key: {} {}", a.status, a.body);
    assert!(seen_before(1), "a forged identity alone must not open the door");
    let a = get(&http, &nginx.url(&signed_account(&secret, 8)), &with_key).await;
    assert_eq!(a.status, 200, "{}", a.body);
    let seen = upstream.seen();
    assert_eq!(seen.len(), 2);
    let s = &seen[1];
    let identities: Vec<&String> =
        s.headers.iter().filter(|(h, _)| h == "x-gatehouse-identity").map(|(_, v)| v).collect();
    assert_eq!(identities.len(), 1, "{s:?}");
    assert_ne!(identities[0], &fake);
    assert_eq!(s.identity.as_ref().expect("verified identity").key.to_string(), key);
    assert!(!s.headers.iter().any(|(_, v)| v == "someone-else" || v == "withdraw"), "{s:?}");

    // The refusals were answered by gatehouse through the check, not by an nginx fallback.
    let access = std::fs::read_to_string(nginx.dir.join("access.log")).unwrap_or_default();
    assert!(access.lines().count() >= 8, "access log:\n{access}");
    assert!(!nginx.error_log().contains("auth request unexpected status: 502"), "{}", nginx.error_log());

    // 7. The check asked directly, as nginx asks it, is answered outside the router on plain
    //    HTTP (app::serve) with the same edge duties as every answer: identity headers, a
    //    request id, and a count in /metrics under its own route. A grant goes to the proxy
    //    alone: `Cache-Control: no-store` (no proxy cache may keep a grant) but no browser
    //    headers; a refusal, which Traefik and Caddy pass to the client, has them all (ADR 0017).
    let target = signed_account(&secret, 8);
    let ask = || {
        http.get(format!("{}/_gh/auth/forward", srv.base))
            .header("X-Original-Method", "GET")
            .header("X-Original-URI", &target)
            .header("X-MBX-APIKEY", &key)
            .send()
    };
    let direct = ask().await.unwrap();
    assert_eq!(direct.status(), 200);
    let h = direct.headers();
    assert_eq!(h["x-gatehouse-key"], key.as_str());
    assert!(h.contains_key("x-gatehouse-identity"), "{h:?}");
    assert_eq!(h["x-request-id"].len(), 16, "{h:?}");
    assert_eq!(h["cache-control"], "no-store");
    for browser_only in ["x-content-type-options", "content-security-policy", "strict-transport-security"] {
        assert!(!h.contains_key(browser_only), "a grant is read by the proxy alone: {h:?}");
    }
    assert!(!h.contains_key("dpop-nonce"), "forward-auth answers go to the proxy: {h:?}");
    let refused = ask().await.unwrap();
    assert_eq!(refused.status(), 400, "the same signature again is a replay");
    let h = refused.headers();
    assert_eq!(h["x-gatehouse-status"], "400");
    assert_eq!(h["x-content-type-options"], "nosniff");
    assert_eq!(h["cache-control"], "no-store");
    assert!(h.contains_key("content-security-policy"), "{h:?}");
    assert_eq!(h["x-request-id"].len(), 16, "{h:?}");
    let metrics = http.get(format!("{}/metrics", srv.base)).send().await.unwrap().text().await.unwrap();
    for status in ["200", "400"] {
        let line =
            format!(r#"gatehouse_http_requests_total{{route="/_gh/auth/forward",method="GET",status="{status}"}}"#);
        assert!(metrics.contains(&line), "{line} missing from:\n{metrics}");
    }

    // 8. gatehouse down: the check cannot be made, so nginx refuses (503, −1001): fail closed.
    let mut srv = srv;
    srv.stop();
    let a = get(&http, &nginx.url(&signed_account(&secret, 9)), &[("X-MBX-APIKEY", &key)]).await;
    assert_refused(&a, 503, -1001, "gatehouse unreachable");
    assert_eq!(upstream.seen().len(), 2);
}

/// A syntactically valid key id that is not `key` (flip the last hex digit).
fn uuid_like(key: &str) -> String {
    let mut s = key.to_owned();
    let last = s.pop().unwrap();
    s.push(if last == '0' { '1' } else { '0' });
    s
}
