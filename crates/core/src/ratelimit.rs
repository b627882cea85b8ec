//! Per-key rate limits with GCRA, and the headers that report them (R70, F4, F17).
//!
//! **Algorithm.** The generic cell rate algorithm (ITU-T I.371 / ATM Forum TM 4.0 "virtual
//! scheduling") keeps one number per bucket: the theoretical arrival time `TAT`. With emission
//! interval `T` (one request per `T` in the long run) and a burst of `B` requests at once
//! (tolerance `tau = (B − 1)·T`), a request of cost `n` at `now` is allowed iff
//! `max(TAT, now) + n·T − now ≤ tau + T`; then `TAT := max(TAT, now) + n·T`. A denied request
//! changes nothing and may retry after `max(TAT, now) + n·T − (tau + T) − now`. Example
//! (crates-and-tools.md §5.7): 10 req/s, burst 5 → `T = 100 ms`, `tau = 400 ms`: five requests
//! pass at once, the sixth must wait 100 ms (63 ms if 37 ms went by meanwhile).
//!
//! Why GCRA: one integer per bucket, O(1), no timers, exact at any instant (so it is tested at
//! fixed `Timestamp`s), and it runs unchanged as a Redis script ([`GCRA_LUA`]), which makes
//! the limit shared by every instance. All times are integer milliseconds; rates that do not
//! divide evenly round `T` **up**, so a configured limit is never exceeded.
//!
//! **Degraded mode (F4, F17).** When Redis cannot answer, an instance must not fall back to
//! "unlimited". [`DegradedShare`] divides each limit by the number of instances so that, in
//! steady state, N instances together admit no more than the shared limit.
//!
//! **Local limiter.** [`LocalLimiter`] is the in-memory keyed form (one node, tests, degraded
//! mode). It holds at most `max_keys` buckets; when full it refuses new buckets
//! ([`LimiterFull`]) instead of evicting live ones, because an evicted bucket is a reset
//! budget: whoever can churn keys could reset their own limit.

use std::collections::hash_map::RandomState;
use std::collections::{BTreeMap, HashMap};
use std::hash::BuildHasher;
use std::net::IpAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, MutexGuard, PoisonError};

use serde::{Deserialize, Serialize};

use crate::apikey::routes::RouteTable;
use crate::clock::{Span, Timestamp};

/// The Redis implementation of [`Gcra::check_n`]; see the script header for its contract.
/// Call it as `EVALSHA <sha> 1 <key> <T ms> <tau ms> <cost>`.
pub const GCRA_LUA: &str = concat!(include_str!("lua/gcra_lib.lua"), include_str!("lua/gcra.lua"));

/// A single-use record (`SET NX PX`) and then [`GCRA_LUA`]'s decision, in one script: the
/// gateway's replay and key-budget steps in one Redis round trip. Call it as
/// `EVALSHA <sha> 2 <record> <bucket> <ttl ms> <T ms> <tau ms> <cost>`; an empty reply means
/// the record existed (a replay, bucket untouched), otherwise the reply is [`GCRA_LUA`]'s.
pub const REPLAY_GCRA_LUA: &str = concat!(include_str!("lua/gcra_lib.lua"), include_str!("lua/replay_gcra.lua"));

/// A rate-limit group name (Upbit's `Remaining-Req` `group=`): `[a-z-]{1,32}`, starting with
/// a letter. pyupbit parses the header with `group=([a-z\-]+)`, hence no digits or `_`.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct RateGroup(String);

/// Why a group name was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct RateGroupError(&'static str);

impl RateGroupError {
    /// What is wrong.
    pub fn reason(self) -> &'static str {
        self.0
    }
}

impl RateGroup {
    /// Validates a name.
    pub fn new(name: &str) -> Result<Self, RateGroupError> {
        if name.is_empty() || name.len() > 32 {
            return Err(RateGroupError("group names are 1..=32 characters"));
        }
        if !name.starts_with(|c: char| c.is_ascii_lowercase())
            || !name.bytes().all(|b| b.is_ascii_lowercase() || b == b'-')
        {
            return Err(RateGroupError("group names are [a-z-] and start with a letter"));
        }
        Ok(Self(name.to_owned()))
    }

    /// The name.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for RateGroup {
    type Error = RateGroupError;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        Self::new(&s)
    }
}

impl From<RateGroup> for String {
    fn from(g: RateGroup) -> Self {
        g.0
    }
}

