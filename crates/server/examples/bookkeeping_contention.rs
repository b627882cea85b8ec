//! What a gateway request's bookkeeping costs when several threads do it at once (issue 3):
//! the metrics of one request (request count and latency, four counters), the usage log entry,
//! the API-key risk lookup and call count — the per-request shared state outside the
//! verification itself. Each thread records R requests for its own keys; the program prints
//! the time per request per thread for one thread, two threads sharing one gateway's state
//! (as a server's workers do) and two threads with a state each (nothing shared: what two
//! threads cost on this machine, whose two vCPUs may share a physical core). The gap between
//! the last two is what sharing costs.
//!
//! Usage: cargo run --release -p gatehouse-server --example bookkeeping_contention [rounds]

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::IpAddr;
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use gatehouse_core::apikey::ApiKeyId;
use gatehouse_core::clock::Timestamp;
use gatehouse_core::ids::UserId;
use gatehouse_core::rng::SeededRng;
use gatehouse_server::gateway::usage::{UsageLog, Use};
use gatehouse_server::metrics::Metrics;
use gatehouse_server::risk::{RiskConfig, RiskService};

const REQUESTS: usize = 400_000;
const KEYS_PER_THREAD: usize = 64;

struct Shared {
    metrics: Metrics,
    usage: UsageLog,
    risk: RiskService,
}

/// One thread's requests; returns the wall time they took.
fn run(shared: &Shared, keys: &[(ApiKeyId, UserId, String)], barrier: &Barrier) -> Duration {
    let route: Arc<str> = "GET /api/v3/account".into();
    let ip: IpAddr = "203.0.113.9".parse().unwrap();
    let now = Timestamp::from_millis(1_800_000_000_000);
    barrier.wait();
    let started = Instant::now();
    for i in 0..REQUESTS {
        let (key, owner, text) = &keys[i % keys.len()];
        let m = &shared.metrics;
        m.inc("gatehouse_rate_limit_total", &[("result", "allow")]);
        let _ = shared.risk.recent_api_decision(text, ip, "view_assets", now);
        m.inc("gatehouse_replay_inserts_total", &[("result", "fresh")]);
        m.inc("gatehouse_rate_limit_total", &[("result", "allow")]);
        let u = Use { key: *key, owner: *owner, route: &route, now, ip, user_agent: Some("ccxt/4.5") };
        shared.usage.record(&u, "ok");
        shared.risk.record_api_call(text, now);
        m.inc("gatehouse_gateway_decisions_total", &[("dialect", "binance"), ("outcome", "ok")]);
        m.request(&route, "GET", 200, Duration::from_micros(40));
    }
    started.elapsed()
}

fn main() {
    let rounds: usize = std::env::args().nth(1).and_then(|a| a.parse().ok()).unwrap_or(5);
    let rng = SeededRng::new(7);
    let now = Timestamp::from_millis(1_800_000_000_000);
    let keys: Vec<Vec<_>> = (0..2)
        .map(|_| {
            (0..KEYS_PER_THREAD)
                .map(|_| {
                    let key = ApiKeyId::generate(&rng);
                    (key, UserId::generate(now, &rng), key.to_string())
                })
                .collect()
        })
        .collect();
    println!("case | ns per request per thread (median of {rounds}) | all rounds");
    let fresh = || Shared {
        metrics: Metrics::default(),
        usage: UsageLog::default(),
        risk: RiskService::new(&RiskConfig::default()).unwrap(),
    };
    let mut medians = Vec::new();
    for (label, threads, states) in
        [("1 thread", 1usize, 1usize), ("2 threads, one state", 2, 1), ("2 threads, a state each", 2, 2)]
    {
        let mut per_request = Vec::new();
        for _ in 0..rounds {
            let states: Vec<Shared> = (0..states).map(|_| fresh()).collect();
            let barrier = Barrier::new(threads);
            let took: Vec<Duration> = std::thread::scope(|s| {
                let handles: Vec<_> = (0..threads)
                    .map(|t| {
                        let (shared, keys, barrier) = (&states[t % states.len()], &keys[t], &barrier);
                        s.spawn(move || run(shared, keys, barrier))
                    })
                    .collect();
                handles.into_iter().map(|h| h.join().unwrap()).collect()
            });
            let slowest = took.into_iter().max().unwrap();
            per_request.push(slowest.as_nanos() as f64 / REQUESTS as f64);
        }
        let mut sorted = per_request.clone();
        sorted.sort_by(f64::total_cmp);
        let median = sorted[sorted.len() / 2];
        medians.push(median);
        let all: Vec<String> = per_request.iter().map(|v| format!("{v:.0}")).collect();
        println!("{label} | {median:.0} | {}", all.join(" "));
    }
    println!(
        "one state / a state each (what sharing costs): {:.2}×; a state each / 1 thread (the machine): {:.2}×",
        medians[1] / medians[2],
        medians[2] / medians[0]
    );
}
