//! Single-use nonces and signatures: an in-memory replay cache (R67, F3, F5, F7).
//!
//! A signed request may be accepted once. After its signature checks out (and only then,
//! R68, so unauthenticated traffic cannot burn someone else's nonce), the server records a
//! [`ReplayKey`] derived from the key id and the nonce (or the signature, for Binance); a
//! second request with the same key is a replay and gets 401. The attack this stops: a
//! captured request (from a proxy log, a compromised network, a browser extension) sent
//! again, to the same instance or another one.
//!
//! ## Invariants
//! * **Atomic check-and-set.** [`ReplayCache::insert_if_absent`] looks the key up and inserts
//!   it under one lock, so of any number of concurrent inserts of one key exactly one is
//!   [`InsertOutcome::Fresh`] (F7). Never "get, then set".
//! * **Bounded memory.** Keys are SHA-256 digests (32 bytes, whatever the nonce length),
//!   entries carry their expiry, and the cache holds at most `capacity` entries (≈ 100 bytes
//!   each including index overhead: 1 000 000 entries ≈ 100 MB). Size it as
//!   `peak accepted signed requests per second × retention`.
//! * **Fail closed when full.** At capacity, after dropping expired entries, a new key is
//!   refused with [`InsertOutcome::Unavailable`] (answer 503 `replay_store_unavailable`,
//!   F3). Live entries are never evicted to make room: an evicted nonce can be replayed, so
//!   an attacker able to fill the cache (with valid signatures of his own) could otherwise
//!   push out a victim's nonces and then replay the victim's requests.
//! * Expired entries are dropped lazily on insert (cheap: entries sit in an expiry-ordered
//!   heap) and by [`ReplayCache::sweep`], which the server should call every few seconds.
//!
//! ## Retention (F5)
//! A nonce must outlive every instant at which any instance would still accept its request.
//! A request is accepted while `now − recvWindow ≤ ts ≤ now + future tolerance`; an
//! instance whose clock is behind by `skew` accepts it `skew` longer. Hence
//! `TTL ≥ max recvWindow + future tolerance + max inter-instance skew + margin`
//! ([`ReplayRetention`]; default 60 + 1 + 1 + 2 = 64 s). Upbit requests carry **no
//! timestamp**: their nonce would have to be kept for the key's whole lifetime, which is a
//! job for the durable shared store, not for this cache, unless the key's policy requires
//! the optional `timestamp` claim.
//!
//! ## Multi-instance contract (Redis)
//! The shared version runs `SET <prefix><hex> 1 NX PX <ttl_ms>` with the key from
//! [`ReplayKey::redis_key`]: reply `OK` ⇒ fresh; nil ⇒ replay; a connection error or timeout
//! ⇒ unavailable (deny, F3). A failover can lose recent writes (F6), so withdrawals also need
//! a unique record in the database transaction that executes them.

use std::cmp::Reverse;
use std::collections::hash_map::RandomState;
use std::collections::{BinaryHeap, HashMap};
use std::hash::BuildHasher;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, MutexGuard, PoisonError};

use sha2::{Digest, Sha256};

use crate::clock::{Span, Timestamp};

/// A replay-cache key: SHA-256 over a namespace and length-prefixed parts, so
/// `("a", "bc")` and `("ab", "c")` never collide and different uses never share keys.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct ReplayKey([u8; 32]);

impl ReplayKey {
    /// The key for `parts` in `namespace` (e.g. `derive("upbit-nonce", &[key_id, nonce])`,
    /// `derive("binance-sig", &[key_id, signature])`).
    pub fn derive(namespace: &str, parts: &[&[u8]]) -> Self {
        let mut h = Sha256::new();
        h.update(b"gatehouse-replay-v1\0");
        for p in std::iter::once(namespace.as_bytes()).chain(parts.iter().copied()) {
            h.update((p.len() as u64).to_be_bytes());
            h.update(p);
        }
        Self(h.finalize().into())
    }

    /// SHA-256 of arbitrary bytes, for callers that build their own unambiguous encoding.
    pub fn from_bytes(bytes: &[u8]) -> Self {
        Self(Sha256::digest(bytes).into())
    }