impl std::fmt::Display for RateGroup {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// Why limiter parameters were refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RateLimitError {
    /// Emission interval below 1 ms, burst 0, count 0, or a non-positive period.
    #[error("rate limit parameters out of range: {0}")]
    Parameters(&'static str),
    /// A group name is invalid.
    #[error("rate group: {0}")]
    Group(#[from] RateGroupError),
    /// The same group is configured twice.
    #[error("rate group {0} configured twice")]
    DuplicateGroup(String),
    /// A route uses a group that has no limit.
    #[error("route {method} {path} uses group {group} which has no limit")]
    MissingGroup {
        /// Route method.
        method: &'static str,
        /// Route pattern.
        path: String,
        /// The group.
        group: String,
    },
    /// A route's weight is above its group's burst, so it could never be allowed.
    #[error("route {method} {path} has weight {weight} above the burst of group {group}")]
    WeightAboveBurst {
        /// Route method.
        method: &'static str,
        /// Route pattern.
        path: String,
        /// The group.
        group: String,
        /// The weight.
        weight: u32,
    },
}

/// GCRA parameters for one bucket.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Gcra {
    emission_interval: Span,
    burst: u32,
}

/// The outcome of one check.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[must_use]
pub enum Decision {
    /// Go ahead; store `new_tat` (with a TTL of `reset_after`).
    Allow {
        /// The bucket's new theoretical arrival time.
        new_tat: Timestamp,
        /// Unit-cost requests that would still be allowed right now.
        remaining: u32,
        /// Until the bucket is full again (`new_tat − now`); never above `tau + T`, so it is
        /// also the TTL to store the bucket with.
        reset_after: Span,
    },
    /// Refuse with 429 and `Retry-After`; store nothing.
    Deny {
        /// How long until this request would be allowed (> 0).
        retry_after: Span,
        /// Until the bucket is full again.
        reset_after: Span,
    },
}

impl Decision {
    /// Whether the request may proceed.
    pub const fn is_allowed(&self) -> bool {
        matches!(self, Decision::Allow { .. })
    }

    /// Unit-cost requests still allowed now (0 when denied).
    pub const fn remaining(&self) -> u32 {
        match self {
            Decision::Allow { remaining, .. } => *remaining,
            Decision::Deny { .. } => 0,
        }
    }

    /// Until the bucket is full again.
    pub const fn reset_after(&self) -> Span {
        match self {
            Decision::Allow { reset_after, .. } | Decision::Deny { reset_after, .. } => *reset_after,
        }
    }

    /// The wait before a retry (zero when allowed).
    pub const fn retry_after(&self) -> Span {
        match self {
            Decision::Allow { .. } => Span::ZERO,
            Decision::Deny { retry_after, .. } => *retry_after,
        }
    }
}

fn to_u32(v: i64) -> u32 {
    u32::try_from(v.max(0)).unwrap_or(u32::MAX)
}

impl Gcra {
    /// One request per `emission_interval`, `burst` at once. `T ≥ 1 ms`, `burst ≥ 1`.
    pub fn new(emission_interval: Span, burst: u32) -> Result<Self, RateLimitError> {
        if emission_interval.as_millis() < 1 {
            return Err(RateLimitError::Parameters("emission interval must be at least 1 ms"));
        }
        if burst == 0 {
            return Err(RateLimitError::Parameters("burst must be at least 1"));
        }
        if emission_interval.as_millis().checked_mul(i64::from(burst)).is_none_or(|l| l > Span::days(1).as_millis()) {
            return Err(RateLimitError::Parameters("burst × interval must not exceed one day"));
        }
        Ok(Self { emission_interval, burst })
    }

    /// `count` requests per `period`, `burst` at once. `T = ⌈period / count⌉`, rounded up so
    /// the configured rate is never exceeded (30/s gives T = 34 ms, 29.4/s).
    pub fn per_period(count: u32, period: Span, burst: u32) -> Result<Self, RateLimitError> {
        if count == 0 || period.as_millis() <= 0 {
            return Err(RateLimitError::Parameters("count and period must be positive"));
        }
        let c = i64::from(count);
        if c > period.as_millis() {
            // The interval is kept in whole milliseconds (here and in the Redis script);
            // refusing is better than silently capping the rate at 1000/s.
            return Err(RateLimitError::Parameters("rates above one request per millisecond cannot be expressed"));
        }
        let t = (period.as_millis() + c - 1) / c;
        Self::new(Span::millis(t), burst)
    }

    /// The emission interval `T`.
    pub const fn emission_interval(&self) -> Span {
        self.emission_interval
    }

    /// Requests allowed at once.
    pub const fn burst(&self) -> u32 {
        self.burst
    }

    /// The tolerance `tau = (burst − 1)·T`, the second argument of [`GCRA_LUA`].
    pub const fn tau(&self) -> Span {
        Span::millis(self.emission_interval.as_millis() * (self.burst as i64 - 1))
    }

