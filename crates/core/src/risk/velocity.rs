//! Sliding-window counters for the velocity signals, as a pure in-memory structure.
//!
//! The engine reads velocities as numbers in [`Velocity`]; it does not care who counted them.
//! A multi-instance deployment counts them in the shared store (the same Redis that holds the
//! rate limiter's buckets); a single instance, the evaluation harness and the tests use
//! [`VelocityTracker`]. Both must count **attempts**, successful or not, before evaluating the
//! attempt itself: credential stuffing is visible in the failures, not in the successes.
//!
//! Invariants: every window holds at most [`VelocityTracker::MAX_PER_KEY`] events (oldest
//! dropped) and the tracker at most `max_keys` keys (expired ones swept first, then the least
//! recently touched), so a flood of distinct addresses cannot exhaust memory.

use std::collections::{BTreeMap, VecDeque};
use std::hash::{DefaultHasher, Hash, Hasher};
use std::net::IpAddr;

use serde::{Deserialize, Serialize};

use crate::clock::{Span, Timestamp};
use crate::ids::UserId;

use super::features::{canonical_ip, network_prefix};

/// Counts over recent windows, as seen just after recording the event being evaluated.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Velocity {
    /// Login attempts on this account in the last hour.
    pub user_logins_1h: u32,
    /// Failed login attempts (any factor) on this account in the last hour.
    pub user_failures_1h: u32,
    /// Distinct networks (/24, /48) this account was tried from in the last hour.
    pub user_networks_1h: u32,
    /// Distinct accounts tried from this IP address in the last hour.
    pub ip_accounts_1h: u32,
    /// Failed logins from this IP address, any account, in the last hour.
    pub ip_failures_1h: u32,
    /// Calls made with this API key in the last minute.
    pub key_calls_1m: u32,
    /// Requests naming this API key whose signature did not verify, in the last 10 minutes.
    pub key_bad_signatures_10m: u32,
    /// Refused DPoP proofs or certificate bindings for this account's tokens in the last hour.
    #[serde(default)]
    pub user_pop_failures_1h: u32,
}

#[derive(Debug)]
struct Window {
    events: VecDeque<(Timestamp, u64)>,
    touched: Timestamp,
}

/// An in-memory, bounded sliding-window counter set.
#[derive(Debug)]
pub struct VelocityTracker {
    windows: BTreeMap<String, Window>,
    max_keys: usize,
}

const HOUR: Span = Span::hours(1);

fn tag<T: Hash + ?Sized>(v: &T) -> u64 {
    let mut h = DefaultHasher::new();
    v.hash(&mut h);
    h.finish()
}

impl VelocityTracker {
    /// Events kept per window.
    pub const MAX_PER_KEY: usize = 512;

    /// A tracker holding at most `max_keys` windows.
    pub fn new(max_keys: usize) -> Self {
        Self { windows: BTreeMap::new(), max_keys: max_keys.max(16) }
    }

    fn push(&mut self, key: String, t: u64, now: Timestamp) {
        if !self.windows.contains_key(&key) && self.windows.len() >= self.max_keys {
            self.sweep(now);
        }
        let w = self.windows.entry(key).or_insert_with(|| Window { events: VecDeque::new(), touched: now });
        while w.events.front().is_some_and(|(at, _)| now.since(*at) > HOUR) {
            w.events.pop_front();
        }
        if w.events.len() >= Self::MAX_PER_KEY {
            w.events.pop_front();
        }
        w.events.push_back((now, t));
        w.touched = now;
    }

