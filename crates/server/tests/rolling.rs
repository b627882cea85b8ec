//! Rolling restart behind a real load balancer (F19): two gatehouse instances on one
//! PostgreSQL and one Redis, on fixed loopback ports behind a real nginx upstream, while client
//! traffic (logins, refreshes, authenticated GETs) runs without pause. Each instance in turn
//! gets SIGTERM, exits on its own, and is started again on the same port.
//!
//! Asserted: not one request fails; both instances exit cleanly (status 0) within the drain
//! deadline; requests kept succeeding while each instance was down (the traffic crossed both
//! restarts); and each restarted instance served requests again before the next one stopped.
//!
//! How no request fails: gatehouse stops accepting, serves every connection already queued on
//! its listening socket and drains in-flight requests (app.rs `serve`); nginx opens one
//! upstream connection per request (no upstream keepalive, so no request is ever written to a
//! connection the server is closing) and `proxy_next_upstream error timeout` moves a request
//! whose connection was refused to the other instance. nginx is required: a missing nginx
//! fails the test.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::io::{BufRead, BufReader};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use common::{SmtpSink, TEST_MASTER_KEY, fresh_pg_url, scratch, token_from_mail};
use serde_json::{Value, json};
use tokio::sync::Mutex;

const PW: &str = "violet tram harbour 77";
const EMAIL: &str = "rolling@example.com";
const WORKERS: usize = 4;

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

fn nginx_binary() -> PathBuf {
    let mut candidates: Vec<PathBuf> = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).map(|d| d.join("nginx")).collect())
        .unwrap_or_default();
    candidates.extend(["/usr/sbin/nginx", "/usr/local/sbin/nginx"].map(PathBuf::from));
    candidates
        .into_iter()
        .find(|p| p.is_file())
        .unwrap_or_else(|| panic!("REQUIRED TOOL MISSING: nginx — run scripts/test, or `apt-get install -y nginx`"))
}

fn redis_url() -> String {
    std::env::var("GH_TEST_REDIS").unwrap_or_else(|_| "redis://127.0.0.1:6379".into())
}

/// One gatehouse process on a fixed port; it can be stopped with SIGTERM and started again.
struct Instance {
    name: &'static str,
    port: u16,
    dir: PathBuf,
    env: Vec<(String, String)>,
    child: Option<Child>,
}

impl Instance {
    fn new(name: &'static str, port: u16, dir: &Path, env: Vec<(String, String)>) -> Self {
        let dir = dir.join(name);
        std::fs::create_dir_all(&dir).unwrap();
        let mut i = Self { name, port, dir, env, child: None };
        i.start();
        i
    }