    /// `tau + T = burst·T`: the most a bucket can be "in debt", hence the longest TTL a stored
    /// bucket ever needs (an allowed request's `reset_after` never exceeds it, whatever its
    /// cost).
    pub const fn max_ttl(&self) -> Span {
        Span::millis(self.emission_interval.as_millis() * self.burst as i64)
    }

    /// Checks one unit-cost request against the stored `tat` (`None`: no bucket yet).
    pub fn check(&self, tat: Option<Timestamp>, now: Timestamp) -> Decision {
        self.check_n(tat, now, 1)
    }

    /// Checks a request of `cost` units (a route weight). `cost` 0 counts as 1. A cost above
    /// the burst can never be allowed; [`GroupLimits::check_routes`] refuses such routes.
    pub fn check_n(&self, tat: Option<Timestamp>, now: Timestamp, cost: u32) -> Decision {
        let t = self.emission_interval.as_millis();
        let limit = self.max_ttl().as_millis();
        let tat = tat.map_or(now, |x| x.max(now));
        let new_tat = tat.plus(Span::millis(t.saturating_mul(i64::from(cost.max(1)))));
        let allow_at = new_tat.minus(Span::millis(limit));
        if now >= allow_at {
            let reset_after = new_tat.since(now);
            Decision::Allow { new_tat, remaining: to_u32((limit - reset_after.as_millis()) / t), reset_after }
        } else {
            Decision::Deny { retry_after: allow_at.since(now), reset_after: tat.since(now) }
        }
    }

    /// Units in use for a bucket that is full again after `reset_after`:
    /// `⌈reset_after / T⌉` (Binance's "used weight").
    pub fn used(&self, reset_after: Span) -> u32 {
        let t = self.emission_interval.as_millis();
        to_u32((reset_after.as_millis().max(0) + t - 1) / t)
    }

    /// The per-instance share of this limit when `instances` instances each enforce it
    /// locally (F4): `T·N` and `max(1, ⌊burst / N⌋)`. The N shares together never exceed the
    /// rate; they exceed the burst only when `burst < N` (each instance keeps 1).
    pub fn divided(&self, instances: DegradedShare) -> Gcra {
        let n = instances.instances();
        Gcra {
            emission_interval: Span::millis(self.emission_interval.as_millis().saturating_mul(i64::from(n))),
            burst: (self.burst / n).max(1),
        }
    }
}

/// The number of instances a limit is shared by while Redis is unreachable (F4). Never 0, so
/// a degraded limit is never "unlimited" or a division by zero.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DegradedShare(u32);

impl DegradedShare {
    /// `instances` live instances; 0 is treated as 1 (the whole limit on this instance),
    /// which errs towards admitting less overall than N × limit when N is unknown.
    pub const fn new(instances: u32) -> Self {
        Self(if instances == 0 { 1 } else { instances })
    }

    /// The instance count.
    pub const fn instances(self) -> u32 {
        self.0
    }
}

/// One `[[rate_groups]]` entry: `count` requests (or weight units) per `period_ms`,
/// `burst` at once (defaults to `count`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GroupLimitConfig {
    /// Group name.
    pub name: String,
    /// Units per period.
    pub count: u32,
    /// Period in milliseconds.
    pub period_ms: i64,
    /// Units allowed at once; `count` when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub burst: Option<u32>,
}

/// The limit of every rate-limit group.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct GroupLimits {
    groups: BTreeMap<RateGroup, Gcra>,
}

impl GroupLimits {
    /// Validates a configuration.
    pub fn from_config(entries: &[GroupLimitConfig]) -> Result<Self, RateLimitError> {
        let mut groups = BTreeMap::new();
        for e in entries {
            let name = RateGroup::new(&e.name)?;
            let gcra = Gcra::per_period(e.count, Span::millis(e.period_ms), e.burst.unwrap_or(e.count))?;
            if groups.insert(name, gcra).is_some() {
                return Err(RateLimitError::DuplicateGroup(e.name.clone()));
            }
        }
        Ok(Self { groups })
    }

    /// Upbit's exchange groups (exchange-auth.md §1.7): `default` 30/s, `order` 8/s,
    /// `order-test` 8/s, `order-cancel-all` 1 per 2 s. Per account since 2023-10-24.
    pub fn upbit_default() -> Self {
        Self::from_config(&[
            GroupLimitConfig { name: "default".into(), count: 30, period_ms: 1000, burst: None },
            GroupLimitConfig { name: "order".into(), count: 8, period_ms: 1000, burst: None },
            GroupLimitConfig { name: "order-test".into(), count: 8, period_ms: 1000, burst: None },
            GroupLimitConfig { name: "order-cancel-all".into(), count: 1, period_ms: 2000, burst: None },
        ])
        .unwrap_or_default()
    }

