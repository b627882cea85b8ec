//! TOTP verification throughput over HTTP (issue 4 item 8).
//!
//! Starts a release `gatehouse serve` on embedded SQLite (WAL, `synchronous=FULL`) with the
//! test clock, creates `--users` verified accounts with TOTP enrolled through the public API
//! (weak Argon2 parameters for the seeding only: no password hash is on the measured path),
//! then, interleaved A/B over `--rounds` restarts of the same data directory:
//!   A: `db_group_commit = false` (every durable write its own commit, as before);
//!   B: `db_group_commit = true`;
//! and in each phase measures, for `--seconds`:
//!   - baseline: `GET /_gh/api/v1/account` (session lookup, no durable write);
//!   - `POST /_gh/api/v1/account/step-up` with method `totp` and a fresh code for every
//!     (user, step): each wave moves the server clock on by one 30 s step and sends one code per
//!     user; a success is a 201 carrying a step-up token and the session's new access token
//!     (R43; the used step, `totp_verified` and `step_up_succeeded` events, the token, the
//!     session proof and the rotated access token are one group-committed write, committed
//!     before the answer). Each user adopts its new access token for the next wave.
//!
//! Reports successes/s, p50/p99 latency and server CPU µs per request. Speed is measured here,
//! never asserted in tests.
//!
//! Usage: cargo run --release -p gatehouse-server --example totp_load -- \
//!   --binary target/release/gatehouse [--users 1000] [--seconds 8] [--concurrency 128] \
//!   [--rounds 3] [--server-cpu 1]
//!
//! `GH_BENCH_LOG=<filter>` (e.g. `warn,sqlx::query=debug`) sets the server's log filter and
//! keeps the temporary directory (the last server's log is `data.log` there): a way to count
//! the statements each request runs.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use gatehouse_core::clock::Timestamp;
use gatehouse_core::mfa::{TotpParams, TotpSecret, code_at};
use serde_json::{Value, json};

const PW: &str = "violet tram harbour 77";
const UA: &str = "totp-load/1.0";

struct Args {
    binary: PathBuf,
    users: usize,
    seconds: u64,
    concurrency: usize,
    rounds: usize,
    server_cpu: Option<String>,
}

fn args() -> Args {
    let mut a = Args {
        binary: PathBuf::from("target/release/gatehouse"),
        users: 1000,
        seconds: 8,
        concurrency: 128,
        rounds: 3,
        server_cpu: None,
    };
    let v: Vec<String> = std::env::args().skip(1).collect();
    let mut i = 0;
    while i + 1 < v.len() {
        let val = v[i + 1].clone();
        match v[i].as_str() {
            "--binary" => a.binary = val.into(),
            "--users" => a.users = val.parse().expect("--users"),
            "--seconds" => a.seconds = val.parse().expect("--seconds"),
            "--concurrency" => a.concurrency = val.parse().expect("--concurrency"),
            "--rounds" => a.rounds = val.parse().expect("--rounds"),
            "--server-cpu" => a.server_cpu = Some(val),
            other => panic!("unknown argument {other}"),
        }
        i += 2;
    }
    a
}

struct Server {
    child: Child,
    base: String,
}

impl Server {
    fn start(a: &Args, data: &Path, group_commit: bool) -> Self {
        let mut cmd = match &a.server_cpu {
            Some(cpu) => {
                let mut c = Command::new("taskset");
                c.arg("-c").arg(cpu).arg(&a.binary);
                c
            }
            None => Command::new(&a.binary),
        };
        cmd.arg("serve").arg("--listen").arg("127.0.0.1:0").arg("--data-dir").arg(data);
        for (k, v) in [
            ("GATEHOUSE_TESTING__DANGER_MANUAL_CLOCK", "true"),
            ("GATEHOUSE_TESTING__DANGER_WEAK_HASHING", "true"),
            ("GATEHOUSE_PASSWORD__ARGON2__M_KIB", "64"),
            ("GATEHOUSE_PASSWORD__ARGON2__T", "1"),
            ("GATEHOUSE_PASSWORD__ARGON2__P", "1"),
            ("GATEHOUSE_STORAGE__DB_GROUP_COMMIT", if group_commit { "true" } else { "false" }),
            // Thousands of sign-ins from one address and new device would each be challenged.
            ("GATEHOUSE_RISK__ENABLED", "false"),
            ("GATEHOUSE_LOG", "warn"),
        ] {
            cmd.env(k, v);
        }
        if let Ok(v) = std::env::var("GH_BENCH_LOG") {
            cmd.env("GATEHOUSE_LOG", v);
        }
        let log = std::fs::File::create(data.with_extension("log")).unwrap();
        let mut child = cmd.stdout(Stdio::piped()).stderr(Stdio::from(log)).spawn().expect("spawn gatehouse");
        let mut out = BufReader::new(child.stdout.take().unwrap());
        let mut line = String::new();
        loop {
            line.clear();
            assert!(out.read_line(&mut line).unwrap() > 0, "gatehouse exited");
            if line.contains("listening on") {
                break;
            }
        }
        let base = line.split_whitespace().last().unwrap().to_owned();
        // Keep draining stdout so the server never blocks on a full pipe.
        std::thread::spawn(move || for _ in out.lines() {});
        Self { child, base }
    }

