//! Cost of one [`ReplayCache::insert_if_absent`] in a cache at steady state: about a million
//! live entries, and every insert evicting, on average, one entry that has just expired (the
//! load the cache sees at ≈ 16 000 accepted signed requests per second with the default 64 s
//! retention).
//!
//! * `replay/insert_1M_churn`: one TTL (64 s), 16 inserts per millisecond of the clock.
//! * `replay/insert_churn_64s_9s`: the same rate, alternating between 64 s and 9 s (the
//!   retention of a Binance request with the default 5 s `recvWindow`), so two TTLs churn
//!   side by side (≈ 580 000 live entries).
//!
//! Keys (SHA-256 digests) are derived outside the timed loop.
//!
//! Run: `cargo bench -p gatehouse-core --bench replay -- --warm-up-time 1 --measurement-time 3`
//! (`GH_BENCH_RATIOS=1` also prints the load-robust fastest and median batch). Needs
//! `[[bench]] name = "replay"`, `harness = false` in the crate's manifest.

use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::{Criterion, criterion_group, criterion_main};
use gatehouse_core::clock::{Span, Timestamp};
use gatehouse_core::replay::{InsertOutcome, ReplayCache, ReplayKey};

const T0_MS: i64 = 1_700_000_000_000;
/// Inserts per millisecond of the simulated clock.
const PER_MS: u64 = 16;
/// Long TTL: 64 s × 16 per ms ≈ 1.02 M live entries at steady state.
const LONG: Span = Span::secs(64);
/// Short TTL of the two-TTL case.
const SHORT: Span = Span::secs(9);
/// Keys derived per batch outside the timed region.
const BATCH: u64 = 16_384;

fn key(n: u64) -> ReplayKey {
    ReplayKey::derive("bench", &[&n.to_be_bytes()])
}

fn at(n: u64) -> Timestamp {
    Timestamp::from_millis(T0_MS.saturating_add(i64::try_from(n / PER_MS).unwrap_or(i64::MAX)))
}

/// A cache filled to steady state by `prefill` inserts, with the ttl chosen by `ttl_of(n)`.
fn filled(prefill: u64, ttl_of: fn(u64) -> Span) -> ReplayCache {
    let cache = ReplayCache::new(4_000_000);
    for n in 0..prefill {
        if cache.insert_if_absent(&key(n), at(n), ttl_of(n)) != InsertOutcome::Fresh {
            eprintln!("bench setup failed: prefill insert {n} not fresh");
            std::process::exit(1)
        }
    }
    cache
}

fn bench_case(c: &mut Criterion, name: &str, ttl_of: fn(u64) -> Span) {
    // Criterion calls the routine once per sample: fill the cache once, outside it.
    let prefill = u64::try_from(LONG.as_millis()).unwrap_or(0) * PER_MS;
    let cache = filled(prefill, ttl_of);
    eprintln!("{name}: {} live entries before the run", cache.len());
    let mut next = prefill;
    let mut keys = Vec::with_capacity(usize::try_from(BATCH).unwrap_or(0));
    let mut not_fresh = 0usize;
    let mut g = c.benchmark_group("replay");
    g.bench_function(name, |b| {
        b.iter_custom(|iters| {
            let mut spent = Duration::ZERO;
            let mut left = iters;
            while left > 0 {
                let n = left.min(BATCH);
                keys.clear();
                keys.extend((next..next + n).map(|i| (key(i), at(i), ttl_of(i))));
                let start = Instant::now();
                for (k, now, ttl) in &keys {
                    not_fresh += usize::from(!black_box(cache.insert_if_absent(k, *now, *ttl)).is_fresh());
                }
                spent += start.elapsed();
                next += n;
                left -= n;
            }
            spent
        })
    });
    g.finish();
    // On a shared machine criterion's means move with the load. With GH_BENCH_RATIOS=1, also
    // print the fastest and the median of many batches; preemption by other processes can only
    // slow a batch down, never speed it up.
    if std::env::var_os("GH_BENCH_RATIOS").is_some() {
        let mut per_insert = Vec::with_capacity(200);
        for _ in 0..200 {
            keys.clear();
            keys.extend((next..next + BATCH).map(|i| (key(i), at(i), ttl_of(i))));
            let start = Instant::now();
            for (k, now, ttl) in &keys {
                not_fresh += usize::from(!black_box(cache.insert_if_absent(k, *now, *ttl)).is_fresh());
            }
            per_insert.push(start.elapsed().as_secs_f64() * 1e9 / BATCH as f64);
            next += BATCH;
        }
        per_insert.sort_by(f64::total_cmp);
        eprintln!(
            "min-of-batches {name}: {:.0} ns per insert (median batch {:.0} ns)",
            per_insert[0],
            per_insert[per_insert.len() / 2]
        );
    }
    eprintln!("{name}: {} live entries after the run, {not_fresh} inserts not fresh", cache.len());
}

fn bench(c: &mut Criterion) {
    bench_case(c, "insert_1M_churn", |_| LONG);
    bench_case(c, "insert_churn_64s_9s", |n| if n % 2 == 0 { LONG } else { SHORT });
}

criterion_group!(benches, bench);
criterion_main!(benches);
