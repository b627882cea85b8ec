//! The API-key usage log (R72): per key, last use (time, IP, user agent) and counts per route
//! and outcome, accumulated in memory and flushed in batches so the request path never waits
//! for a database write. Denials are also audited in aggregated events (one per key, route and
//! reason per flush), which bounds audit writes under a flood of bad signatures while still
//! recording every denial with its count.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Arc;

use gatehouse_core::apikey::ApiKeyId;
use gatehouse_core::audit::{AuditEvent, EventKind, Outcome};
use gatehouse_core::clock::Timestamp;
use gatehouse_core::ids::UserId;
use gatehouse_core::store::{KeyLastUse, KeyUsage};

use crate::sharded::{PARTS, Sharded};

#[derive(Debug, Default)]
struct Counter {
    count: u64,
    last_at: Option<Timestamp>,
    owner: Option<UserId>,
    /// The first few client addresses seen.
    ips: Vec<IpAddr>,
}

impl Counter {
    const MAX_IPS: usize = 8;

    fn note_ip(&mut self, ip: IpAddr) {
        if self.ips.len() < Self::MAX_IPS && !self.ips.contains(&ip) {
            self.ips.push(ip);
        }
    }

    /// Adds `other` (another part's count of the same key, route and outcome).
    fn add(&mut self, other: Counter) {
        self.count += other.count;
        self.last_at = self.last_at.max(other.last_at);
        self.owner = self.owner.or(other.owner);
        for ip in other.ips {
            self.note_ip(ip);
        }
    }
}

/// What one flush hands to the store.
#[derive(Debug, Default)]
pub struct Flush {
    /// Usage counts.
    pub usage: Vec<KeyUsage>,
    /// Last successful uses.
    pub last: Vec<KeyLastUse>,
    /// Aggregated denial events.
    pub events: Vec<AuditEvent>,
    /// Successful uses per key with their IPs, oldest first (for new-network alerts).
    pub ips: Vec<(ApiKeyId, UserId, String)>,
    /// Bad-signature counts per key in this window.
    pub bad_signatures: Vec<(ApiKeyId, UserId, u64)>,
    /// Scope violations per key in this window.
    pub scope_violations: Vec<(ApiKeyId, UserId, String)>,
}

/// The facts of one request with a known key.
#[derive(Debug, Clone, Copy)]
pub struct Use<'a> {
    /// The key.
    pub key: ApiKeyId,
    /// Its owner.
    pub owner: UserId,
    /// Route label.
    pub route: &'a Arc<str>,
    /// When.
    pub now: Timestamp,
    /// Client IP.
    pub ip: IpAddr,
    /// User agent.
    pub user_agent: Option<&'a str>,
}

