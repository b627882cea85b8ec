//! A value split into independent parts, each under its own lock.
//!
//! The per-request state of the gateway (key cache, usage log, risk memory, metrics) used to
//! sit behind one mutex each, so every request on every core queued on the same few locks and
//! bounced their cache lines between cores. Split by a key (a key id, say: state that is read
//! back per key) or by thread (state that is only added up), each request takes the lock of
//! one part only; whatever must see everything (a flush, `/metrics`) walks the parts.

use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hash};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, MutexGuard, PoisonError};

/// How many parts: well above the worker threads of a typical instance.
pub const PARTS: usize = 16;

/// `PARTS` values of `T`; a key always maps to the same part.
#[derive(Debug)]
pub struct Sharded<T> {
    parts: Box<[Mutex<T>]>,
    /// Chooses the part; random per process, so nobody can aim chosen keys at one part.
    hasher: RandomState,
}

impl<T: Default> Default for Sharded<T> {
    fn default() -> Self {
        Self::new(T::default)
    }
}

impl<T> Sharded<T> {
    /// `PARTS` parts, each made by `make`.
    pub fn new(make: impl FnMut() -> T) -> Self {
        Self { parts: std::iter::repeat_with(make).take(PARTS).map(Mutex::new).collect(), hasher: RandomState::new() }
    }

    /// The part `key` belongs to, locked. A lock poisoned by a panic is taken over: each part is
    /// a cache or an accumulator, never left half-updated in a way that matters.
    pub fn part<K: Hash + ?Sized>(&self, key: &K) -> MutexGuard<'_, T> {
        let i = usize::try_from(self.hasher.hash_one(key) % PARTS as u64).unwrap_or(0);
        self.at(i)
    }

    /// Part `i` (modulo `PARTS`), locked.
    pub fn at(&self, i: usize) -> MutexGuard<'_, T> {
        self.parts[i % PARTS].lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The calling thread's part, locked. Threads are numbered as they first ask, so up to
    /// `PARTS` threads (a server's workers) each have a part of their own: for state that is
    /// only ever added up (counters, accumulators), this shares no lock and no cache line
    /// between cores.
    pub fn mine(&self) -> MutexGuard<'_, T> {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        thread_local! {
            static INDEX: usize = NEXT.fetch_add(1, Ordering::Relaxed);
        }
        self.at(INDEX.with(|i| *i))
    }

    /// Every part in turn, each locked while it is looked at.
    pub fn each(&self) -> impl Iterator<Item = MutexGuard<'_, T>> {
        (0..PARTS).map(|i| self.at(i))
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // tests fail loudly
mod tests {
    use super::*;

    #[test]
    fn a_key_always_lands_in_one_part_and_keys_spread() {
        let s: Sharded<Vec<u32>> = Sharded::default();
        for i in 0..1000u32 {
            s.part(&(i % 100)).push(i);
        }
        let parts: Vec<Vec<u32>> = s.each().map(|p| p.clone()).collect();
        assert_eq!(parts.iter().map(Vec::len).sum::<usize>(), 1000);
        // Each of the 100 keys has all its 10 values in one part.
        for k in 0..100u32 {
            let holding = parts.iter().filter(|p| p.iter().any(|v| v % 100 == k)).count();
            assert_eq!(holding, 1, "key {k}");
        }
        assert!(parts.iter().filter(|p| !p.is_empty()).count() > PARTS / 2, "100 keys use most parts");
    }
}