    /// Binance-like budgets: `default` 6000 weight/min, `order` 100 orders/10 s, `sapi`
    /// 12000 weight/min.
    pub fn binance_default() -> Self {
        Self::from_config(&[
            GroupLimitConfig { name: "default".into(), count: 6000, period_ms: 60_000, burst: None },
            GroupLimitConfig { name: "order".into(), count: 100, period_ms: 10_000, burst: None },
            GroupLimitConfig { name: "sapi".into(), count: 12_000, period_ms: 60_000, burst: None },
        ])
        .unwrap_or_default()
    }

    /// The limit of `group`. `None` must be treated as a denial (fail closed);
    /// [`check_routes`](Self::check_routes) at start-up makes it impossible.
    pub fn get(&self, group: &RateGroup) -> Option<&Gcra> {
        self.groups.get(group)
    }

    /// Every route's group has a limit, and no weight exceeds its group's burst.
    pub fn check_routes(&self, table: &RouteTable) -> Result<(), RateLimitError> {
        for r in table.rules() {
            let Some(g) = self.groups.get(&r.group) else {
                return Err(RateLimitError::MissingGroup {
                    method: r.method.as_str(),
                    path: r.pattern.as_str().to_owned(),
                    group: r.group.to_string(),
                });
            };
            if r.weight > g.burst() {
                return Err(RateLimitError::WeightAboveBurst {
                    method: r.method.as_str(),
                    path: r.pattern.as_str().to_owned(),
                    group: r.group.to_string(),
                    weight: r.weight,
                });
            }
        }
        Ok(())
    }

    /// The per-instance limits to enforce locally while Redis is unreachable.
    pub fn degraded(&self, share: DegradedShare) -> GroupLimits {
        Self { groups: self.groups.iter().map(|(k, g)| (k.clone(), g.divided(share))).collect() }
    }
}

/// The in-memory limiter refused to create a bucket because it already holds `max_keys`
/// live ones. Answer 503 (or 429): never skip the limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("rate limiter full")]
pub struct LimiterFull;

const SHARDS: usize = 16;

/// A keyed, in-memory GCRA limiter: sharded mutexes, a bounded number of buckets, stale
/// buckets removed by [`retain`](Self::retain). Keys are chosen by the caller and must include
/// the group, e.g. `"order:<account id>"` (see [`ip_rate_key`] for per-IP keys).
#[derive(Debug)]
pub struct LocalLimiter {
    shards: Box<[Mutex<HashMap<String, Timestamp>>]>,
    hasher: RandomState,
    len: AtomicUsize,
    max_keys: usize,
}

impl LocalLimiter {
    /// A limiter holding at most `max_keys` live buckets. Size it for the distinct subjects
    /// active within one `tau + T`; a full bucket (`TAT ≤ now`) is as good as absent and is
    /// dropped by [`retain`](Self::retain).
    pub fn new(max_keys: usize) -> Self {
        Self {
            shards: (0..SHARDS).map(|_| Mutex::new(HashMap::new())).collect(),
            hasher: RandomState::new(),
            len: AtomicUsize::new(0),
            max_keys,
        }
    }

    fn shard(&self, key: &str) -> MutexGuard<'_, HashMap<String, Timestamp>> {
        let i = usize::try_from(self.hasher.hash_one(key) % SHARDS as u64).unwrap_or(0);
        // The maps hold plain values and no code here panics while holding a lock; a poisoned
        // lock still holds consistent buckets, so keep using them rather than lose every limit.
        self.shards[i].lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Checks and, when allowed, records a request of `cost` units against bucket `key`.
    pub fn check(&self, key: &str, gcra: &Gcra, cost: u32, now: Timestamp) -> Result<Decision, LimiterFull> {
        for attempt in 0..2 {
            {
                let mut shard = self.shard(key);
                let tat = shard.get(key).copied();
                let decision = gcra.check_n(tat, now, cost);
                let Decision::Allow { new_tat, .. } = decision else {
                    return Ok(decision);
                };
                if let Some(slot) = shard.get_mut(key) {
                    *slot = new_tat;
                    return Ok(decision);
                }
                let reserved = self
                    .len
                    .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| (n < self.max_keys).then_some(n + 1));
                if reserved.is_ok() {
                    shard.insert(key.to_owned(), new_tat);
                    return Ok(decision);
                }
            }
            if attempt == 0 {
                self.retain(now);
            }
        }
        Err(LimiterFull)
    }

    /// Drops buckets that are full again (`TAT ≤ now`); returns how many. Call it
    /// periodically (every few seconds) and it is also called when the limiter is full.
    pub fn retain(&self, now: Timestamp) -> usize {
        let mut removed = 0;
        for shard in self.shards.iter() {
            let mut map = shard.lock().unwrap_or_else(PoisonError::into_inner);
            let before = map.len();
            map.retain(|_, tat| *tat > now);
            removed += before - map.len();
        }
        self.len.fetch_sub(removed, Ordering::AcqRel);
        removed
    }

    /// Live buckets.
    pub fn len(&self) -> usize {
        self.len.load(Ordering::Acquire)
    }

    /// Whether no bucket is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// The bucket subject for per-IP limits: IPv4 (and IPv4-mapped IPv6) per address, IPv6 per