/// Key, route label, outcome.
type CountKey = (ApiKeyId, Arc<str>, &'static str);

/// Key, the route label's address, outcome: how a part finds a counter without touching the
/// label's reference count (an atomic shared by every core) on each request. Labels are shared
/// per route table, so one route has one address; the part keeps the label beside the counter,
/// which keeps the address alive.
type PartKey = (ApiKeyId, usize, &'static str);

/// First successful uses kept per part and window (the alert check reads them).
const FIRST_OK_PER_PART: usize = 100_000 / PARTS;

/// One part of the log: what one worker thread recorded since the last drain.
#[derive(Debug, Default)]
struct Part {
    counts: HashMap<PartKey, (Arc<str>, Counter)>,
    last: HashMap<ApiKeyId, (UserId, IpAddr, KeyLastUse)>,
    /// First successful use of each (key, IP) in this window, to order new-network checks.
    first_ok: HashMap<(ApiKeyId, IpAddr), (UserId, Timestamp)>,
}

/// The in-memory accumulator. The request path allocates nothing once a key, route and IP
/// have been seen in the window (route labels are shared, IPs are kept as addresses and
/// formatted at flush), and takes one lock: its own thread's part, which no other core touches
/// between drains. A drain merges the parts (counts added, the latest last use, the earliest
/// first use).
#[derive(Debug, Default)]
pub struct UsageLog {
    parts: Sharded<Part>,
}

impl UsageLog {
    /// Records one request outcome (`ok` or a denial reason) for a known key.
    pub fn record(&self, u: &Use<'_>, outcome: &'static str) {
        let Use { key, owner, route, now, ip, user_agent } = *u;
        let mut part = self.parts.mine();
        let label = Arc::as_ptr(route).cast::<u8>() as usize;
        let (_, c) =
            part.counts.entry((key, label, outcome)).or_insert_with(|| (Arc::clone(route), Counter::default()));
        c.count += 1;
        c.last_at = Some(now);
        c.owner = Some(owner);
        c.note_ip(ip);
        if outcome != "ok" {
            return;
        }
        if part.first_ok.len() < FIRST_OK_PER_PART {
            part.first_ok.entry((key, ip)).or_insert((owner, now));
        }
        match part.last.get_mut(&key) {
            // The same client again (the common case): only the time moves.
            Some((o, last_ip, last)) if *o == owner && *last_ip == ip && last.user_agent.as_deref() == user_agent => {
                last.at = now;
            }
            _ => {
                let ua = user_agent.map(|u| u.chars().filter(|c| !c.is_control()).take(256).collect());
                let last = KeyLastUse { key_id: key, at: now, ip: Some(ip.to_string()), user_agent: ua };
                part.last.insert(key, (owner, ip, last));
            }
        }
    }

    /// Takes everything accumulated so far.
    pub fn drain(&self) -> Flush {
        let mut counts: HashMap<CountKey, Counter> = HashMap::new();
        let mut last: HashMap<ApiKeyId, (UserId, IpAddr, KeyLastUse)> = HashMap::new();
        let mut first_ok: HashMap<(ApiKeyId, IpAddr), (UserId, Timestamp)> = HashMap::new();
        for mut part in self.parts.each() {
            let part = std::mem::take(&mut *part);
            for ((key, _, outcome), (route, c)) in part.counts {
                counts.entry((key, route, outcome)).or_default().add(c);
            }
            for (k, l) in part.last {
                match last.get(&k) {
                    Some((_, _, have)) if have.at >= l.2.at => {}
                    _ => {
                        last.insert(k, l);
                    }
                }
            }
            for (k, first) in part.first_ok {
                let into = first_ok.entry(k).or_insert(first);
                if first.1 < into.1 {
                    *into = first;
                }
            }
        }
        let mut f = Flush::default();
        let mut ips: Vec<_> = first_ok.into_iter().collect();
        ips.sort_by_key(|((k, ip), (_, at))| (*at, *k, *ip));
        f.ips = ips.into_iter().map(|((k, ip), (owner, _))| (k, owner, ip.to_string())).collect();
        for ((key, route, outcome), c) in counts {
            let (Some(at), Some(owner)) = (c.last_at, c.owner) else { continue };
            f.usage.push(KeyUsage {
                key_id: key,
                route: route.to_string(),
                outcome: outcome.to_owned(),
                count: c.count,
                last_at: at,
            });
            if outcome == "ok" {
                continue;
            }
            if outcome == "bad_signature" {
                f.bad_signatures.push((key, owner, c.count));
            }
            if outcome == "out_of_scope" {
                f.scope_violations.push((key, owner, route.to_string()));
            }
            let mut e = AuditEvent::new(EventKind::ApiKeyDenied, Outcome::Denied).about(owner);
            e.ip = c.ips.first().map(IpAddr::to_string);
            f.events.push(
                e.with("key", key.to_string())
                    .with("route", &*route)
                    .with("reason", outcome)
                    .with("count", c.count)
                    .with("ips", c.ips.iter().map(IpAddr::to_string).collect::<Vec<_>>())
                    .with("last_at", at.to_rfc3339()),
            );
        }
        f.last = last.into_values().map(|(_, _, l)| l).collect();
        f
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // tests fail loudly
mod tests {
    use super::*;
    use gatehouse_core::rng::SeededRng;

    const T0: Timestamp = Timestamp::from_millis(1_800_000_000_000);

    fn at(ms: i64) -> Timestamp {
        T0.plus(gatehouse_core::clock::Span::millis(ms))
    }

    /// A key, its owner and a route label.
    fn fixture(seed: u64, route: &str) -> (ApiKeyId, UserId, Arc<str>) {
        let rng = SeededRng::new(seed);
        (ApiKeyId::generate(&rng), UserId::generate(T0, &rng), route.into())
    }

    #[test]
    fn counts_last_use_and_first_networks_survive_the_allocation_free_path() {
        let (key, owner, route) = fixture(7, "GET /api/v3/account");
        let log = UsageLog::default();
        let ip_a: IpAddr = "203.0.113.5".parse().unwrap();
        let ip_b: IpAddr = "2001:db8::9".parse().unwrap();
        let u = |ip, ua, ms| Use { key, owner, route: &route, now: at(ms), ip, user_agent: ua };
        log.record(&u(ip_a, Some("ccxt/4"), 0), "ok");
        log.record(&u(ip_a, Some("ccxt/4"), 10), "ok"); // same client: only the time moves
        log.record(&u(ip_b, Some("ccxt/4"), 20), "ok"); // another network
        log.record(&u(ip_b, Some("python-binance\u{7}"), 30), "ok"); // another agent, cleaned
        log.record(&u(ip_a, None, 40), "bad_signature");
        log.record(&u(ip_b, None, 50), "bad_signature");
        let f = log.drain();

        let mut usage: Vec<_> = f.usage.iter().map(|u| (u.outcome.as_str(), u.count, u.last_at, &*u.route)).collect();
        usage.sort();
        assert_eq!(usage, [("bad_signature", 2, at(50), &*route), ("ok", 4, at(30), &*route)]);
        assert_eq!(f.last.len(), 1);
        let last = &f.last[0];
        assert_eq!((last.at, last.ip.as_deref()), (at(30), Some("2001:db8::9")));
        assert_eq!(last.user_agent.as_deref(), Some("python-binance"));
        // Successful uses per network, oldest first, as text.
        assert_eq!(f.ips, [(key, owner, "203.0.113.5".to_owned()), (key, owner, "2001:db8::9".to_owned())]);
        assert_eq!(f.bad_signatures, [(key, owner, 2)]);
        let e = &f.events[0].details;
        assert_eq!(e["ips"], serde_json::json!(["203.0.113.5", "2001:db8::9"]), "{e}");
        assert_eq!(e["route"], "GET /api/v3/account");
        assert_eq!(f.events[0].ip.as_deref(), Some("203.0.113.5"));
        // Drained: the next window starts empty.
        let f = log.drain();
        assert!(f.usage.is_empty() && f.last.is_empty() && f.ips.is_empty());
    }

    #[test]
    fn a_changed_client_replaces_the_last_use() {
        let (key, owner, route) = fixture(8, "GET /v1/accounts");
        let log = UsageLog::default();
        let ip: IpAddr = "198.51.100.1".parse().unwrap();
        log.record(&Use { key, owner, route: &route, now: at(0), ip, user_agent: Some("pyupbit") }, "ok");
        log.record(&Use { key, owner, route: &route, now: at(5), ip, user_agent: None }, "ok");
        let last = log.drain().last;
        assert_eq!((last[0].at, last[0].user_agent.as_deref()), (at(5), None));
    }

    /// Many keys: a drain takes them all, and the first uses come out in time order (the
    /// new-network alerts depend on it), not in the order they were recorded.
    #[test]
    fn a_drain_gathers_every_part_in_time_order() {
        let log = UsageLog::default();
        let route: Arc<str> = "GET /v1/accounts".into();
        let keys: Vec<_> = (0..40).map(|i| fixture(100 + i, "unused")).collect();
        let ip: IpAddr = "198.51.100.7".parse().unwrap();
        // Newest key first, so insertion order and time order differ.
        for (i, (key, owner, _)) in keys.iter().enumerate().rev() {
            log.record(&Use { key: *key, owner: *owner, route: &route, now: at(i as i64), ip, user_agent: None }, "ok");
        }
        let f = log.drain();
        assert_eq!(f.usage.len(), 40);
        assert_eq!(f.last.len(), 40);
        let want: Vec<_> = keys.iter().map(|(k, o, _)| (*k, *o, "198.51.100.7".to_owned())).collect();
        assert_eq!(f.ips, want);
        let again = log.drain();
        assert!(again.usage.is_empty() && again.last.is_empty() && again.ips.is_empty(), "drained");
    }

    /// Workers record into their own parts; a drain merges them: counts added, the latest
    /// last use, the earliest first use of each network.
    #[test]
    fn records_from_several_threads_merge() {
        let log = UsageLog::default();
        let (key, owner, route) = fixture(9, "GET /v1/orders");
        let ip_a: IpAddr = "203.0.113.5".parse().unwrap();
        let ip_b: IpAddr = "198.51.100.1".parse().unwrap();
        std::thread::scope(|s| {
            for t in 0..4i64 {
                let (log, route) = (&log, &route);
                s.spawn(move || {
                    for i in 0..10 {
                        let (ip, ms) = if t == 3 { (ip_b, 1000 + i) } else { (ip_a, t * 100 + i) };
                        log.record(&Use { key, owner, route, now: at(ms), ip, user_agent: None }, "ok");
                    }
                });
            }
        });
        let f = log.drain();
        assert_eq!(f.usage.len(), 1);
        assert_eq!((f.usage[0].count, f.usage[0].last_at), (40, at(1009)));
        assert_eq!(f.last.len(), 1);
        assert_eq!((f.last[0].at, f.last[0].ip.as_deref()), (at(1009), Some("198.51.100.1")));
        assert_eq!(f.ips, [(key, owner, "203.0.113.5".to_owned()), (key, owner, "198.51.100.1".to_owned())]);
    }
}
