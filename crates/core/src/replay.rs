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
//! * **Exact expiry.** Expired entries are dropped lazily on insert and by
//!   [`ReplayCache::sweep`], which the server should call every few seconds; either drops
//!   every entry with `expiry ≤ now` from the shards it visits, and none other, so "full"
//!   always means full of live entries.
//!
//! ## Eviction order
//! Each shard keeps, next to its key → expiry map, one FIFO queue of `(expiry, key)` records
//! per TTL. Callers use a handful of TTLs (64 s for nonces, 7 days for Upbit, one per Binance
//! `recvWindow` in use), and under a monotone clock the entries of one TTL expire in the order
//! they were inserted, so eviction pops queue fronts while they are due: O(1) per entry, over
//! memory read in order. (A single expiry-ordered heap of millions of entries paid about
//! log₂ n cache misses per eviction.) Two cases go to a per-shard expiry-ordered heap instead,
//! so eviction stays exact: a record that would put its queue out of order (the injected
//! clock stepped back), and the records of a TTL that finds all eight queues of its shard held
//! by other TTLs (a client chooses its own `recvWindow`, so the number of TTLs is not ours to
//! bound); those cost what every entry used to. A queue whose records have all expired is
//! taken over by the next new TTL, and record buffers shrink when mostly empty.
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
use std::collections::hash_map::{Entry, RandomState};
use std::collections::{BinaryHeap, HashMap, VecDeque};
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

/// An expiry and the key it belongs to, as kept in a shard's eviction order.
type Record = (Timestamp, [u8; 32]);

/// How many TTLs per shard get a FIFO queue of their own; entries with further TTLs go to the
/// shard's heap.
const MAX_QUEUES: usize = 8;

/// Record buffers are never shrunk below this many records.
const MIN_RETAINED: usize = 1024;

/// The records of one TTL, oldest first. Expiries are non-decreasing from front to back: a
/// record that would break that order goes to the shard's heap instead.
struct TtlQueue {
    ttl: Span,
    records: VecDeque<Record>,
}

#[derive(Default)]
struct Shard {
    live: HashMap<[u8; 32], Timestamp>,
    /// At most [`MAX_QUEUES`], searched linearly (callers use a handful of TTLs).
    queues: Vec<TtlQueue>,
    /// Records of TTLs without a queue, and records inserted after the clock stepped back.
    overflow: BinaryHeap<Reverse<Record>>,
}

impl Shard {
    /// Records that `key` expires at `expires`: in the queue of `ttl` if the record keeps that
    /// queue sorted, else in the heap. With a monotone clock `now + ttl` never decreases
    /// within one TTL; a clock that stepped back breaks that, and the heap keeps such records
    /// in their place. Every entry of `live` has exactly one record and every record one
    /// entry, which keeps eviction exact.
    fn push_record(&mut self, ttl: Span, expires: Timestamp, key: [u8; 32]) {
        match self.queue_for(ttl) {
            Some(q) if q.back().is_none_or(|&(last, _)| last <= expires) => q.push_back((expires, key)),
            _ => self.overflow.push(Reverse((expires, key))),
        }
    }

    /// The queue of `ttl`: its own, else an empty one taken over, else a new one while there
    /// are fewer than [`MAX_QUEUES`]; `None` when all are in use by other TTLs.
    fn queue_for(&mut self, ttl: Span) -> Option<&mut VecDeque<Record>> {
        let i = match self.queues.iter().position(|q| q.ttl == ttl) {
            Some(i) => i,
            None => {
                let i = self.queues.iter().position(|q| q.records.is_empty()).unwrap_or(self.queues.len());
                if i >= MAX_QUEUES {
                    return None;
                }
                if i == self.queues.len() {
                    self.queues.push(TtlQueue { ttl, records: VecDeque::new() });
                }
                i
            }
        };
        let q = self.queues.get_mut(i)?;
        q.ttl = ttl;
        Some(&mut q.records)
    }