    fn api(&self, p: &str) -> String {
        format!("{}/_gh/api/v1{p}", self.base)
    }

    fn cpu_secs(&self) -> f64 {
        let stat = std::fs::read_to_string(format!("/proc/{}/stat", self.child.id())).unwrap_or_default();
        let f: Vec<&str> = stat.rsplit(')').next().unwrap_or("").split_whitespace().collect();
        let ticks = |i: usize| f.get(i).and_then(|s| s.parse::<f64>().ok()).unwrap_or(0.0);
        (ticks(11) + ticks(12)) / 100.0
    }

    fn stop(mut self) {
        // SIGTERM, then wait: a clean shutdown between phases.
        let _ = Command::new("kill").arg(self.child.id().to_string()).status();
        let _ = self.child.wait();
    }
}

struct User {
    email: String,
    /// The current access token: every successful step-up rotates it (R43).
    access: std::sync::Mutex<String>,
    device: String,
    secret: TotpSecret,
}

async fn post(http: &reqwest::Client, url: &str, body: Value, auth: Option<(&str, &str)>) -> (u16, Value) {
    let mut r = http.post(url).header("user-agent", UA).json(&body);
    if let Some((a, d)) = auth {
        r = r.bearer_auth(a).header("gatehouse-device", d);
    }
    let resp = r.send().await.expect("request");
    (resp.status().as_u16(), resp.json().await.unwrap_or(Value::Null))
}