    /// Drops windows with nothing in the last hour; if still full, the least recently touched
    /// eighth of them at once. A sweep walks every window, so it must free many slots: evicting
    /// one window per sweep would make every new key during a flood from many addresses walk
    /// the whole map under the caller's lock (quadratic work, at 200,000 windows ≈ ms per key).
    fn sweep(&mut self, now: Timestamp) {
        self.windows.retain(|_, w| w.events.back().is_some_and(|(at, _)| now.since(*at) <= HOUR));
        if self.windows.len() < self.max_keys {
            return;
        }
        let evict = (self.windows.len() - self.max_keys + 1).max(self.max_keys / 8);
        let mut touched: Vec<Timestamp> = self.windows.values().map(|w| w.touched).collect();
        let (_, cut, _) = touched.select_nth_unstable(evict - 1);
        let cut = *cut;
        // Everything touched before the cut goes, then ties at the cut until enough are gone.
        let mut ties = evict - self.windows.values().filter(|w| w.touched < cut).count();
        self.windows.retain(|_, w| match w.touched.cmp(&cut) {
            std::cmp::Ordering::Less => false,
            std::cmp::Ordering::Equal if ties > 0 => {
                ties -= 1;
                false
            }
            _ => true,
        });
    }

    fn count(&self, key: &str, within: Span, now: Timestamp) -> u32 {
        self.windows.get(key).map_or(0, |w| {
            let n = w.events.iter().filter(|(at, _)| now.since(*at) <= within && *at <= now).count();
            u32::try_from(n).unwrap_or(u32::MAX)
        })
    }

    fn distinct(&self, key: &str, within: Span, now: Timestamp) -> u32 {
        self.windows.get(key).map_or(0, |w| {
            let mut tags: Vec<u64> =
                w.events.iter().filter(|(at, _)| now.since(*at) <= within && *at <= now).map(|(_, t)| *t).collect();
            tags.sort_unstable();
            tags.dedup();
            u32::try_from(tags.len()).unwrap_or(u32::MAX)
        })
    }

    /// Records a login attempt (password or any later factor) on `user` from `ip`.
    pub fn record_login(&mut self, user: &UserId, ip: IpAddr, success: bool, now: Timestamp) {
        let ip = canonical_ip(ip);
        self.push(format!("u:{user}:login"), 0, now);
        self.push(format!("u:{user}:net"), tag(&network_prefix(ip)), now);
        self.push(format!("ip:{ip}:acct"), tag(user), now);
        if !success {
            self.push(format!("u:{user}:fail"), 0, now);
            self.push(format!("ip:{ip}:fail"), 0, now);
        }
    }

    /// Records a verified call with API key `key_id`.
    pub fn record_api_call(&mut self, key_id: &str, now: Timestamp) {
        self.push(format!("k:{key_id}:call"), 0, now);
    }

    /// Records a request naming `key_id` whose signature did not verify.
    pub fn record_bad_signature(&mut self, key_id: &str, now: Timestamp) {
        self.push(format!("k:{key_id}:badsig"), 0, now);
    }

    /// Records a refused proof of possession for a token of `user` (issue 9).
    pub fn record_pop_failure(&mut self, user: &UserId, now: Timestamp) {
        self.push(format!("u:{user}:pop"), 0, now);
    }

    /// The velocities for an evaluation of `user` (if known) from `ip` with `key_id` (if any).
    pub fn velocity(&self, user: Option<&UserId>, ip: IpAddr, key_id: Option<&str>, now: Timestamp) -> Velocity {
        let ip = canonical_ip(ip);
        let mut v = Velocity {
            ip_accounts_1h: self.distinct(&format!("ip:{ip}:acct"), HOUR, now),
            ip_failures_1h: self.count(&format!("ip:{ip}:fail"), HOUR, now),
            ..Velocity::default()
        };
        if let Some(u) = user {
            v.user_logins_1h = self.count(&format!("u:{u}:login"), HOUR, now);
            v.user_failures_1h = self.count(&format!("u:{u}:fail"), HOUR, now);
            v.user_networks_1h = self.distinct(&format!("u:{u}:net"), HOUR, now);
            v.user_pop_failures_1h = self.count(&format!("u:{u}:pop"), HOUR, now);
        }
        if let Some(k) = key_id {
            v.key_calls_1m = self.count(&format!("k:{k}:call"), Span::minutes(1), now);
            v.key_bad_signatures_10m = self.count(&format!("k:{k}:badsig"), Span::minutes(10), now);
        }
        v
    }

