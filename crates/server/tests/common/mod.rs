//! End-to-end harness: spawn the real `gatehouse` binary on port 0 with a fresh database,
//! a real SMTP server (aiosmtpd) for mail, and drive it over HTTP like a client would.
//!
//! Required tools fail loudly when missing: the Python virtualenv with aiosmtpd (created by
//! `scripts/test`), and for PostgreSQL runs the server at `GH_TEST_PG`.

#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use serde_json::Value;

pub mod browser;
pub mod mfa;
pub mod relay;
pub mod softkey;
pub mod upstream;

static COUNTER: AtomicU64 = AtomicU64::new(0);

pub fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..").canonicalize().unwrap()
}

pub fn python() -> PathBuf {
    let p = std::env::var_os("GH_PYTHON").map(PathBuf::from).unwrap_or_else(|| workspace().join(".venv/bin/python"));
    assert!(
        p.exists(),
        "REQUIRED TOOL MISSING: the test virtualenv ({}) — run scripts/test (or `python3 -m venv .venv && .venv/bin/pip install -r tests/requirements.txt`)",
        p.display()
    );
    p
}

pub fn scratch(prefix: &str) -> PathBuf {
    let n = COUNTER.fetch_add(1, Ordering::SeqCst);
    let dir = workspace().join("target/test-scratch").join(format!("{prefix}-{}-{n}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn first_line_with(child: &mut Child, needle: &str, what: &str) -> String {
    let stdout = child.stdout.take().expect("piped stdout");
    let mut reader = BufReader::new(stdout);
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut line = String::new();
    loop {
        line.clear();
        let n = reader.read_line(&mut line).unwrap_or(0);
        if n == 0 {
            panic!("{what} exited before printing {needle:?}");
        }
        if line.contains(needle) {
            // Keep draining stdout in the background so the child never blocks on a full pipe.
            std::thread::spawn(move || {
                let mut sink = String::new();
                while reader.read_line(&mut sink).unwrap_or(0) > 0 {
                    sink.clear();
                }
            });
            return line.trim().to_owned();
        }
        assert!(Instant::now() < deadline, "{what} did not start in time");
    }
}

/// A real SMTP server that records every message.
pub struct SmtpSink {
    child: Child,
    pub port: u16,
    pub out: PathBuf,
}

impl SmtpSink {
    pub fn start(dir: &Path) -> Self {
        Self::start_failing(dir, 0)
    }

    /// A sink that refuses the first `n` deliveries with 451.
    pub fn start_failing(dir: &Path, n: u32) -> Self {
        let out = dir.join("mail.jsonl");
        let mut child = Command::new(python())
            .arg(workspace().join("tests/tools/smtp_sink.py"))
            .arg("--out")
            .arg(&out)
            .arg("--fail-first")
            .arg(n.to_string())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start smtp sink");
        let line = first_line_with(&mut child, "listening on", "smtp sink");
        let port = line.rsplit(':').next().and_then(|p| p.parse().ok()).expect("sink port");
        Self { child, port, out }
    }

    pub fn messages(&self) -> Vec<Value> {
        std::fs::read_to_string(&self.out)
            .unwrap_or_default()
            .lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect()
    }

    /// Polls (with a deadline, never a fixed sleep) for a message to `to` whose subject
    /// contains `subject`.
    pub fn wait_for(&self, to: &str, subject: &str) -> Value {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(m) = self.messages().into_iter().find(|m| {
                m["rcpt_tos"].as_array().is_some_and(|r| r.iter().any(|x| x == to))
                    && m["subject"].as_str().is_some_and(|s| s.contains(subject))
            }) {
                return m;
            }
            assert!(Instant::now() < deadline, "no mail to {to} with subject containing {subject:?}");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    pub fn count_for(&self, to: &str, subject: &str) -> usize {
        self.messages()
            .into_iter()
            .filter(|m| {
                m["rcpt_tos"].as_array().is_some_and(|r| r.iter().any(|x| x == to))
                    && m["subject"].as_str().is_some_and(|s| s.contains(subject))
            })
            .count()
    }
}

impl Drop for SmtpSink {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Which database a spawned server uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

pub fn pg_admin_url() -> String {
    std::env::var("GH_TEST_PG").unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into())
}

/// A fresh PostgreSQL schema, returned as a URL whose search_path points at it.
pub async fn fresh_pg_url() -> String {
    use sqlx::Executor;
    sqlx::any::install_default_drivers();
    let admin = pg_admin_url();
    let pool = sqlx::AnyPool::connect(&admin)
        .await
        .unwrap_or_else(|e| panic!("PostgreSQL at {admin} is required and unreachable: {e}"));
    let schema = format!("ghe2e_{}_{}", std::process::id(), COUNTER.fetch_add(1, Ordering::SeqCst));
    pool.execute(sqlx::AssertSqlSafe(format!("DROP SCHEMA IF EXISTS {schema} CASCADE"))).await.unwrap();
    pool.execute(sqlx::AssertSqlSafe(format!("CREATE SCHEMA {schema}"))).await.unwrap();
    pool.close().await;
    let sep = if admin.contains('?') { '&' } else { '?' };
    format!("{admin}{sep}options=-c%20search_path%3D{schema}")
}

/// A test master key (PostgreSQL deployments must be given one).
pub const TEST_MASTER_KEY: &str = "1:AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8";

/// A running `gatehouse serve`.
pub struct Server {
    child: Child,
    pub base: String,
    pub dir: PathBuf,
    pub database_url: Option<String>,
    pub env: Vec<(String, String)>,
}

impl Server {
    /// Starts a server on `backend` with mail to `sink` and extra `GATEHOUSE_*` settings.
    pub async fn start(backend: Backend, sink: &SmtpSink, extra_env: &[(&str, &str)]) -> Self {
        Self::start_with_config(backend, sink, "", extra_env).await
    }

    /// Same, with a TOML configuration file.
    pub async fn start_with_config(backend: Backend, sink: &SmtpSink, toml: &str, extra_env: &[(&str, &str)]) -> Self {
        let dir = scratch("server");
        let database_url = match backend {
            Backend::Sqlite => None,
            Backend::Postgres => Some(fresh_pg_url().await),
        };
        let mut env: Vec<(String, String)> = vec![
            ("GATEHOUSE_MAIL__TRANSPORT".into(), "smtp".into()),
            ("GATEHOUSE_MAIL__SMTP_PORT".into(), sink.port.to_string()),
            ("GATEHOUSE_TESTING__DANGER_MANUAL_CLOCK".into(), "true".into()),
            ("GATEHOUSE_LOG".into(), "info".into()),
        ];
        if let Some(url) = &database_url {
            env.push(("GATEHOUSE_STORAGE__DATABASE_URL".into(), url.clone()));
            env.push(("GATEHOUSE_SECRETS__MASTER_KEYS".into(), TEST_MASTER_KEY.into()));
        }
        for (k, v) in extra_env {
            env.push(((*k).into(), (*v).into()));
        }
        if !toml.is_empty() {
            let path = dir.join("gatehouse.toml");
            std::fs::write(&path, toml).unwrap();
            env.push(("GATEHOUSE_CONFIG".into(), path.display().to_string()));
        }
        Self::spawn(dir, database_url, env)
    }

    fn spawn(dir: PathBuf, database_url: Option<String>, env: Vec<(String, String)>) -> Self {
        let log = std::fs::OpenOptions::new().create(true).append(true).open(dir.join("server.log")).unwrap();
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_gatehouse"));
        cmd.arg("serve").arg("--listen").arg("127.0.0.1:0").arg("--data-dir").arg(dir.join("data"));
        for (k, v) in &env {
            cmd.env(k, v);
        }
        let mut child = cmd.stdout(Stdio::piped()).stderr(Stdio::from(log)).spawn().expect("spawn gatehouse");
        let line = first_line_with(&mut child, "listening on", "gatehouse");
        let base = line.split_whitespace().last().unwrap().to_owned();
        Self { child, base, dir, database_url, env }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    pub fn api(&self, path: &str) -> String {
        format!("{}/_gh/api/v1{path}", self.base)
    }

    /// Moves the server's clock.
    pub async fn advance(&self, ms: i64) {
        let r = reqwest::Client::new()
            .post(self.url("/_gh/test/clock"))
            .json(&serde_json::json!({ "advance_ms": ms }))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
    }

    pub async fn metric(&self, name: &str) -> f64 {
        let text = reqwest::get(self.url("/metrics")).await.unwrap().text().await.unwrap();
        text.lines()
            .find_map(|l| l.strip_prefix(name).and_then(|v| v.trim().parse().ok()))
            .unwrap_or_else(|| panic!("metric {name} missing"))
    }

    /// Runs the binary with a subcommand against this server's data.
    pub fn cli(&self, args: &[&str], data_dir: &Path) -> std::process::Output {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_gatehouse"));
        cmd.args(args).arg("--data-dir").arg(data_dir);
        for (k, v) in &self.env {
            cmd.env(k, v);
        }
        cmd.output().unwrap()
    }

    pub fn data_dir(&self) -> PathBuf {
        self.dir.join("data")
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("server.log")).unwrap_or_default()
    }

    /// Stops the process (SIGKILL, like a crash) and starts it again on the same data.
    pub fn restart(&mut self) {
        self.stop();
        let mut again = Self::spawn(self.dir.clone(), self.database_url.clone(), self.env.clone());
        // `again` now holds the stopped process and is dropped (a no-op kill).
        std::mem::swap(self, &mut again);
    }

    pub fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop();
    }
}

/// An HTTP client that plays one device: a fixed user agent and its device id.
#[derive(Clone)]
pub struct Device {
    pub http: reqwest::Client,
    pub ua: String,
    pub device_id: Option<String>,
    pub access: Option<String>,
    pub refresh: Option<String>,
}

impl Device {
    pub fn new(ua: &str) -> Self {
        Self { http: reqwest::Client::new(), ua: ua.into(), device_id: None, access: None, refresh: None }
    }

    fn req(&self, method: reqwest::Method, url: &str) -> reqwest::RequestBuilder {
        let mut r = self.http.request(method, url).header("user-agent", &self.ua);
        if let Some(d) = &self.device_id {
            r = r.header("gatehouse-device", d);
        }
        if let Some(a) = &self.access {
            r = r.bearer_auth(a);
        }
        r
    }

    pub async fn get(&self, url: &str) -> (u16, Value) {
        let r = self.req(reqwest::Method::GET, url).send().await.unwrap();
        (r.status().as_u16(), r.json().await.unwrap_or(Value::Null))
    }

    pub async fn post(&self, url: &str, body: Value) -> (u16, Value) {
        let r = self.req(reqwest::Method::POST, url).json(&body).send().await.unwrap();
        (r.status().as_u16(), r.json().await.unwrap_or(Value::Null))
    }

    pub async fn delete(&self, url: &str) -> u16 {
        self.req(reqwest::Method::DELETE, url).send().await.unwrap().status().as_u16()
    }

    /// Adopts the access token a step-up answered (R43: a step-up rotates the session's
    /// token; the old one gets 401 from then on).
    pub fn adopt(&mut self, answer: &Value) {
        if let Some(a) = answer["access_token"].as_str() {
            self.access = Some(a.to_owned());
        }
    }

    /// Posts a step-up (`/account/step-up` or the WebAuthn finish) and adopts the new token.
    pub async fn step_up_post(&mut self, url: &str, body: Value) -> (u16, Value) {
        let (s, v) = self.post(url, body).await;
        self.adopt(&v);
        (s, v)
    }

    /// Signs in as an API client and keeps the tokens.
    pub async fn login(&mut self, srv: &Server, email: &str, password: &str) -> (u16, Value) {
        let saved = self.access.take();
        let (status, body) =
            self.post(&srv.api("/sessions"), serde_json::json!({ "email": email, "password": password })).await;
        if status == 201 {
            self.access = body["access_token"].as_str().map(String::from);
            self.refresh = body["refresh_token"].as_str().map(String::from);
            self.device_id = body["device_id"].as_str().map(String::from);
        } else {
            self.access = saved;
        }
        (status, body)
    }

    /// Rotates the refresh token and keeps the new pair.
    pub async fn refresh(&mut self, srv: &Server) -> (u16, Value) {
        let body = serde_json::json!({ "refresh_token": self.refresh.clone().unwrap_or_default() });
        let r = self.http.post(srv.api("/sessions/refresh")).header("user-agent", &self.ua);
        let r = match &self.device_id {
            Some(d) => r.header("gatehouse-device", d),
            None => r,
        };
        let resp = r.json(&body).send().await.unwrap();
        let status = resp.status().as_u16();
        let v: Value = resp.json().await.unwrap_or(Value::Null);
        if status == 200 {
            self.access = v["access_token"].as_str().map(String::from);
            self.refresh = v["refresh_token"].as_str().map(String::from);
        }
        (status, v)
    }
}

/// Extracts the verification token from a verification mail.
pub fn token_from_mail(mail: &Value) -> String {
    let text = mail["text"].as_str().unwrap();
    let start = text.find("token=").expect("link with token") + "token=".len();
    text[start..].chars().take_while(|c| c.is_ascii_alphanumeric() || *c == '-' || *c == '_').collect()
}

/// Registers and verifies `email`, reading the link from the SMTP sink.
pub async fn register_verified(srv: &Server, sink: &SmtpSink, email: &str, password: &str) {
    let d = Device::new("registration-client/1.0");
    let (s, _) = d.post(&srv.api("/accounts"), serde_json::json!({ "email": email, "password": password })).await;
    assert_eq!(s, 202);
    let mail = sink.wait_for(email, "Verify your email");
    let token = token_from_mail(&mail);
    let (s, body) = d.post(&srv.api("/accounts/verify-email"), serde_json::json!({ "token": token })).await;
    assert_eq!((s, body["status"].as_str()), (200, Some("verified")));
}

/// Asserts that `resp` is a page in the pages' layout (`base.html`): the page CSP (script and
/// style from our own origin only, forms to us, no framing), the security headers every response
/// carries, the stylesheet and the footer's official-channels link. Answers the HTML.
pub async fn layout_page(resp: reqwest::Response) -> String {
    let h = resp.headers();
    let header = |name: &str| h.get(name).and_then(|v| v.to_str().ok()).unwrap_or_default().to_owned();
    let csp = header("content-security-policy");
    assert!(
        csp.contains("style-src 'self'")
            && csp.contains("frame-ancestors 'none'")
            && csp.contains("form-action 'self'"),
        "page CSP: {csp}"
    );
    assert_eq!(header("x-frame-options"), "DENY");
    assert_eq!(header("x-content-type-options"), "nosniff");
    assert_eq!(header("referrer-policy"), "no-referrer");
    assert!(header("content-type").starts_with("text/html"));
    let html = resp.text().await.unwrap();
    assert!(html.contains("href=\"/_gh/assets/style.css\""), "the layout's stylesheet: {html}");
    assert!(html.contains("<footer") && html.contains("href=\"/_gh/official\""), "the layout's footer: {html}");
    html
}