    /// Spawns the binary and waits for its "listening" line and a 200 from `/healthz`.
    fn start(&mut self) {
        let log = std::fs::OpenOptions::new().create(true).append(true).open(self.dir.join("server.log")).unwrap();
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_gatehouse"));
        cmd.arg("serve").arg("--listen").arg(format!("127.0.0.1:{}", self.port));
        cmd.arg("--data-dir").arg(self.dir.join("data"));
        cmd.envs(self.env.iter().map(|(k, v)| (k, v)));
        let mut child = cmd.stdout(Stdio::piped()).stderr(Stdio::from(log)).spawn().expect("spawn gatehouse");
        let mut reader = BufReader::new(child.stdout.take().unwrap());
        let mut line = String::new();
        loop {
            line.clear();
            if reader.read_line(&mut line).unwrap_or(0) == 0 {
                panic!("{} exited before listening:\n{}", self.name, self.log());
            }
            if line.contains("listening on") {
                break;
            }
        }
        std::thread::spawn(move || {
            let mut sink = String::new();
            while reader.read_line(&mut sink).unwrap_or(0) > 0 {
                sink.clear();
            }
        });
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(30);
        while !http_ok(self.port, "/healthz") {
            assert!(Instant::now() < deadline, "{} is not healthy", self.name);
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// SIGTERM, then waits for the process to exit by itself; returns how long that took.
    fn terminate(&mut self) -> Duration {
        let mut child = self.child.take().expect("running");
        let started = Instant::now();
        let status = Command::new("kill").arg("-TERM").arg(child.id().to_string()).status().unwrap();
        assert!(status.success());
        let deadline = started + Duration::from_secs(20);
        loop {
            if let Some(status) = child.try_wait().unwrap() {
                assert!(status.success(), "{} exited with {status} on SIGTERM:\n{}", self.name, self.log());
                return started.elapsed();
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                panic!("{} did not exit within 20 s of SIGTERM", self.name);
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("server.log")).unwrap_or_default()
    }
}

impl Drop for Instance {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// A blocking `GET path` on 127.0.0.1:port answered 200.
fn http_ok(port: u16, path: &str) -> bool {
    use std::io::{Read, Write};
    let Ok(mut s) = TcpStream::connect(("127.0.0.1", port)) else { return false };
    let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
    let req = format!("GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n");
    if s.write_all(req.as_bytes()).is_err() {
        return false;
    }
    let mut buf = String::new();
    let _ = s.read_to_string(&mut buf);
    buf.starts_with("HTTP/1.1 200") || buf.starts_with("HTTP/1.1 204")
}

/// nginx with both instances as one upstream; SIGTERM on drop.
struct Nginx {
    child: Child,
    dir: PathBuf,
    port: u16,
}

impl Nginx {
    fn start(dir: &Path, upstreams: [u16; 2]) -> Self {
        let dir = dir.join("nginx");
        std::fs::create_dir_all(dir.join("tmp")).unwrap();
        let port = free_port();
        let d = dir.display();
        // No `keepalive` in the upstream: one connection per request, so a request is never
        // written to an idle connection the instance is closing. `max_fails=0`: a refused
        // connection never takes an instance out of rotation for `fail_timeout`, so a restarted
        // instance gets traffic at once.
        let conf = format!(
            r#"worker_processes 1;
events {{ worker_connections 1024; }}
http {{
    log_format rolling '$msec $status "$upstream_addr" "$upstream_status" $request_method $uri';
    access_log {d}/access.log rolling;
    client_body_temp_path {d}/tmp/client_body;
    proxy_temp_path {d}/tmp/proxy;
    fastcgi_temp_path {d}/tmp/fastcgi;
    uwsgi_temp_path {d}/tmp/uwsgi;
    scgi_temp_path {d}/tmp/scgi;
    upstream gatehouse {{
        server 127.0.0.1:{a} max_fails=0;
        server 127.0.0.1:{b} max_fails=0;
    }}
    server {{
        listen 127.0.0.1:{port};
        location = /_nginx_ready {{ return 204; }}
        location / {{
            proxy_pass http://gatehouse;
            proxy_set_header Host $http_host;
            proxy_next_upstream error timeout;
            proxy_next_upstream_tries 2;
            proxy_connect_timeout 2s;
            proxy_read_timeout 30s;
        }}
    }}
}}
"#,
            a = upstreams[0],
            b = upstreams[1],
        );
        std::fs::write(dir.join("nginx.conf"), conf).unwrap();
        let child = Command::new(nginx_binary())
            .args(["-p", &d.to_string(), "-e", &format!("{d}/error.log"), "-c", &format!("{d}/nginx.conf"), "-g"])
            .arg(format!("daemon off; pid {d}/nginx.pid; error_log {d}/error.log;"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn nginx");
        let mut n = Self { child, dir, port };
        let deadline = Instant::now() + Duration::from_secs(20);
        while !http_ok(port, "/_nginx_ready") {
            if let Some(status) = n.child.try_wait().unwrap() {
                panic!("nginx exited with {status}:\n{}", n.error_log());
            }
            assert!(Instant::now() < deadline, "nginx did not become ready:\n{}", n.error_log());
            std::thread::sleep(Duration::from_millis(20));
        }
        n
    }

    fn base(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    fn error_log(&self) -> String {
        std::fs::read_to_string(self.dir.join("error.log")).unwrap_or_default()
    }

    fn access_log(&self) -> Vec<String> {
        std::fs::read_to_string(self.dir.join("access.log")).unwrap_or_default().lines().map(String::from).collect()
    }
}

impl Drop for Nginx {
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

/// What the client traffic saw.
#[derive(Default)]
struct Tally {
    ok: AtomicU64,
    failures: Mutex<Vec<String>>,
}

/// One client: logs in, then loops authenticated GETs, a refresh every 5th round and a new
/// login every 25th, until `stop`.
async fn client(base: String, n: usize, stop: Arc<AtomicBool>, tally: Arc<Tally>) {
    let http = reqwest::Client::builder().timeout(Duration::from_secs(30)).build().unwrap();
    let api = |p: &str| format!("{base}/_gh/api/v1{p}");
    let ua = format!("rolling-client/{n}");
    let mut device: Option<String> = None;
    let (mut access, mut refresh) = (String::new(), String::new());
    let mut round = 0u64;
    while !stop.load(Ordering::Relaxed) {
        let (what, mut req, want) = if round.is_multiple_of(25) {
            ("login", http.post(api("/sessions")).json(&json!({ "email": EMAIL, "password": PW })), 201)
        } else if round.is_multiple_of(5) {
            ("refresh", http.post(api("/sessions/refresh")).json(&json!({ "refresh_token": refresh })), 200)
        } else {
            ("get", http.get(api("/account")).bearer_auth(&access), 200)
        };
        if let Some(d) = &device {
            req = req.header("gatehouse-device", d);
        }
        round += 1;
        let sent = Instant::now();
        match req.header("user-agent", &ua).send().await {
            Ok(r) if r.status().as_u16() == want => {
                let v: Value = r.json().await.unwrap_or(Value::Null);
                if let Some(a) = v["access_token"].as_str() {
                    access = a.to_owned();
                }
                if let Some(t) = v["refresh_token"].as_str() {
                    refresh = t.to_owned();
                }
                if let Some(d) = v["device_id"].as_str() {
                    device = Some(d.to_owned());
                }
                tally.ok.fetch_add(1, Ordering::Relaxed);
            }
            Ok(r) => {
                let status = r.status();
                let body = r.text().await.unwrap_or_default();
                tally.failures.lock().await.push(format!("{what}: {status} {body} after {:?}", sent.elapsed()));
            }
            Err(e) => tally.failures.lock().await.push(format!("{what}: {e} after {:?}", sent.elapsed())),
        }
    }
}

/// Polls until the traffic has `more` further successes than `from`.
async fn wait_for_traffic(tally: &Tally, from: u64, more: u64) -> u64 {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let now = tally.ok.load(Ordering::Relaxed);
        if now >= from + more {
            return now;
        }
        assert!(Instant::now() < deadline, "traffic stalled at {now} successes");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Registers and verifies the traffic's account through `base` (nginx).
async fn register(base: &str, sink: &SmtpSink) {
    let http = reqwest::Client::new();
    let r = http.post(format!("{base}/_gh/api/v1/accounts")).json(&json!({ "email": EMAIL, "password": PW }));
    assert_eq!(r.send().await.unwrap().status(), 202);
    let token = token_from_mail(&sink.wait_for(EMAIL, "Verify your email"));
    let r = http.post(format!("{base}/_gh/api/v1/accounts/verify-email")).json(&json!({ "token": token }));
    assert_eq!(r.send().await.unwrap().status(), 200);
}

/// Requests nginx passed to `port` in access-log lines from `since` on.
fn served_by(nginx: &Nginx, port: u16, since: usize) -> usize {
    let needle = format!("127.0.0.1:{port}");
    nginx.access_log().iter().skip(since).filter(|l| l.contains(&needle)).count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rolling_restart_under_traffic_fails_no_request() {
    let dir = scratch("rolling");
    let sink = SmtpSink::start(&dir);
    let env: Vec<(String, String)> = vec![
        ("GATEHOUSE_MAIL__TRANSPORT".into(), "smtp".into()),
        ("GATEHOUSE_MAIL__SMTP_PORT".into(), sink.port.to_string()),
        ("GATEHOUSE_LOG".into(), "info".into()),
        ("GATEHOUSE_STORAGE__DATABASE_URL".into(), fresh_pg_url().await),
        ("GATEHOUSE_STORAGE__REDIS_URL".into(), redis_url()),
        ("GATEHOUSE_SECRETS__MASTER_KEYS".into(), TEST_MASTER_KEY.into()),
        // The clients sign one account in again and again, many times a second: the risk engine
        // rightly holds such a burst (login velocity) for an emailed confirmation. What is under
        // test here is the restart, so the engine is off; risk_login.rs tests it.
        ("GATEHOUSE_RISK__ENABLED".into(), "false".into()),
    ];
    let ports = [free_port(), free_port()];
    let mut a = Instance::new("a", ports[0], &dir, env.clone());
    let mut b = Instance::new("b", ports[1], &dir, env);
    let nginx = Nginx::start(&dir, ports);

    register(&nginx.base(), &sink).await;

    let stop = Arc::new(AtomicBool::new(false));
    let tally = Arc::new(Tally::default());
    let workers: Vec<_> =
        (0..WORKERS).map(|n| tokio::spawn(client(nginx.base(), n, stop.clone(), tally.clone()))).collect();
    let mut seen = wait_for_traffic(&tally, 0, 40).await;

    let mut figures = Vec::new();
    for inst in [&mut a, &mut b] {
        let before = tally.ok.load(Ordering::Relaxed);
        let drain = tokio::task::block_in_place(|| inst.terminate());
        // Down: the other instance carries all the traffic.
        seen = wait_for_traffic(&tally, seen.max(before), 20).await;
        let while_down = seen - before;
        let mark = nginx.access_log().len();
        tokio::task::block_in_place(|| inst.start());
        // Back: it takes traffic again before the next instance stops.
        let deadline = Instant::now() + Duration::from_secs(30);
        while served_by(&nginx, inst.port, mark) == 0 {
            assert!(Instant::now() < deadline, "restarted instance {} got no traffic", inst.name);
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        seen = wait_for_traffic(&tally, seen, 20).await;
        figures.push(format!("{}: exited {drain:?} after SIGTERM, {while_down} requests served while down", inst.name));
    }
    stop.store(true, Ordering::Relaxed);
    for w in workers {
        w.await.unwrap();
    }

    let failures = tally.failures.lock().await.clone();
    let total = tally.ok.load(Ordering::Relaxed);
    let log = nginx.access_log();
    let retried = log.iter().filter(|l| l.contains(", 127.0.0.1:")).count();
    eprintln!(
        "rolling restart: {total} requests ok, {} failed, {retried} retried by nginx; {figures:?}",
        failures.len()
    );
    assert!(
        failures.is_empty(),
        "{} of {} requests failed during the rolling restart: {failures:#?}",
        failures.len(),
        total + failures.len() as u64
    );
    for port in ports {
        assert!(served_by(&nginx, port, 0) > 0);
    }
}