    /// The digest.
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// Lower-case hex of the digest.
    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }

    /// The Redis key: `prefix` followed by the hex digest (e.g. prefix `"gh:nonce:"`).
    pub fn redis_key(&self, prefix: &str) -> String {
        format!("{prefix}{}", self.to_hex())
    }
}

impl std::fmt::Debug for ReplayKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "ReplayKey({}…)", hex::encode(&self.0[..6]))
    }
}

/// What an insert found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[must_use]
pub enum InsertOutcome {
    /// First sighting: the request may proceed.
    Fresh,
    /// Seen before and not yet expired: refuse (401 `replay` / `nonce_used`).
    Replayed,
    /// The cache cannot vouch for this key (full of live entries, or a non-positive TTL):
    /// refuse (503 `replay_store_unavailable`).
    Unavailable,
}

impl InsertOutcome {
    /// Only [`InsertOutcome::Fresh`] lets a request through.
    pub const fn is_fresh(self) -> bool {
        matches!(self, InsertOutcome::Fresh)
    }
}

/// How long nonces are kept (F5). Every field is a non-negative span.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ReplayRetention {
    /// The largest `recvWindow` any request may use (R66: 60 s).
    pub max_recv_window: Span,
    /// How far in the future a timestamp may be (R66: 1 s).
    pub future_tolerance: Span,
    /// The largest clock offset tolerated between instances (F5: an instance goes unready
    /// beyond 1 s).
    pub max_clock_skew: Span,
    /// Extra safety margin.
    pub margin: Span,
}

impl Default for ReplayRetention {
    fn default() -> Self {
        Self {
            max_recv_window: Span::secs(60),
            future_tolerance: Span::secs(1),
            max_clock_skew: Span::secs(1),
            margin: Span::secs(2),
        }
    }
}

impl ReplayRetention {
    /// The TTL to insert nonces with: the sum of the four spans (negative ones count as 0).
    pub fn ttl(&self) -> Span {
        [self.max_recv_window, self.future_tolerance, self.max_clock_skew, self.margin]
            .iter()
            .fold(Span::ZERO, |acc, s| Span::millis(acc.as_millis().saturating_add(s.as_millis().max(0))))
    }
}

#[derive(Default)]
struct Shard {
    live: HashMap<[u8; 32], Timestamp>,
    by_expiry: BinaryHeap<Reverse<(Timestamp, [u8; 32])>>,
}

impl Shard {
    /// Drops every entry with `expiry ≤ now`; returns how many. `live` and `by_expiry` hold
    /// the same entries (a key is only inserted when absent), so one pop is one removal.
    fn evict_expired(&mut self, now: Timestamp) -> usize {
        let mut n = 0;
        while let Some(Reverse((exp, key))) = self.by_expiry.peek().copied() {
            if exp > now {
                break;
            }
            self.by_expiry.pop();
            self.live.remove(&key);
            n += 1;
        }
        n
    }
}

const SHARDS: usize = 16;

/// The in-memory replay cache: a bounded, TTL'd set of [`ReplayKey`]s, safe to share
/// between tasks and threads (`Arc<ReplayCache>`).
pub struct ReplayCache {
    shards: Box<[Mutex<Shard>]>,
    hasher: RandomState,
    len: AtomicUsize,
    capacity: usize,
}

impl std::fmt::Debug for ReplayCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReplayCache").field("len", &self.len()).field("capacity", &self.capacity).finish()
    }
}

impl ReplayCache {
    /// A cache holding at most `capacity` live entries.
    pub fn new(capacity: usize) -> Self {
        Self {
            shards: (0..SHARDS).map(|_| Mutex::new(Shard::default())).collect(),
            // Shards are chosen by a per-process random hash, so a key holder cannot grind
            // nonces that all land in one shard.
            hasher: RandomState::new(),
            len: AtomicUsize::new(0),
            capacity,
        }
    }

