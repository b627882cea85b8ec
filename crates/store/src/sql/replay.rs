//! The durable replay store, with group commit.
//!
//! Every signed request inserts its nonce (or signature) once. With `synchronous=FULL` an
//! fsync costs ≈ 3 ms on this hardware, so one transaction per request would cap the proxy at
//! a few hundred requests per second. Instead a single writer task drains whatever inserts are
//! waiting, applies them in **one** transaction, commits (one fsync), and only then answers
//! each waiter. Every answer is still durable before the request proceeds; throughput scales
//! with the batch size, latency grows by at most one commit.
//!
//! Inside a batch, inserts are applied in arrival order, so two requests with the same key in
//! one batch get "fresh" and "replayed" respectively — the same answer a lock would give.

use std::sync::Arc;

use async_trait::async_trait;
use gatehouse_core::clock::{Span, Timestamp};
use gatehouse_core::replay::ReplayKey;
use gatehouse_core::store::{ReplayStore, StoreError, StoreResult};
use tokio::sync::{mpsc, oneshot};

use super::{SqlStore, map_err};

/// Largest batch committed at once.
const MAX_BATCH: usize = 512;
/// Waiting inserts beyond which callers are refused (503) instead of queueing without bound.
const QUEUE: usize = 8192;

pub(crate) struct Pending {
    key: [u8; 32],
    now: i64,
    expires_at: i64,
    reply: oneshot::Sender<StoreResult<bool>>,
}

/// Handle to the group-commit writer.
#[derive(Debug, Clone)]
pub(crate) struct ReplayWriter {
    tx: mpsc::Sender<Pending>,
}

impl ReplayWriter {
    pub(crate) fn spawn(store: Arc<SqlStore>) -> Self {
        let (tx, rx) = mpsc::channel(QUEUE);
        tokio::spawn(run(store, rx));
        Self { tx }
    }
}

async fn run(store: Arc<SqlStore>, mut rx: mpsc::Receiver<Pending>) {
    let mut batch = Vec::with_capacity(MAX_BATCH);
    while rx.recv_many(&mut batch, MAX_BATCH).await > 0 {
        let results = commit(&store, &batch).await;
        match results {
            Ok(fresh) => {
                for (p, f) in batch.drain(..).zip(fresh) {
                    let _ = p.reply.send(Ok(f));
                }
            }
            Err(e) => {
                let msg = e.to_string();
                let unavailable = matches!(e, StoreError::Unavailable(_));
                for p in batch.drain(..) {
                    let err =
                        if unavailable { StoreError::Unavailable(msg.clone()) } else { StoreError::Other(msg.clone()) };
                    let _ = p.reply.send(Err(err));
                }
            }
        }
    }
}

async fn commit(store: &SqlStore, batch: &[Pending]) -> StoreResult<Vec<bool>> {
    let mut w = store.begin().await?;
    let mut out = Vec::with_capacity(batch.len());
    for p in batch {
        // Insert, or take over an expired record; a live record wins (0 rows).
        let r = sqlx::query(
            "INSERT INTO replay_nonces (key, expires_at) VALUES ($1, $2) \
             ON CONFLICT (key) DO UPDATE SET expires_at = $2 WHERE replay_nonces.expires_at <= $3",
        )
        .bind(p.key.to_vec())
        .bind(p.expires_at)
        .bind(p.now)
        .execute(&mut *w.tx)
        .await
        .map_err(map_err)?;
        out.push(r.rows_affected() == 1);
    }
    w.tx.commit().await.map_err(map_err)?;
    Ok(out)
}

#[async_trait]
impl ReplayStore for SqlStore {
    async fn insert_if_absent(&self, key: &ReplayKey, now: Timestamp, ttl: Span) -> StoreResult<bool> {
        let writer = self.replay_writer()?;
        let (reply, rx) = oneshot::channel();
        let pending =
            Pending { key: *key.as_bytes(), now: now.as_millis(), expires_at: now.plus(ttl).as_millis(), reply };
        writer.tx.try_send(pending).map_err(|_| StoreError::Unavailable("replay store queue full".into()))?;
        rx.await.map_err(|_| StoreError::Unavailable("replay writer stopped".into()))?
    }

    async fn sweep_replay(&self, now: Timestamp) -> StoreResult<u64> {
        let mut w = self.begin().await?;
        let r = sqlx::query("DELETE FROM replay_nonces WHERE expires_at <= $1")
            .bind(now.as_millis())
            .execute(&mut *w.tx)
            .await
            .map_err(map_err)?;
        w.tx.commit().await.map_err(map_err)?;
        Ok(r.rows_affected())
    }
}