    /// Drops every entry with `expiry ≤ now`; returns how many. Each queue is sorted by
    /// expiry, so its expired records are a prefix, popped in O(1) each from memory read in
    /// order; the heap yields its expired records in order too.
    fn evict_expired(&mut self, now: Timestamp) -> usize {
        let mut n = 0;
        for q in &mut self.queues {
            while let Some(&(exp, key)) = q.records.front() {
                if exp > now {
                    break;
                }
                q.records.pop_front();
                n += usize::from(forget(&mut self.live, exp, key));
            }
            if let Some(c) = shrunk_capacity(q.records.len(), q.records.capacity()) {
                q.records.shrink_to(c);
            }
        }
        while let Some(&Reverse((exp, key))) = self.overflow.peek() {
            if exp > now {
                break;
            }
            self.overflow.pop();
            n += usize::from(forget(&mut self.live, exp, key));
        }
        if let Some(c) = shrunk_capacity(self.overflow.len(), self.overflow.capacity()) {
            self.overflow.shrink_to(c);
        }
        n
    }
}

/// The capacity to shrink a buffer of `len` records to once it is at most a quarter full (at
/// least [`MIN_RETAINED`]): amortised O(1), and a burst of one TTL does not pin its peak memory
/// for good.
fn shrunk_capacity(len: usize, capacity: usize) -> Option<usize> {
    (capacity > MIN_RETAINED && len < capacity / 4).then(|| (len * 2).max(MIN_RETAINED))
}

