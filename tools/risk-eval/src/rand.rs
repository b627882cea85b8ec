//! Draws for the generator, from the core's [`SeededRng`] (SHA-256 in counter mode) so that a
//! seed fixes the whole run.

use gatehouse_core::rng::{SecureRng, SeededRng};

/// A buffered reader of a [`SeededRng`] with the few distributions the generator needs.
#[derive(Debug)]
pub struct Rand {
    rng: SeededRng,
    buf: [u8; 4096],
    pos: usize,
}

impl Rand {
    /// A generator fixed by `seed`.
    pub fn new(seed: u64) -> Self {
        Self { rng: SeededRng::new(seed), buf: [0; 4096], pos: 4096 }
    }

    /// The underlying generator, for minting ids.
    pub fn secure(&self) -> &dyn SecureRng {
        &self.rng
    }

    /// 64 random bits.
    pub fn u64(&mut self) -> u64 {
        if self.pos + 8 > self.buf.len() {
            self.rng.fill(&mut self.buf);
            self.pos = 0;
        }
        let mut b = [0u8; 8];
        b.copy_from_slice(&self.buf[self.pos..self.pos + 8]);
        self.pos += 8;
        u64::from_le_bytes(b)
    }

    /// Uniform in [0, 1).
    pub fn f64(&mut self) -> f64 {
        (self.u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// Uniform in 0..n (0 when n is 0).
    pub fn below(&mut self, n: usize) -> usize {
        if n == 0 { 0 } else { (self.f64() * n as f64) as usize % n }
    }

    /// Uniform in lo..hi (lo when empty).
    pub fn range(&mut self, lo: i64, hi: i64) -> i64 {
        if hi <= lo { lo } else { lo + (self.f64() * (hi - lo) as f64) as i64 }
    }

    /// True with probability p.
    pub fn chance(&mut self, p: f64) -> bool {
        self.f64() < p
    }

    /// An index drawn with the given weights (0 when all are zero).
    pub fn weighted(&mut self, w: &[f64]) -> usize {
        let total: f64 = w.iter().sum();
        let mut x = self.f64() * total;
        for (i, wi) in w.iter().enumerate() {
            if x < *wi {
                return i;
            }
            x -= wi;
        }
        w.len().saturating_sub(1)
    }

    /// Standard normal (Box–Muller).
    pub fn normal(&mut self) -> f64 {
        let u1 = self.f64().max(1e-12);
        let u2 = self.f64();
        (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()
    }

    /// Poisson with mean `lambda` (Knuth; lambda is small here).
    pub fn poisson(&mut self, lambda: f64) -> u32 {
        let l = (-lambda).exp();
        let mut k = 0;
        let mut p = 1.0;
        loop {
            p *= self.f64();
            if p <= l || k > 1000 {
                return k;
            }
            k += 1;
        }
    }
}