    fn shard(&self, key: &ReplayKey) -> MutexGuard<'_, Shard> {
        let i = usize::try_from(self.hasher.hash_one(key.0) % SHARDS as u64).unwrap_or(0);
        lock(&self.shards[i])
    }

    /// Records `key` until `now + ttl` unless it is already recorded and unexpired. Atomic:
    /// concurrent calls with one key yield exactly one [`InsertOutcome::Fresh`].
    pub fn insert_if_absent(&self, key: &ReplayKey, now: Timestamp, ttl: Span) -> InsertOutcome {
        if ttl <= Span::ZERO {
            return InsertOutcome::Unavailable;
        }
        let expires = now.plus(ttl);
        for attempt in 0..2 {
            {
                let mut shard = self.shard(key);
                let evicted = shard.evict_expired(now);
                self.len.fetch_sub(evicted, Ordering::AcqRel);
                if shard.live.contains_key(&key.0) {
                    return InsertOutcome::Replayed;
                }
                let reserved = self
                    .len
                    .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| (n < self.capacity).then_some(n + 1));
                if reserved.is_ok() {
                    shard.live.insert(key.0, expires);
                    shard.by_expiry.push(Reverse((expires, key.0)));
                    return InsertOutcome::Fresh;
                }
            }
            // Full: drop expired entries everywhere (one shard lock at a time, none held
            // here), then try once more.
            if attempt == 0 {
                self.sweep(now);
            }
        }
        InsertOutcome::Unavailable
    }

    /// Whether `key` is recorded and unexpired at `now` (diagnostics and tests; the request
    /// path must use [`insert_if_absent`](Self::insert_if_absent)).
    pub fn contains(&self, key: &ReplayKey, now: Timestamp) -> bool {
        self.shard(key).live.get(&key.0).is_some_and(|exp| *exp > now)
    }

    /// Drops every expired entry; returns how many.
    pub fn sweep(&self, now: Timestamp) -> usize {
        let mut total = 0;
        for shard in self.shards.iter() {
            let n = lock(shard).evict_expired(now);
            self.len.fetch_sub(n, Ordering::AcqRel);
            total += n;
        }
        total
    }

    /// Live entries (expired ones not yet swept included).
    pub fn len(&self) -> usize {
        self.len.load(Ordering::Acquire)
    }

    /// Whether the cache holds nothing.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The configured capacity.
    pub fn capacity(&self) -> usize {
        self.capacity
    }
}

