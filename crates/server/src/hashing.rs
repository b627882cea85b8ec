//! The bounded Argon2 worker pool (F10, R105).
//!
//! Password hashing costs ≈ 20 ms of CPU and 19 MiB of memory per call. Logins therefore go
//! through a pool with a fixed number of workers and a bounded queue: a request that finds the
//! queue full is answered 503 at once, without hashing, so a login flood costs the server
//! almost nothing and cannot starve signed-request verification or token refreshes, which
//! never touch this pool. Hashing runs on tokio's blocking threads, not on the async workers.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use tokio::sync::Semaphore;

/// The pool refused work because it is saturated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Overloaded;

/// A bounded pool for CPU-heavy password work.
#[derive(Debug, Clone)]
pub struct HashPool {
    admission: Arc<Semaphore>,
    workers: Arc<Semaphore>,
    hashes: Arc<AtomicU64>,
    shed: Arc<AtomicU64>,
}

impl HashPool {
    /// `workers` concurrent hashes and at most `queue` more waiting.
    pub fn new(workers: usize, queue: usize) -> Self {
        Self {
            admission: Arc::new(Semaphore::new(workers + queue)),
            workers: Arc::new(Semaphore::new(workers)),
            hashes: Arc::new(AtomicU64::new(0)),
            shed: Arc::new(AtomicU64::new(0)),
        }
    }

    /// Takes a place in the pool or its queue, or refuses at once when both are full. Take
    /// it *before* any other work for a request that will need a hash (database lookups,
    /// throttle checks), so a flood is shed for nearly nothing (F10).
    pub fn admit(&self) -> Result<Admission, Overloaded> {
        match self.admission.clone().try_acquire_owned() {
            Ok(permit) => Ok(Admission { pool: self.clone(), _permit: permit }),
            Err(_) => {
                self.shed.fetch_add(1, Ordering::Relaxed);
                Err(Overloaded)
            }
        }
    }

    /// Runs `f` on a worker, or refuses at once if the pool and its queue are full.
    pub async fn run<T: Send + 'static>(&self, f: impl FnOnce() -> T + Send + 'static) -> Result<T, Overloaded> {
        self.admit()?.run(f).await
    }

    /// Password-hash operations started so far (metric `gatehouse_password_hashes_total`).
    pub fn hashes(&self) -> u64 {
        self.hashes.load(Ordering::Relaxed)
    }

    /// Requests refused because the pool was full.
    pub fn shed(&self) -> u64 {
        self.shed.load(Ordering::Relaxed)
    }
}

/// A place in the hashing pool, held for the whole of a request's password work.
#[derive(Debug)]
pub struct Admission {
    pool: HashPool,
    _permit: tokio::sync::OwnedSemaphorePermit,
}

impl Admission {
    /// Runs `f` on a worker (waiting for one if all are busy).
    pub async fn run<T: Send + 'static>(&self, f: impl FnOnce() -> T + Send + 'static) -> Result<T, Overloaded> {
        let _worker = self.pool.workers.clone().acquire_owned().await.map_err(|_| Overloaded)?;
        self.pool.hashes.fetch_add(1, Ordering::Relaxed);
        tokio::task::spawn_blocking(f).await.map_err(|_| Overloaded)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_full_pool_refuses_at_once_without_running_work() {
        let pool = HashPool::new(1, 1);
        let (tx, rx) = std::sync::mpsc::channel::<()>();
        let rx = Arc::new(std::sync::Mutex::new(rx));
        let p1 = pool.clone();
        let r1 = Arc::clone(&rx);
        let first =
            tokio::spawn(async move { p1.run(move || r1.lock().map(|r| r.recv().is_ok()).unwrap_or(false)).await });
        let p2 = pool.clone();
        let r2 = Arc::clone(&rx);
        let second =
            tokio::spawn(async move { p2.run(move || r2.lock().map(|r| r.recv().is_ok()).unwrap_or(false)).await });
        // Wait (with a deadline) until both are admitted: one running, one queued.
        let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(5);
        while pool.admission.available_permits() > 0 {
            assert!(tokio::time::Instant::now() < deadline, "pool never filled");
            tokio::task::yield_now().await;
        }
        assert_eq!(pool.run(|| 1).await, Err(Overloaded));
        assert_eq!(pool.shed(), 1);
        let _ = tx.send(());
        let _ = tx.send(());
        assert!(matches!(first.await, Ok(Ok(true))));
        assert!(matches!(second.await, Ok(Ok(true))));
        assert_eq!(pool.hashes(), 2);
    }
}