    /// Number of windows held.
    pub fn len(&self) -> usize {
        self.windows.len()
    }

    /// True when nothing is tracked.
    pub fn is_empty(&self) -> bool {
        self.windows.is_empty()
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::panic)] // tests fail loudly
mod tests {
    use super::*;
    use crate::risk::testutil::{T0, user};

    #[test]
    fn counts_attempts_failures_accounts_and_networks_within_the_hour() {
        let mut t = VelocityTracker::new(1000);
        let ip: IpAddr = "198.51.100.7".parse().unwrap();
        for i in 0..6u64 {
            t.record_login(&user(i), ip, false, T0.plus(Span::minutes(i as i64)));
        }
        t.record_login(&user(0), "203.0.113.1".parse().unwrap(), true, T0.plus(Span::minutes(7)));
        let v = t.velocity(Some(&user(0)), ip, None, T0.plus(Span::minutes(8)));
        assert_eq!((v.ip_accounts_1h, v.ip_failures_1h), (6, 6));
        assert_eq!((v.user_logins_1h, v.user_failures_1h, v.user_networks_1h), (2, 1, 2));
        let later = t.velocity(Some(&user(0)), ip, None, T0.plus(Span::minutes(70)));
        assert_eq!((later.ip_accounts_1h, later.user_logins_1h), (0, 0));
    }

    #[test]
    fn api_windows_are_a_minute_and_ten_minutes() {
        let mut t = VelocityTracker::new(1000);
        for s in 0..30 {
            t.record_api_call("k1", T0.plus(Span::secs(s * 4)));
            t.record_bad_signature("k1", T0.plus(Span::secs(s * 30)));
        }
        let now = T0.plus(Span::secs(120));
        let v = t.velocity(None, "192.0.2.1".parse().unwrap(), Some("k1"), now);
        assert_eq!(v.key_calls_1m, 15);
        assert_eq!(v.key_bad_signatures_10m, 5);
    }

    /// A flood of new keys against a full tracker: each sweep frees an eighth of the slots
    /// (the least recently touched), so sweeps are rare, and the newest windows survive.
    #[test]
    fn a_full_tracker_evicts_the_oldest_eighth_at_once() {
        let mut t = VelocityTracker::new(64);
        let at = |i: u32| T0.plus(Span::millis(i64::from(i)));
        let ip = |i: u32| IpAddr::from([10, 0, (i >> 8) as u8, i as u8]);
        for i in 0..64 {
            t.record_api_call(&format!("key{i}"), at(i));
        }
        assert_eq!(t.len(), 64);
        t.record_api_call("key64", at(64));
        // 8 oldest gone (key0..key7), the new one in.
        assert_eq!(t.len(), 57);
        assert!(!t.windows.contains_key("k:key7:call") && t.windows.contains_key("k:key8:call"));
        assert!(t.windows.contains_key("k:key64:call"));
        // The next seven new keys need no sweep at all.
        for i in 65..72 {
            t.record_api_call(&format!("key{i}"), at(i));
        }
        assert_eq!(t.len(), 64);
        // Ties at the cut: everything touched at one instant, only an eighth goes.
        let mut same = VelocityTracker::new(64);
        for i in 0..200u32 {
            same.record_login(&user(u64::from(i)), ip(i), false, at(0));
            assert!(same.len() <= 64);
        }
        assert!(same.len() >= 56, "{}", same.len());
    }

    #[test]
    fn memory_is_bounded() {
        let mut t = VelocityTracker::new(64);
        for i in 0..10_000u32 {
            let ip = IpAddr::from([10, (i >> 16) as u8, (i >> 8) as u8, i as u8]);
            t.record_login(&user(1), ip, false, T0.plus(Span::millis(i64::from(i))));
        }
        assert!(t.len() <= 64);
        assert!(t.windows.values().all(|w| w.events.len() <= VelocityTracker::MAX_PER_KEY));
    }
}