/// `/64`, since one IPv6 host usually controls a whole /64 and could otherwise rotate
/// addresses to escape the limit.
pub fn ip_rate_key(ip: IpAddr) -> String {
    match ip.to_canonical() {
        IpAddr::V4(v4) => format!("ip4:{v4}"),
        IpAddr::V6(v6) => {
            let s = v6.segments();
            format!("ip6:{:x}:{:x}:{:x}:{:x}::/64", s[0], s[1], s[2], s[3])
        }
    }
}

/// Upbit's deprecated `min=` field: documented as a fixed value to ignore, but pyupbit's
/// regex requires it, so it is always sent with this value.
pub const UPBIT_MIN_FIELD: u32 = 1800;

/// Upbit's `Remaining-Req` header value: `group=<g>; min=1800; sec=<remaining>`. Send it on
/// every Upbit-dialect response, errors included (pyupbit raises without it).
pub fn upbit_remaining_req(group: &RateGroup, decision: &Decision) -> String {
    format!("group={}; min={}; sec={}", group, UPBIT_MIN_FIELD, decision.remaining())
}

/// Binance's used-weight header: `X-MBX-USED-WEIGHT-1M: <units in use>`. Header names here are
/// lowercase, as HTTP/2 requires and HTTP/1.1 allows (names are case-insensitive; clients
/// match them so), which lets the server take them as they are.
pub fn binance_used_weight(gcra: &Gcra, decision: &Decision) -> (&'static str, String) {
    ("x-mbx-used-weight-1m", gcra.used(decision.reset_after()).to_string())
}

/// Generic headers: `RateLimit-Limit` (burst), `RateLimit-Remaining`, `RateLimit-Reset`
/// (seconds until full, rounded up) and, when denied, `Retry-After` (seconds, rounded up, at
/// least 1; RFC 9110 §10.2.3). Names in lowercase, as [`binance_used_weight`].
pub fn generic_headers(gcra: &Gcra, decision: &Decision) -> Vec<(&'static str, String)> {
    let mut h = vec![
        ("ratelimit-limit", gcra.burst().to_string()),
        ("ratelimit-remaining", decision.remaining().to_string()),
        ("ratelimit-reset", decision.reset_after().as_secs_ceil().max(0).to_string()),
    ];
    if let Decision::Deny { retry_after, .. } = decision {
        h.push(("retry-after", retry_after.as_secs_ceil().max(1).to_string()));
    }
    h
}

#[cfg(test)]
mod tests {
    use super::*;

    const T0: Timestamp = Timestamp::from_millis(1_700_000_000_000);

    fn at(ms: i64) -> Timestamp {
        T0.plus(Span::millis(ms))
    }

    fn g(t: i64, burst: u32) -> Gcra {
        let Ok(g) = Gcra::new(Span::millis(t), burst) else { unreachable!() };
        g
    }

    /// Runs a sequence of (offset ms, cost) requests against one bucket and returns what
    /// each got: `Ok(remaining)` or `Err(retry_after ms)`.
    fn run(gcra: &Gcra, reqs: &[(i64, u32)]) -> Vec<Result<u32, i64>> {
        let mut tat = None;
        reqs.iter()
            .map(|&(ms, cost)| match gcra.check_n(tat, at(ms), cost) {
                Decision::Allow { new_tat, remaining, reset_after } => {
                    assert!(reset_after <= gcra.max_ttl());
                    tat = Some(new_tat);
                    Ok(remaining)
                }
                Decision::Deny { retry_after, .. } => Err(retry_after.as_millis()),
            })
            .collect()
    }

    #[test]
    fn reference_case_10_per_second_burst_5() {
        // crates-and-tools.md §5.7: T = 100 ms, tau = 400 ms.
        let gcra = g(100, 5);
        assert_eq!(gcra.tau(), Span::millis(400));
        assert_eq!(gcra.max_ttl(), Span::millis(500));
        let got = run(&gcra, &[(0, 1), (0, 1), (0, 1), (0, 1), (0, 1), (0, 1), (37, 1), (99, 1), (100, 1), (100, 1)]);
        assert_eq!(got, [Ok(4), Ok(3), Ok(2), Ok(1), Ok(0), Err(100), Err(63), Err(1), Ok(0), Err(100)]);
        // After 250 ms idle, two slots have come back.
        assert_eq!(run(&gcra, &[(0, 5), (250, 1), (250, 1), (250, 1)]), [Ok(0), Ok(1), Ok(0), Err(50)]);
    }