/// Removes `key` from `live` if the popped record `(exp, key)` is its own; returns whether it
/// did. Records and entries correspond one to one (a key is inserted only when absent, and
/// leaves `live` only when its record is popped), so this always removes; comparing the
/// expiry still guarantees that no record can remove an entry other than the one it was
/// pushed for, and that `len` only counts entries actually removed.
fn forget(live: &mut HashMap<[u8; 32], Timestamp>, exp: Timestamp, key: [u8; 32]) -> bool {
    match live.entry(key) {
        Entry::Occupied(e) if *e.get() == exp => {
            e.remove();
            true
        }
        _ => false,
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
                    shard.push_record(ttl, expires, key.0);
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
    fn two_ttls_interleaved_expire_each_at_their_own_time() {
        let c = ReplayCache::new(1000);
        let (short, long) = (Span::secs(64), Span::days(7));
        // One insert per 500 ms, alternating: even keys short, odd keys long. With 100 keys
        // over 16 shards, short entries sit behind long ones inserted before them.
        for i in 0..100u32 {
            let ttl = if i % 2 == 0 { short } else { long };
            assert!(c.insert_if_absent(&k(i), at(i64::from(i) * 500), ttl).is_fresh());
        }
        for i in (0..100u32).step_by(2) {
            let exp = i64::from(i) * 500 + 64_000;
            assert_eq!(c.insert_if_absent(&k(i), at(exp - 1), short), InsertOutcome::Replayed);
            assert_eq!(c.sweep(at(exp - 1)), 0);
            assert_eq!(c.sweep(at(exp)), 1, "short key {i} leaves at its own expiry");
            assert_eq!(c.len(), 99 - usize::try_from(i / 2).unwrap_or(0));
            assert!(!c.contains(&k(i), at(exp)));
        }
        assert_eq!(c.len(), 50);
        // The long entries are still replays, until their own expiry.
        for i in (1..100u32).step_by(2) {
            let exp = at(i64::from(i) * 500).plus(long);
            assert_eq!(c.insert_if_absent(&k(i), at(113_000), long), InsertOutcome::Replayed);
            assert!(c.contains(&k(i), exp.minus(Span::millis(1))));
            assert!(!c.contains(&k(i), exp));
        }
        // A short key expired at its time can be used again while the long ones stay.
        assert_eq!(c.insert_if_absent(&k(0), at(113_000), short), InsertOutcome::Fresh);
        assert_eq!(c.len(), 51);
        assert_eq!(c.sweep(at(500).plus(long).minus(Span::millis(1))), 1);
        assert_eq!(c.len(), 50);
        assert_eq!(c.sweep(at(49_499).plus(long)), 49);
        assert_eq!(c.sweep(at(49_500).plus(long)), 1);
        assert!(c.is_empty());
    }

    #[test]
    fn a_clock_stepping_back_evicts_nothing_early_and_keeps_len_exact() {
        let c = ReplayCache::new(1000);
        let ttl = Span::secs(64);
        // 100 keys at t = 10 s (expiring at 74 s), then the clock steps back: 100 at 5 s
        // (69 s), 100 at 7 s (71 s). Every shard has entries of each group.
        for (keys, t) in [(0..100u32, 10_000), (100..200, 5_000), (200..300, 7_000)] {
            for i in keys {
                assert!(c.insert_if_absent(&k(i), at(t), ttl).is_fresh());
            }
        }
        assert_eq!(c.len(), 300);
        let check = |now: i64, live: std::ops::Range<u32>, gone: std::ops::Range<u32>| {
            for i in live {
                assert!(c.contains(&k(i), at(now)), "key {i} live at {now}");
                assert_eq!(c.insert_if_absent(&k(i), at(now), ttl), InsertOutcome::Replayed, "key {i} at {now}");
            }
            for i in gone {
                assert!(!c.contains(&k(i), at(now)), "key {i} gone at {now}");
            }
        };
        check(68_999, 0..300, 0..0);
        assert_eq!(c.sweep(at(68_999)), 0);
        assert_eq!(c.len(), 300);
        assert_eq!(c.sweep(at(69_000)), 100);
        assert_eq!(c.len(), 200);
        check(70_999, 0..100, 100..200);
        check(70_999, 200..300, 0..0);
        assert_eq!(c.sweep(at(70_999)), 0);
        assert_eq!(c.sweep(at(71_000)), 100);
        assert_eq!(c.len(), 100);
        check(73_999, 0..100, 100..300);
        assert_eq!(c.sweep(at(73_999)), 0);
        assert_eq!(c.sweep(at(74_000)), 100);
        assert!(c.is_empty());

        // Full, half of it inserted after the clock stepped back: once that half expires there
        // is room for as many new keys, although entries expiring later were inserted first.
        let c = ReplayCache::new(200);
        for i in 0..100u32 {
            assert!(c.insert_if_absent(&k(i), at(10_000), ttl).is_fresh());
        }
        for i in 100..200u32 {
            assert!(c.insert_if_absent(&k(i), at(5_000), ttl).is_fresh());
        }
        assert_eq!(c.insert_if_absent(&k(1000), at(68_999), ttl), InsertOutcome::Unavailable);
        for i in 1000..1100u32 {
            assert_eq!(c.insert_if_absent(&k(i), at(69_000), ttl), InsertOutcome::Fresh, "key {i}");
        }
        assert_eq!(c.insert_if_absent(&k(1100), at(69_000), ttl), InsertOutcome::Unavailable);
        for i in 0..100u32 {
            assert_eq!(c.insert_if_absent(&k(i), at(69_000), ttl), InsertOutcome::Replayed);
        }
        assert_eq!(c.len(), 200);
        assert_eq!(c.sweep(at(74_000)), 100);
        assert_eq!(c.sweep(at(133_000)), 100);
        assert!(c.is_empty());
    }

    #[test]
    fn reinserting_after_expiry_keeps_len_exact() {
        let c = ReplayCache::new(10);
        let ttl = Span::secs(1);
        // One key, used again the instant it expires: one entry all along.
        for round in 0..100 {
            let t = round * 1000;
            assert_eq!(c.insert_if_absent(&k(1), at(t), ttl), InsertOutcome::Fresh, "round {round}");
            assert_eq!(c.len(), 1);
            assert_eq!(c.insert_if_absent(&k(1), at(t + 999), ttl), InsertOutcome::Replayed);
        }
        // Evicted by a sweep first, then used again with other TTLs, some after the clock
        // stepped back (100 s is the latest instant seen) and so behind later expiries.
        assert_eq!(c.sweep(at(100_000)), 1);
        assert!(c.is_empty());
        assert!(c.insert_if_absent(&k(2), at(100_000), Span::secs(5)).is_fresh());
        assert!(c.insert_if_absent(&k(1), at(99_000), Span::secs(5)).is_fresh());
        assert!(c.insert_if_absent(&k(3), at(99_000), Span::millis(500)).is_fresh());
        assert_eq!(c.len(), 3);
        assert_eq!(c.insert_if_absent(&k(3), at(99_499), Span::millis(500)), InsertOutcome::Replayed);
        assert_eq!(c.insert_if_absent(&k(3), at(99_500), Span::millis(500)), InsertOutcome::Fresh);
        assert_eq!(c.len(), 3);
        assert_eq!(c.insert_if_absent(&k(1), at(103_999), Span::secs(5)), InsertOutcome::Replayed);
        c.sweep(at(103_999));
        assert_eq!(c.len(), 2, "k(3) left at 100 s");
        assert_eq!(c.insert_if_absent(&k(1), at(104_000), Span::secs(5)), InsertOutcome::Fresh);
        assert_eq!(c.len(), 2);
        assert_eq!(c.sweep(at(105_000)), 1, "k(2)");
        assert_eq!(c.sweep(at(108_999)), 0);
        assert_eq!(c.sweep(at(109_000)), 1, "k(1) again");
        assert!(c.is_empty());
    }

    #[test]
    fn full_cache_with_mixed_ttls_fails_closed_until_entries_expire() {
        let c = ReplayCache::new(4);
        let (short, long) = (Span::secs(1), Span::days(7));
        for (i, ttl) in [(0, short), (1, long), (2, short), (3, long)] {
            assert!(c.insert_if_absent(&k(i), at(0), ttl).is_fresh());
        }
        assert_eq!(c.insert_if_absent(&k(9), at(999), short), InsertOutcome::Unavailable);
        assert_eq!(c.insert_if_absent(&k(9), at(999), long), InsertOutcome::Unavailable);
        for i in 0..4 {
            assert_eq!(c.insert_if_absent(&k(i), at(999), short), InsertOutcome::Replayed);
        }
        // The short entries leave at 1 s, wherever they sit; the long ones never make room.
        assert_eq!(c.insert_if_absent(&k(9), at(1000), short), InsertOutcome::Fresh);
        assert_eq!(c.insert_if_absent(&k(10), at(1000), long), InsertOutcome::Fresh);
        assert_eq!(c.insert_if_absent(&k(11), at(1000), short), InsertOutcome::Unavailable);
        assert_eq!(c.len(), 4);
        let week = at(0).plus(long).as_millis() - T0.as_millis();
        for i in [1, 3] {
            assert_eq!(c.insert_if_absent(&k(i), at(week - 1), long), InsertOutcome::Replayed);
        }
        assert_eq!(c.insert_if_absent(&k(11), at(week - 1), short), InsertOutcome::Fresh);
        assert_eq!(c.insert_if_absent(&k(12), at(week - 1), short), InsertOutcome::Unavailable);
        assert_eq!(c.insert_if_absent(&k(12), at(week), short), InsertOutcome::Fresh);
        assert_eq!(c.insert_if_absent(&k(13), at(week), short), InsertOutcome::Fresh);
        assert_eq!(c.insert_if_absent(&k(14), at(week), short), InsertOutcome::Unavailable);
        assert_eq!(c.insert_if_absent(&k(10), at(week), short), InsertOutcome::Replayed);
        assert_eq!(c.len(), 4);
    }

    #[test]
    fn more_ttls_than_queues_still_expire_exactly() {
        let c = ReplayCache::new(1000);
        // 400 keys over 20 TTLs (1 s … 20 s), one per millisecond: each shard sees more
        // distinct TTLs than it has queues.
        for i in 0..400u32 {
            let ttl = Span::secs(i64::from(i % 20) + 1);
            assert!(c.insert_if_absent(&k(i), at(i64::from(i)), ttl).is_fresh());
        }
        assert!(c.shards.iter().any(|s| !lock(s).overflow.is_empty()));
        assert!(c.shards.iter().all(|s| lock(s).queues.len() <= MAX_QUEUES));
        for s in 1..=20 {
            assert_eq!(c.sweep(at(s * 1000 - 1)), 0, "nothing before {s} s");
            assert_eq!(c.sweep(at(s * 1000 + 399)), 20, "the 20 keys of {s} s");
            assert_eq!(c.len(), 400 - 20 * usize::try_from(s).unwrap_or(0));
        }
        assert!(c.is_empty());
        // Emptied queues are taken over by new TTLs.
        for i in 0..400u32 {
            let ttl = Span::millis(100 + i64::from(i % 10));
            assert!(c.insert_if_absent(&k(i), at(30_000), ttl).is_fresh());
        }
        assert!(c.shards.iter().all(|s| lock(s).queues.len() <= MAX_QUEUES));
        assert_eq!(c.sweep(at(30_104)), 200);
        assert_eq!(c.sweep(at(30_109)), 200);
        assert!(c.is_empty());
    }

    #[test]
    fn buffers_shrink_when_mostly_empty_and_keep_their_order() {
        let c = ReplayCache::new(100_000);
        let ttl = Span::secs(30);
        // 20 000 entries (≈ 1 250 a shard: buffers of 2 048), then 2 000 more while the first
        // ones expire, so the queues wrap around their buffers and then shrink.
        for i in 0..20_000u32 {
            assert!(c.insert_if_absent(&k(i), at(i64::from(i)), ttl).is_fresh());
        }
        for j in 0..2_000u32 {
            assert!(c.insert_if_absent(&k(100_000 + j), at(30_000 + 8 * i64::from(j)), ttl).is_fresh());
        }
        c.sweep(at(49_999));
        assert_eq!(c.len(), 2_000);
        assert!(c.shards.iter().all(|s| lock(s).queues.iter().all(|q| q.records.capacity() <= MIN_RETAINED)));
        for j in (0..2_000u32).step_by(50) {
            let exp = 60_000 + 8 * i64::from(j);
            assert!(c.contains(&k(100_000 + j), at(exp - 1)));
            c.sweep(at(exp - 1));
            assert_eq!(c.len(), 2_000 - usize::try_from(j).unwrap_or(0));
            assert_eq!(c.sweep(at(exp)), 1);
            assert!(!c.contains(&k(100_000 + j), at(exp)));
        }
    }

    /// Against a model of the semantics (a key is a replay while its expiry is after `now`, a
    /// new key is fresh while fewer than `capacity` entries are), with twelve TTLs (more than a
    /// shard has queues) and a clock that steps back one time in ten.
    #[test]
    fn matches_a_model_with_many_ttls_and_a_clock_stepping_back() {
        let cap = 32;
        let c = ReplayCache::new(cap);
        let mut model: HashMap<u32, Timestamp> = HashMap::new();
        let mut state = 0x9e37_79b9_7f4a_7c15u64;
        let mut rand = move |n: u64| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            i64::try_from(state % n).unwrap_or(0)
        };
        let mut now = at(0);
        let mut seen = [0usize; 3];
        for step in 0..30_000 {
            if rand(10) == 0 {
                // The cache drops expired entries lazily, per shard. The model cannot know
                // which ones are gone, so before the clock steps back both drop all of them.
                c.sweep(now);
                model.retain(|_, exp| *exp > now);
                assert_eq!(c.len(), model.len(), "step {step}");
                now = now.minus(Span::millis(rand(400)));
            } else {
                now = now.plus(Span::millis(rand(100)));
            }
            let key = u32::try_from(rand(120)).unwrap_or(0);
            let ttl = Span::millis(200 * (1 + rand(12)));
            let live = model.values().filter(|exp| **exp > now).count();
            let expected = match model.get(&key) {
                Some(exp) if *exp > now => InsertOutcome::Replayed,
                _ if live < cap => InsertOutcome::Fresh,
                _ => InsertOutcome::Unavailable,
            };
            assert_eq!(c.insert_if_absent(&k(key), now, ttl), expected, "step {step}");
            seen[expected as usize] += 1;
            if expected == InsertOutcome::Fresh {
                model.insert(key, now.plus(ttl));
            }
            assert_eq!(c.contains(&k(key), now), model.get(&key).is_some_and(|exp| *exp > now));
        }
        assert!(seen.iter().all(|n| *n > 3000), "every outcome exercised: {seen:?}");
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