/// `post`, retried while the server sheds load (503) — seeding only, never on the measured path.
async fn post_retry(http: &reqwest::Client, url: &str, body: Value, auth: Option<(&str, &str)>) -> (u16, Value) {
    loop {
        let (s, v) = post(http, url, body.clone(), auth).await;
        if s != 503 {
            return (s, v);
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn set_clock(http: &reqwest::Client, srv: &Server, body: Value) -> i64 {
    let (s, v) = post(http, &format!("{}/_gh/test/clock", srv.base), body, None).await;
    assert_eq!(s, 200, "{v}");
    v["now_ms"].as_i64().unwrap()
}

fn verification_tokens(dir: &Path) -> HashMap<String, String> {
    let mut out = HashMap::new();
    for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let text = std::fs::read_to_string(e.path()).unwrap_or_default().replace("=\r\n", "").replace("=\n", "");
        let Some(to) = text.lines().find_map(|l| l.strip_prefix("To: ")) else { continue };
        let to = to.trim().trim_start_matches('<').trim_end_matches('>').to_owned();
        let tok = ["token=3D", "token="].iter().find_map(|m| {
            text.find(m).map(|i| {
                text[i + m.len()..]
                    .chars()
                    .take_while(|c| c.is_ascii_alphanumeric() || *c == '-' || *c == '_')
                    .collect::<String>()
            })
        });
        if let Some(t) = tok.filter(|t| t.len() == 43) {
            out.insert(to, t);
        }
    }
    out
}

async fn seed(http: &reqwest::Client, srv: &Server, data: &Path, n: usize, conc: usize) -> Vec<(String, TotpSecret)> {
    let emails: Vec<String> = (0..n).map(|i| format!("totp{i}@example.com")).collect();
    let idx = Arc::new(AtomicUsize::new(0));
    let mut tasks = vec![];
    for _ in 0..conc {
        let (http, url, emails, idx) = (http.clone(), srv.api("/accounts"), emails.clone(), idx.clone());
        tasks.push(tokio::spawn(async move {
            loop {
                let i = idx.fetch_add(1, Ordering::Relaxed);
                let Some(e) = emails.get(i) else { break };
                let (s, v) = post_retry(&http, &url, json!({ "email": e, "password": PW }), None).await;
                assert_eq!(s, 202, "register {e}: {v}");
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    // The file transport writes each mail before the register call answers or soon after:
    // poll the directory until every verification mail is there.
    let deadline = Instant::now() + Duration::from_secs(120);
    let tokens = loop {
        let t = verification_tokens(&data.join("mail"));
        if t.len() >= n {
            break t;
        }
        assert!(Instant::now() < deadline, "only {} of {n} verification mails", t.len());
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let tokens = Arc::new(tokens);
    let idx = Arc::new(AtomicUsize::new(0));
    let mut tasks = vec![];
    for _ in 0..conc {
        let (http, emails, idx, tokens) = (http.clone(), emails.clone(), idx.clone(), tokens.clone());
        let (verify, login, start, confirm, clock) = (
            srv.api("/accounts/verify-email"),
            srv.api("/sessions"),
            srv.api("/account/factors/totp"),
            srv.api("/account/factors/totp/confirm"),
            format!("{}/_gh/test/clock", srv.base),
        );
        tasks.push(tokio::spawn(async move {
            let mut users = vec![];
            loop {
                let i = idx.fetch_add(1, Ordering::Relaxed);
                let Some(e) = emails.get(i) else { break };
                let (s, v) = post_retry(&http, &verify, json!({ "token": tokens[e] }), None).await;
                assert_eq!(s, 200, "verify {e}: {v}");
                let (s, v) = post_retry(&http, &login, json!({ "email": e, "password": PW }), None).await;
                assert_eq!(s, 201, "login {e}: {v}");
                let access = v["access_token"].as_str().unwrap().to_owned();
                let device = v["device_id"].as_str().unwrap().to_owned();
                let auth = Some((access.as_str(), device.as_str()));
                let (s, v) = post_retry(&http, &start, json!({ "password": PW }), auth).await;
                assert_eq!(s, 201, "totp start {e}: {v}");
                let secret = TotpSecret::from_base32(v["secret"].as_str().unwrap()).unwrap();
                let (_, c) = post_retry(&http, &clock, json!({ "advance_ms": 0 }), None).await;
                let now = Timestamp::from_millis(c["now_ms"].as_i64().unwrap());
                let code = code_at(&secret, &TotpParams::ENROLMENT, now);
                let (s, v) = post_retry(&http, &confirm, json!({ "code": code }), auth).await;
                assert_eq!(s, 200, "totp confirm {e}: {v}");
                users.push((e.clone(), secret));
            }
            users
        }));
    }
    let mut users = vec![];
    for t in tasks {
        users.extend(t.await.unwrap());
    }
    users
}

/// Signs every account in (password, then a TOTP code at the server's current step): access
/// tokens live at most 10 minutes of server time, so each phase starts with fresh sessions.
async fn login_all(
    http: &reqwest::Client,
    srv: &Server,
    creds: &[(String, TotpSecret)],
    conc: usize,
) -> Arc<Vec<User>> {
    let now = set_clock(http, srv, json!({ "advance_ms": 0 })).await;
    let creds: Arc<Vec<(String, TotpSecret)>> = Arc::new(creds.to_vec());
    let idx = Arc::new(AtomicUsize::new(0));
    let mut tasks = vec![];
    for _ in 0..conc {
        let (http, creds, idx) = (http.clone(), creds.clone(), idx.clone());
        let (login, second) = (srv.api("/sessions"), srv.api("/sessions/second-factor"));
        tasks.push(tokio::spawn(async move {
            let mut users = vec![];
            loop {
                let i = idx.fetch_add(1, Ordering::Relaxed);
                let Some((e, secret)) = creds.get(i) else { break };
                let (s, v) = post_retry(&http, &login, json!({ "email": e, "password": PW }), None).await;
                assert_eq!(s, 200, "login {e}: {v}");
                let code = code_at(secret, &TotpParams::ENROLMENT, Timestamp::from_millis(now));
                let body = json!({ "pending_token": v["pending_token"], "method": "totp", "code": code });
                let (s, v) = post_retry(&http, &second, body, None).await;
                assert_eq!(s, 201, "second factor {e}: {v}");
                users.push(User {
                    email: e.clone(),
                    access: std::sync::Mutex::new(v["access_token"].as_str().unwrap().to_owned()),
                    device: v["device_id"].as_str().unwrap().to_owned(),
                    secret: secret.clone(),
                });
            }
            users
        }));
    }
    let mut users = vec![];
    for t in tasks {
        users.extend(t.await.unwrap());
    }
    Arc::new(users)
}

#[derive(Default)]
struct Sample {
    ok: usize,
    other: HashMap<u16, usize>,
    lat_us: Vec<u64>,
    secs: f64,
    cpu_us_per_req: f64,
}

impl Sample {
    fn rate(&self) -> f64 {
        self.ok as f64 / self.secs
    }
    fn pct(&mut self, p: f64) -> f64 {
        self.lat_us.sort_unstable();
        let i = ((self.lat_us.len() as f64 - 1.0) * p).round() as usize;
        self.lat_us.get(i).copied().unwrap_or(0) as f64 / 1000.0
    }
}

async fn baseline(http: &reqwest::Client, srv: &Server, users: &Arc<Vec<User>>, a: &Args) -> Sample {
    let url = srv.api("/account");
    let idx = Arc::new(AtomicUsize::new(0));
    let cpu0 = srv.cpu_secs();
    let t0 = Instant::now();
    let until = t0 + Duration::from_secs(a.seconds);
    let mut tasks = vec![];
    for _ in 0..a.concurrency {
        let (http, url, users, idx) = (http.clone(), url.clone(), users.clone(), idx.clone());
        tasks.push(tokio::spawn(async move {
            let mut s = Sample::default();
            while Instant::now() < until {
                let u = &users[idx.fetch_add(1, Ordering::Relaxed) % users.len()];
                let t = Instant::now();
                let access = u.access.lock().unwrap().clone();
                let r = http
                    .get(&url)
                    .header("user-agent", UA)
                    .bearer_auth(access)
                    .header("gatehouse-device", &u.device)
                    .send()
                    .await
                    .expect("get");
                let st = r.status().as_u16();
                let _ = r.bytes().await;
                s.lat_us.push(t.elapsed().as_micros() as u64);
                if st == 200 {
                    s.ok += 1;
                } else {
                    *s.other.entry(st).or_default() += 1;
                }
            }
            s
        }));
    }
    merge(tasks, t0, cpu0, srv).await
}

async fn merge(tasks: Vec<tokio::task::JoinHandle<Sample>>, t0: Instant, cpu0: f64, srv: &Server) -> Sample {
    let mut all = Sample::default();
    for t in tasks {
        let s = t.await.unwrap();
        all.ok += s.ok;
        for (k, v) in s.other {
            *all.other.entry(k).or_default() += v;
        }
        all.lat_us.extend(s.lat_us);
    }
    all.secs = t0.elapsed().as_secs_f64();
    let n = all.lat_us.len().max(1) as f64;
    all.cpu_us_per_req = (srv.cpu_secs() - cpu0) * 1e6 / n;
    all
}

async fn step_ups(http: &reqwest::Client, srv: &Server, users: &Arc<Vec<User>>, a: &Args) -> Sample {
    let url = srv.api("/account/step-up");
    let cpu0 = srv.cpu_secs();
    let t0 = Instant::now();
    let until = t0 + Duration::from_secs(a.seconds);
    let mut all = Sample::default();
    // Waves: one fresh step for every user per wave, the clock moved on between waves.
    while Instant::now() < until {
        let now = set_clock(http, srv, json!({ "advance_ms": 30_000 })).await;
        // Aim at the middle of the step so it cannot roll over under the wave.
        let now = set_clock(http, srv, json!({ "set_ms": now - now % 30_000 + 10_000 })).await;
        let idx = Arc::new(AtomicUsize::new(0));
        let mut tasks = vec![];
        for _ in 0..a.concurrency {
            let (http, url, users, idx) = (http.clone(), url.clone(), users.clone(), idx.clone());
            tasks.push(tokio::spawn(async move {
                let mut s = Sample::default();
                while let Some(u) = users.get(idx.fetch_add(1, Ordering::Relaxed)) {
                    let code = code_at(&u.secret, &TotpParams::ENROLMENT, Timestamp::from_millis(now));
                    let body = json!({ "action": "create_api_key", "method": "totp", "code": code });
                    let t = Instant::now();
                    let access = u.access.lock().unwrap().clone();
                    let (st, v) = post(&http, &url, body, Some((&access, &u.device))).await;
                    s.lat_us.push(t.elapsed().as_micros() as u64);
                    if let (201, Some(rotated), true) = (st, v["access_token"].as_str(), v["step_up_token"].is_string())
                    {
                        *u.access.lock().unwrap() = rotated.to_owned();
                        s.ok += 1;
                    } else {
                        *s.other.entry(st).or_default() += 1;
                        if s.other.values().sum::<usize>() <= 2 {
                            eprintln!("step-up for {} answered {st}: {v}", u.email);
                        }
                    }
                }
                s
            }));
        }
        for t in tasks {
            let s = t.await.unwrap();
            all.ok += s.ok;
            for (k, v) in s.other {
                *all.other.entry(k).or_default() += v;
            }
            all.lat_us.extend(s.lat_us);
        }
    }
    all.secs = t0.elapsed().as_secs_f64();
    let n = all.lat_us.len().max(1) as f64;
    all.cpu_us_per_req = (srv.cpu_secs() - cpu0) * 1e6 / n;
    all
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    if v.is_empty() { 0.0 } else { v[v.len() / 2] }
}

#[tokio::main]
async fn main() {
    let a = args();
    let tmp = std::env::temp_dir().join(format!("gh-totp-load-{}", std::process::id()));
    std::fs::create_dir_all(&tmp).unwrap();
    let data = tmp.join("data");
    let http = reqwest::Client::builder().pool_max_idle_per_host(a.concurrency * 2).build().unwrap();
    let srv = Server::start(&a, &data, true);
    let t = Instant::now();
    let creds = seed(&http, &srv, &data, a.users, 16).await;
    let mut clock_ms = set_clock(&http, &srv, json!({ "advance_ms": 30_000 })).await;
    eprintln!("seeded {} users in {:.1}s", creds.len(), t.elapsed().as_secs_f64());
    srv.stop();

    // label -> (successes/s, p50, p99, cpu µs/req) per round
    let mut table: Vec<(String, Vec<[f64; 4]>)> =
        ["baseline GET /account", "step-up TOTP, per-request commits", "step-up TOTP, group commit"]
            .iter()
            .map(|s| (s.to_string(), vec![]))
            .collect();
    for round in 0..a.rounds {
        for group in [false, true] {
            let srv = Server::start(&a, &data, group);
            // The manual clock starts from the wall clock again: put it back where we were.
            set_clock(&http, &srv, json!({ "set_ms": clock_ms })).await;
            let users = login_all(&http, &srv, &creds, 16).await;
            if !group {
                let mut b = baseline(&http, &srv, &users, &a).await;
                eprintln!("round {round} baseline: {:.0}/s other {:?}", b.rate(), b.other);
                table[0].1.push([b.rate(), b.pct(0.5), b.pct(0.99), b.cpu_us_per_req]);
            }
            let mut s = step_ups(&http, &srv, &users, &a).await;
            eprintln!(
                "round {round} group_commit={group}: {} ok in {:.1}s = {:.0}/s, other {:?}",
                s.ok,
                s.secs,
                s.rate(),
                s.other
            );
            table[if group { 2 } else { 1 }].1.push([s.rate(), s.pct(0.5), s.pct(0.99), s.cpu_us_per_req]);
            clock_ms = set_clock(&http, &srv, json!({ "advance_ms": 30_000 })).await;
            srv.stop();
        }
    }
    println!("| case | successes/s | p50 ms | p99 ms | server CPU µs/req | rounds (successes/s) |");
    println!("|---|---:|---:|---:|---:|---|");
    for (name, rows) in &table {
        let col = |i: usize| median(rows.iter().map(|r| r[i]).collect());
        let each: Vec<String> = rows.iter().map(|r| format!("{:.0}", r[0])).collect();
        println!("| {name} | {:.0} | {:.2} | {:.2} | {:.0} | {} |", col(0), col(1), col(2), col(3), each.join(", "));
    }
    if std::env::var("GH_BENCH_LOG").is_err() {
        let _ = std::fs::remove_dir_all(&tmp);
    }
}