    #[test]
    fn table_of_cases() {
        struct Case {
            t: i64,
            burst: u32,
            reqs: &'static [(i64, u32)],
            want: &'static [Result<u32, i64>],
        }
        let cases = [
            // burst 1: strictly one per T.
            Case {
                t: 2000,
                burst: 1,
                reqs: &[(0, 1), (1, 1), (1999, 1), (2000, 1)],
                want: &[Ok(0), Err(1999), Err(1), Ok(0)],
            },
            // Steady traffic exactly at the rate never gets denied.
            Case {
                t: 125,
                burst: 8,
                reqs: &[(0, 1), (125, 1), (250, 1), (375, 1)],
                want: &[Ok(7), Ok(7), Ok(7), Ok(7)],
            },
            // Weighted requests (Binance weight): cost 3 then cost 3 with burst 5.
            Case {
                t: 10,
                burst: 5,
                reqs: &[(0, 3), (0, 3), (10, 3), (20, 2)],
                want: &[Ok(2), Err(10), Ok(0), Err(10)],
            },
            // A cost above the burst is never allowed.
            Case { t: 10, burst: 5, reqs: &[(0, 6), (1000, 6)], want: &[Err(10), Err(10)] },
            // A long idle period does not bank more than the burst.
            Case {
                t: 100,
                burst: 2,
                reqs: &[(0, 1), (10_000, 1), (10_000, 1), (10_000, 1)],
                want: &[Ok(1), Ok(1), Ok(0), Err(100)],
            },
        ];
        for (i, c) in cases.iter().enumerate() {
            assert_eq!(run(&g(c.t, c.burst), c.reqs), c.want, "case {i}");
        }
    }

    #[test]
    fn deny_changes_nothing_and_reports_reset() {
        let gcra = g(100, 2);
        let Decision::Allow { new_tat, .. } = gcra.check_n(None, at(0), 2) else { unreachable!() };
        assert_eq!(new_tat, at(200));
        let d = gcra.check(Some(new_tat), at(50));
        assert_eq!(d, Decision::Deny { retry_after: Span::millis(50), reset_after: Span::millis(150) });
        assert_eq!(d.remaining(), 0);
        assert!(!d.is_allowed());
        // A stale TAT in the past is the same as no bucket.
        assert_eq!(gcra.check(Some(at(-5000)), at(0)), gcra.check(None, at(0)));
    }

    #[test]
    fn parameters_are_validated_and_rates_round_up() {
        assert!(Gcra::new(Span::ZERO, 1).is_err());
        assert!(Gcra::new(Span::millis(1), 0).is_err());
        assert!(Gcra::new(Span::hours(1), 25).is_err());
        assert!(Gcra::per_period(0, Span::secs(1), 1).is_err());
        assert!(Gcra::per_period(1, Span::ZERO, 1).is_err());
        assert_eq!(Gcra::per_period(30, Span::secs(1), 30).map(|g| g.emission_interval()), Ok(Span::millis(34)));
        assert_eq!(Gcra::per_period(8, Span::secs(1), 8).map(|g| g.emission_interval()), Ok(Span::millis(125)));
        // More than 1000/s cannot be expressed in whole ms: refused, never silently capped.
        assert!(Gcra::per_period(5000, Span::secs(1), 1).is_err());
        assert_eq!(Gcra::per_period(1000, Span::secs(1), 1).map(|g| g.emission_interval()), Ok(Span::millis(1)));
    }

    #[test]
    fn degraded_share_divides_and_is_never_unlimited() {
        let gcra = g(34, 30);
        let local = gcra.divided(DegradedShare::new(3));
        assert_eq!((local.emission_interval(), local.burst()), (Span::millis(102), 10));
        assert_eq!(gcra.divided(DegradedShare::new(0)), gcra);
        let tiny = g(2000, 1).divided(DegradedShare::new(4));
        assert_eq!((tiny.emission_interval(), tiny.burst()), (Span::millis(8000), 1));
        // N instances at their local share admit no more than the shared limit over time.
        let n = 4;
        let share = g(100, 8).divided(DegradedShare::new(n));
        let mut allowed = 0;
        for _ in 0..n {
            let mut tat = None;
            for ms in 0..10_000 {
                if let Decision::Allow { new_tat, .. } = share.check(tat, at(ms)) {
                    tat = Some(new_tat);
                    allowed += 1;
                }
            }
        }
        // Shared limit over 10 s: 8 burst + 10 000 / 100 = 108 (minus the first slot).
        assert!(allowed <= 108, "{allowed}");
        let limits = GroupLimits::upbit_default().degraded(DegradedShare::new(2));
        let Ok(default) = RateGroup::new("default") else { unreachable!() };
        assert_eq!(limits.get(&default).map(|g| g.burst()), Some(15));
    }

