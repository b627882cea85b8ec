//! Randomness as an input.
//!
//! Every secret gatehouse mints (tokens, salts, seeds, nonces, key ids) comes from a
//! [`SecureRng`] handed in by the caller. Production uses [`OsRng`] (the operating system's
//! CSPRNG through `getrandom`, R91). Tests use [`SeededRng`] so that the same run mints the same
//! values and a failure can be replayed.

use std::sync::Mutex;

use sha2::{Digest, Sha256};

/// A cryptographically secure random source.
pub trait SecureRng: Send + Sync + std::fmt::Debug {
    /// Fills `dest` with random bytes. Implementations never return fewer bytes; if the
    /// operating system cannot supply randomness the process aborts rather than continue with
    /// predictable secrets (fail closed).
    fn fill(&self, dest: &mut [u8]);

    /// `N` random bytes.
    fn bytes<const N: usize>(&self) -> [u8; N]
    where
        Self: Sized,
    {
        let mut out = [0u8; N];
        self.fill(&mut out);
        out
    }
}

/// `N` random bytes from a `dyn SecureRng`.
pub fn random_bytes<const N: usize>(rng: &dyn SecureRng) -> [u8; N] {
    let mut out = [0u8; N];
    rng.fill(&mut out);
    out
}

/// A uniformly random integer below `bound` (rejection sampling, no modulo bias).
pub fn random_below(rng: &dyn SecureRng, bound: u32) -> u32 {
    if bound <= 1 {
        return 0;
    }
    let zone = u32::MAX - (u32::MAX % bound);
    loop {
        let v = u32::from_le_bytes(random_bytes::<4>(rng));
        if v < zone {
            return v % bound;
        }
    }
}

/// The operating system's CSPRNG.
#[derive(Debug, Default, Clone, Copy)]
pub struct OsRng;

impl SecureRng for OsRng {
    fn fill(&self, dest: &mut [u8]) {
        if getrandom::fill(dest).is_err() {
            // No randomness means no safe secrets: stop rather than mint guessable ones.
            std::process::abort();
        }
    }
}

/// A deterministic generator for tests: SHA-256 in counter mode over a seed. Not for
/// production: anyone who knows the seed knows every output.
#[derive(Debug)]
pub struct SeededRng {
    state: Mutex<([u8; 32], u64)>,
}

impl SeededRng {
    /// A generator whose output is fully determined by `seed`.
    pub fn new(seed: u64) -> Self {
        let key: [u8; 32] = Sha256::digest(seed.to_le_bytes()).into();
        Self { state: Mutex::new((key, 0)) }
    }
}

impl SecureRng for SeededRng {
    fn fill(&self, dest: &mut [u8]) {
        let mut guard = match self.state.lock() {
            Ok(g) => g,
            Err(poisoned) => poisoned.into_inner(),
        };
        for chunk in dest.chunks_mut(32) {
            let (key, counter) = &mut *guard;
            let mut h = Sha256::new();
            h.update(*key);
            h.update(counter.to_le_bytes());
            *counter += 1;
            let block: [u8; 32] = h.finalize().into();
            chunk.copy_from_slice(&block[..chunk.len()]);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seeded_rng_is_deterministic_and_seed_dependent() {
        let a = SeededRng::new(7).bytes::<40>();
        let b = SeededRng::new(7).bytes::<40>();
        let c = SeededRng::new(8).bytes::<40>();
        assert_eq!(a, b);
        assert_ne!(a, c);
    }

    #[test]
    fn os_rng_does_not_repeat() {
        let a = OsRng.bytes::<16>();
        let b = OsRng.bytes::<16>();
        assert_ne!(a, b);
    }

    #[test]
    fn random_below_stays_in_range() {
        let rng = SeededRng::new(1);
        for _ in 0..1000 {
            assert!(random_below(&rng, 32) < 32);
        }
        assert_eq!(random_below(&rng, 1), 0);
    }
}