/// A poisoned shard still holds a consistent set (no code here panics while holding the
/// lock, and a half-done insert only adds a key), so keep using it: dropping it would forget
/// nonces and reopen replay.
fn lock(m: &Mutex<Shard>) -> MutexGuard<'_, Shard> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Barrier;

    const T0: Timestamp = Timestamp::from_millis(1_700_000_000_000);

    fn at(ms: i64) -> Timestamp {
        T0.plus(Span::millis(ms))
    }

    fn k(n: u32) -> ReplayKey {
        ReplayKey::derive("test", &[b"key-1", &n.to_be_bytes()])
    }

    #[test]
    fn second_insert_is_a_replay_until_expiry() {
        let c = ReplayCache::new(10);
        let ttl = Span::secs(64);
        assert_eq!(c.insert_if_absent(&k(1), at(0), ttl), InsertOutcome::Fresh);
        assert_eq!(c.insert_if_absent(&k(1), at(0), ttl), InsertOutcome::Replayed);
        assert_eq!(c.insert_if_absent(&k(1), at(63_999), ttl), InsertOutcome::Replayed);
        assert!(c.contains(&k(1), at(63_999)));
        assert!(!c.contains(&k(1), at(64_000)));
        assert_eq!(c.insert_if_absent(&k(1), at(64_000), ttl), InsertOutcome::Fresh);
        assert_eq!(c.len(), 1);
        assert_eq!(c.insert_if_absent(&k(2), at(64_000), ttl), InsertOutcome::Fresh);
        assert_eq!(c.len(), 2);
    }

    #[test]
    fn full_cache_refuses_new_keys_and_never_evicts_live_ones() {
        let c = ReplayCache::new(3);
        let ttl = Span::secs(10);
        for i in 0..3 {
            assert!(c.insert_if_absent(&k(i), at(i64::from(i)), ttl).is_fresh());
        }
        assert_eq!(c.insert_if_absent(&k(9), at(5), ttl), InsertOutcome::Unavailable);
        // Every live nonce is still a replay.
        for i in 0..3 {
            assert_eq!(c.insert_if_absent(&k(i), at(5), ttl), InsertOutcome::Replayed);
        }
        // Once the oldest expires there is room again.
        assert_eq!(c.insert_if_absent(&k(9), at(10_000), ttl), InsertOutcome::Fresh);
        assert_eq!(c.len(), 3);
        assert!(c.contains(&k(2), at(10_000)));
        assert!(!c.contains(&k(0), at(10_000)));
    }

    #[test]
    fn sweep_drops_only_expired_entries() {
        let c = ReplayCache::new(100);
        for i in 0..10 {
            let _ = c.insert_if_absent(&k(i), at(0), Span::millis(i64::from(i) + 1));
        }
        assert_eq!(c.sweep(at(5)), 5);
        assert_eq!(c.len(), 5);
        assert_eq!(c.sweep(at(5)), 0);
        assert_eq!(c.sweep(at(1000)), 5);
        assert!(c.is_empty());
    }

    #[test]
    fn non_positive_ttl_is_refused() {
        let c = ReplayCache::new(10);
        assert_eq!(c.insert_if_absent(&k(1), at(0), Span::ZERO), InsertOutcome::Unavailable);
        assert_eq!(c.insert_if_absent(&k(1), at(0), Span::millis(-5)), InsertOutcome::Unavailable);
        assert!(c.is_empty());
    }

    #[test]
    fn hundred_threads_one_key_exactly_one_fresh() {
        let c = ReplayCache::new(1000);
        for round in 0..20u32 {
            let barrier = Barrier::new(100);
            let fresh = AtomicUsize::new(0);
            let replayed = AtomicUsize::new(0);
            std::thread::scope(|s| {
                for _ in 0..100 {
                    s.spawn(|| {
                        barrier.wait();
                        match c.insert_if_absent(&k(round), at(0), Span::secs(64)) {
                            InsertOutcome::Fresh => fresh.fetch_add(1, Ordering::Relaxed),
                            InsertOutcome::Replayed => replayed.fetch_add(1, Ordering::Relaxed),
                            InsertOutcome::Unavailable => 0,
                        };
                    });
                }
            });
            assert_eq!(fresh.load(Ordering::Relaxed), 1, "round {round}");
            assert_eq!(replayed.load(Ordering::Relaxed), 99, "round {round}");
        }
    }

    #[test]
    fn capacity_holds_under_concurrent_distinct_inserts() {
        let c = ReplayCache::new(500);
        let fresh = AtomicUsize::new(0);
        std::thread::scope(|s| {
            for t in 0..8u32 {
                let (c, fresh) = (&c, &fresh);
                s.spawn(move || {
                    for i in 0..200 {
                        if c.insert_if_absent(&k(t * 1000 + i), at(0), Span::secs(1)).is_fresh() {
                            fresh.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                });
            }
        });
        assert_eq!(fresh.load(Ordering::Relaxed), 500);
        assert_eq!(c.len(), 500);
    }

    #[test]
    fn keys_are_domain_separated_and_fixed_size() {
        let a = ReplayKey::derive("n", &[b"a", b"bc"]);
        let b = ReplayKey::derive("n", &[b"ab", b"c"]);
        let c = ReplayKey::derive("m", &[b"a", b"bc"]);
        assert_ne!(a, b);
        assert_ne!(a, c);
        assert_eq!(a, ReplayKey::derive("n", &[b"a", b"bc"]));
        let long = ReplayKey::from_bytes(&[7u8; 10_000]);
        assert_eq!(long.as_bytes().len(), 32);
        assert_eq!(a.redis_key("gh:nonce:").len(), "gh:nonce:".len() + 64);
        assert!(format!("{a:?}").len() < 30);
    }

    #[test]
    fn default_retention_is_the_f5_sum() {
        assert_eq!(ReplayRetention::default().ttl(), Span::secs(64));
        let r = ReplayRetention { margin: Span::millis(-10_000), ..ReplayRetention::default() };
        assert_eq!(r.ttl(), Span::secs(62));
    }
}