    #[test]
    fn group_names() {
        for ok in ["default", "order", "order-cancel-all", "a"] {
            assert!(RateGroup::new(ok).is_ok(), "{ok}");
        }
        for bad in ["", "Order", "order_test", "-x", "v1", "order test", &"a".repeat(33)] {
            assert!(RateGroup::new(bad).is_err(), "{bad}");
        }
        assert!(serde_json::from_str::<RateGroup>("\"ORDER\"").is_err());
    }

    #[test]
    fn default_group_limits_cover_default_routes() {
        let up = GroupLimits::upbit_default();
        assert_eq!(up.check_routes(&RouteTable::upbit_default()), Ok(()));
        let bn = GroupLimits::binance_default();
        assert_eq!(bn.check_routes(&RouteTable::binance_default()), Ok(()));
        assert!(matches!(up.check_routes(&RouteTable::binance_default()), Err(RateLimitError::MissingGroup { .. })));
        let Ok(cfg) = GroupLimits::from_config(&[GroupLimitConfig {
            name: "sapi".into(),
            count: 10,
            period_ms: 1000,
            burst: None,
        }]) else {
            unreachable!()
        };
        let mut with_default = GroupLimits::binance_default();
        with_default.groups.extend(cfg.groups);
        assert!(matches!(
            with_default.check_routes(&RouteTable::binance_default()),
            Err(RateLimitError::WeightAboveBurst { weight: 600, .. })
        ));
        let dup = GroupLimitConfig { name: "x".into(), count: 1, period_ms: 1000, burst: None };
        assert!(matches!(GroupLimits::from_config(&[dup.clone(), dup]), Err(RateLimitError::DuplicateGroup(_))));
    }

    #[test]
    fn local_limiter_shares_a_bucket_per_key_and_is_bounded() {
        let gcra = g(100, 2);
        let lim = LocalLimiter::new(2);
        assert!(lim.check("a", &gcra, 1, at(0)).is_ok_and(|d| d.is_allowed()));
        assert!(lim.check("a", &gcra, 1, at(0)).is_ok_and(|d| d.is_allowed()));
        assert_eq!(lim.check("a", &gcra, 1, at(0)).map(|d| d.retry_after()), Ok(Span::millis(100)));
        assert!(lim.check("b", &gcra, 1, at(0)).is_ok_and(|d| d.is_allowed()));
        assert_eq!(lim.len(), 2);
        // Full of live buckets: a new key is refused, live ones are never evicted.
        assert_eq!(lim.check("c", &gcra, 1, at(0)), Err(LimiterFull));
        assert_eq!(lim.check("a", &gcra, 1, at(0)).map(|d| d.is_allowed()), Ok(false));
        // Once buckets are full again they are dropped and room comes back.
        assert!(lim.check("c", &gcra, 1, at(200)).is_ok_and(|d| d.is_allowed()));
        assert_eq!(lim.len(), 1);
        assert_eq!(lim.retain(at(10_000)), 1);
        assert!(lim.is_empty());
    }

    #[test]
    fn local_limiter_is_exact_under_concurrency() {
        let gcra = g(1000, 50);
        let lim = LocalLimiter::new(10);
        let barrier = std::sync::Barrier::new(100);
        let allowed = AtomicUsize::new(0);
        std::thread::scope(|s| {
            for _ in 0..100 {
                s.spawn(|| {
                    barrier.wait();
                    if lim.check("k", &gcra, 1, at(0)).is_ok_and(|d| d.is_allowed()) {
                        allowed.fetch_add(1, Ordering::Relaxed);
                    }
                });
            }
        });
        assert_eq!(allowed.load(Ordering::Relaxed), 50);
    }

    #[test]
    fn ip_keys_group_ipv6_by_64() {
        let Ok(a) = "2001:db8:1:2:aaaa::1".parse::<IpAddr>() else { unreachable!() };
        let Ok(b) = "2001:db8:1:2:bbbb::9".parse::<IpAddr>() else { unreachable!() };
        assert_eq!(ip_rate_key(a), ip_rate_key(b));
        assert_eq!(ip_rate_key(a), "ip6:2001:db8:1:2::/64");
        let Ok(m) = "::ffff:10.1.2.3".parse::<IpAddr>() else { unreachable!() };
        assert_eq!(ip_rate_key(m), "ip4:10.1.2.3");
    }

    #[test]
    fn headers_for_each_dialect() {
        let gcra = g(34, 30);
        let Ok(group) = RateGroup::new("default") else { unreachable!() };
        let allow = gcra.check(None, at(0));
        assert_eq!(upbit_remaining_req(&group, &allow), "group=default; min=1800; sec=29");
        assert_eq!(binance_used_weight(&gcra, &allow), ("x-mbx-used-weight-1m", "1".to_owned()));
        let Decision::Allow { new_tat, .. } = gcra.check_n(None, at(0), 30) else { unreachable!() };
        let deny = gcra.check(Some(new_tat), at(0));
        assert_eq!(upbit_remaining_req(&group, &deny), "group=default; min=1800; sec=0");
        assert_eq!(binance_used_weight(&gcra, &deny).1, "30");
        assert_eq!(
            generic_headers(&gcra, &deny),
            [
                ("ratelimit-limit", "30".to_owned()),
                ("ratelimit-remaining", "0".to_owned()),
                ("ratelimit-reset", "2".to_owned()),
                ("retry-after", "1".to_owned()),
            ]
        );
        assert_eq!(generic_headers(&gcra, &allow).len(), 3);
    }

    /// The Lua script against the real Redis at 127.0.0.1:6379. Fails loudly when `redis-cli`
    /// or the server is not there: the test command starts Redis. The script returns the Redis time it used, so
    /// each answer is compared exactly with `Gcra::check_n` at that instant.
    #[test]
    fn lua_script_matches_the_rust_math_on_real_redis() {
        use std::process::Command;
        let cli = |args: &[&str]| -> Option<Vec<String>> {
            let out =
                Command::new("redis-cli").args(["-h", "127.0.0.1", "-p", "6379", "--raw"]).args(args).output().ok()?;
            // redis-cli exits 0 on an error reply and prints it: callers look for "ERR".
            out.status.success().then(|| String::from_utf8_lossy(&out.stdout).lines().map(str::to_owned).collect())
        };
        assert!(
            cli(&["PING"]).is_some_and(|l| l.first().map(String::as_str) == Some("PONG")),
            "REQUIRED SERVICE MISSING: Redis at 127.0.0.1:6379 (scripts/test starts it)"
        );
        let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos());
        let key = format!("gatehouse-test:gcra:{}:{nanos}", std::process::id());
        // T = 1 s so that the eight calls (a few ms each) all fall inside one interval.
        let gcra = g(1000, 5);
        let mut allowed = Vec::new();
        let (t, tau) = (gcra.emission_interval().as_millis().to_string(), gcra.tau().as_millis().to_string());
        for (i, cost) in [1u32, 1, 1, 1, 1, 1, 2, 1].into_iter().enumerate() {
            let prev = cli(&["GET", &key]).and_then(|l| l.first().and_then(|v| v.parse::<i64>().ok()));
            let Some(out) = cli(&["EVAL", GCRA_LUA, "1", &key, &t, &tau, &cost.to_string()]) else { unreachable!() };
            let v: Vec<i64> = out.iter().filter_map(|l| l.parse().ok()).collect();
            assert_eq!(v.len(), 5, "{out:?}");
            let now = Timestamp::from_millis(v[4]);
            let want = match gcra.check_n(prev.map(Timestamp::from_millis), now, cost) {
                Decision::Allow { remaining, reset_after, .. } => [1, 0, i64::from(remaining), reset_after.as_millis()],
                Decision::Deny { retry_after, reset_after } => [0, retry_after.as_millis(), 0, reset_after.as_millis()],
            };
            assert_eq!(v[..4], want, "request {i}");
            allowed.push(v[0]);
            if let Some(pttl) = cli(&["PTTL", &key]).and_then(|l| l.first().and_then(|v| v.parse::<i64>().ok())) {
                assert!(pttl <= gcra.max_ttl().as_millis(), "pttl {pttl}");
            }
        }
        assert_eq!(allowed, [1, 1, 1, 1, 1, 0, 0, 0]);
        let is_err =
            |out: Option<Vec<String>>| out.is_some_and(|l| l.first().is_some_and(|x| x.starts_with("ERR gcra")));
        assert!(is_err(cli(&["EVAL", GCRA_LUA, "1", &key, "0", "400"])));
        assert!(is_err(cli(&["EVAL", GCRA_LUA, "1", &key, "100", "400", "1.5"])));
        let _ = cli(&["SET", &key, "garbage"]);
        let corrupt = cli(&["EVAL", GCRA_LUA, "1", &key, &t, &tau]);
        let _ = cli(&["DEL", &key]);
        assert!(is_err(corrupt));
    }
}
