//! Group commit for small durable writes on hot paths (TOTP step use, step-up tokens, session
//! proofs and touches).
//!
//! With `synchronous=FULL` (SQLite) or `synchronous_commit=on` (PostgreSQL) every commit waits
//! for an fsync (≈ 3 ms here), so one transaction per request caps such a path at a few
//! hundred requests per second. A single writer task drains whatever operations are waiting,
//! runs them in **one** transaction, commits once, and only then
//! answers every waiter: an answer is durable before the caller proceeds.
//!
//! A batch first runs without savepoints (an operation refuses only before its first write,
//! so a refusal leaves nothing behind); if any operation fails, the whole transaction is rolled
//! back and the batch runs again with a `SAVEPOINT` around each operation. Either way, each
//! operation keeps its own atomic outcome: `Ok(true)` releases its savepoint (its writes
//! commit with the batch), `Ok(false)` or an error rolls back to it (nothing it wrote
//! survives), exactly as if it had run in a transaction of its own that committed or rolled
//! back. Operations apply in arrival order, so a duplicate inside a batch sees the earlier
//! write and is refused; across instances the database constraints stay the arbiter.
//!
//! The audit events of the operations that keep their writes are appended to the chain once,
//! at the end of the batch, in arrival order (a head update, one insert per 16 events and a
//! head-hash update per batch, instead of three statements per event): every statement here is a round trip to the connection's thread, and those trips,
//! not the fsync, are what a step-up costs.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use gatehouse_core::store::{SideEffects, StoreError, StoreResult};
use sqlx::{Any, Transaction};
use tokio::sync::{mpsc, oneshot};

use super::{SqlStore, map_err};

/// Largest batch committed at once.
const MAX_BATCH: usize = 512;
/// Waiting operations beyond which callers are refused (503) instead of queueing without bound.
const QUEUE: usize = 8192;

/// A transaction handed to an operation and back.
pub(crate) type Tx = Transaction<'static, Any>;
/// What an operation's future yields: the transaction back, and keep (`true`) or discard.
pub(crate) type OpFuture = Pin<Box<dyn Future<Output = (Tx, StoreResult<bool>)> + Send>>;
/// One operation: runs its statements in the batch transaction. It may run twice (see
/// [`commit`]), so it must not consume what it captured; and it answers `Ok(false)` (refused,
/// discard) only before its first write, so that a refusal has nothing to roll back.
pub(crate) type Op = Box<dyn Fn(Tx) -> OpFuture + Send + Sync>;

struct Pending {
    op: Op,
    fx: SideEffects,
    reply: oneshot::Sender<StoreResult<bool>>,
}

/// Handle to the group-commit writer.
#[derive(Debug, Clone)]
pub(crate) struct GroupWriter {
    tx: mpsc::Sender<Pending>,
}

impl GroupWriter {
    pub(crate) fn spawn(store: Arc<SqlStore>) -> Self {
        let (tx, rx) = mpsc::channel(QUEUE);
        tokio::spawn(run(store, rx));
        Self { tx }
    }
}

fn copy_err(e: &StoreError) -> StoreError {
    match e {
        StoreError::Unavailable(m) => StoreError::Unavailable(m.clone()),
        other => StoreError::Other(other.to_string()),
    }
}

async fn run(store: Arc<SqlStore>, mut rx: mpsc::Receiver<Pending>) {
    let mut batch = Vec::with_capacity(MAX_BATCH);
    while rx.recv_many(&mut batch, MAX_BATCH).await > 0 {
        let mut replies = Vec::with_capacity(batch.len());
        let outcome = commit(&store, &mut batch, &mut replies).await;
        match outcome {
            Ok(results) => {
                for (reply, r) in replies.into_iter().zip(results) {
                    let _ = reply.send(r);
                }
            }
            Err(e) => {
                for reply in replies {
                    let _ = reply.send(Err(copy_err(&e)));
                }
            }
        }
    }
}

async fn commit(
    store: &Arc<SqlStore>,
    batch: &mut Vec<Pending>,
    replies: &mut Vec<oneshot::Sender<StoreResult<bool>>>,
) -> StoreResult<Vec<StoreResult<bool>>> {
    let ops: Vec<(Op, SideEffects)> = batch
        .drain(..)
        .map(|p| {
            replies.push(p.reply);
            (p.op, p.fx)
        })
        .collect();
    // First without savepoints: two statements (two round trips) fewer per operation. A
    // refusal wrote nothing (the `Op` contract), so only an error needs undoing — and then the
    // whole batch is rolled back and run again with a savepoint around each operation.
    if let Some(out) = commit_plain(store, &ops).await? {
        return Ok(out);
    }
    commit_isolated(store, ops).await
}

/// Runs `ops` in one transaction without savepoints; `None` (everything rolled back) when one
/// of them failed.
async fn commit_plain(store: &Arc<SqlStore>, ops: &[(Op, SideEffects)]) -> StoreResult<Option<Vec<StoreResult<bool>>>> {
    let w = store.begin().await?;
    let (mut tx, guard) = w.into_parts();
    let mut out = Vec::with_capacity(ops.len());
    let mut events = Vec::new();
    for (op, fx) in ops {
        let (back, r) = op(tx).await;
        tx = back;
        match r {
            Ok(true) => {
                let mut fx = fx.clone();
                events.append(&mut fx.events);
                if store.apply_effects(&mut tx, fx).await.is_err() {
                    return Ok(None);
                }
                out.push(Ok(true));
            }
            Ok(false) => out.push(Ok(false)),
            // Dropping `tx` rolls the batch back; the caller runs it again, isolated.
            Err(_) => return Ok(None),
        }
    }
    if store.append_events(&mut tx, &events).await.is_err() {
        return Ok(None);
    }
    tx.commit().await.map_err(map_err)?;
    drop(guard);
    Ok(Some(out))
}

/// Runs `ops` in one transaction, each inside its own savepoint: a failing operation is
/// rolled back alone and its neighbours keep their outcome.
async fn commit_isolated(store: &Arc<SqlStore>, ops: Vec<(Op, SideEffects)>) -> StoreResult<Vec<StoreResult<bool>>> {
    let w = store.begin().await?;
    let (mut tx, guard) = w.into_parts();
    let mut out = Vec::with_capacity(ops.len());
    // The audit events of the operations that keep their writes, appended once at the end.
    let mut events = Vec::new();
    for (op, mut fx) in ops {
        sqlx::query("SAVEPOINT gh_group").execute(&mut *tx).await.map_err(map_err)?;
        let (back, mut r) = op(tx).await;
        tx = back;
        // The operation's mail (and other effects) commit with it, or not at all; its audit
        // events join the batch's list only if it keeps its writes.
        let own_events = std::mem::take(&mut fx.events);
        if matches!(r, Ok(true))
            && let Err(e) = store.apply_effects(&mut tx, fx).await
        {
            r = Err(e);
        }
        let keep = matches!(r, Ok(true));
        if keep {
            events.extend(own_events);
        } else {
            sqlx::query("ROLLBACK TO SAVEPOINT gh_group").execute(&mut *tx).await.map_err(map_err)?;
        }
        sqlx::query("RELEASE SAVEPOINT gh_group").execute(&mut *tx).await.map_err(map_err)?;
        out.push(r);
    }
    // One chain append for the whole batch (not three statements per event). If it fails,
    // nothing in the batch commits and every waiter hears so.
    store.append_events(&mut tx, &events).await?;
    tx.commit().await.map_err(map_err)?;
    drop(guard);
    Ok(out)
}

impl SqlStore {
    /// Runs `op` (then, if it keeps its writes, `fx`) in the next group commit and answers once that batch is durable. Without a
    /// running writer (a store used outside `start_background`) it runs in a transaction of
    /// its own, with the same keep/discard outcome.
    pub(crate) async fn grouped(&self, op: Op, fx: SideEffects) -> StoreResult<bool> {
        if let Some(writer) = self.group.get() {
            let (reply, rx) = oneshot::channel();
            writer
                .tx
                .try_send(Pending { op, fx, reply })
                .map_err(|_| StoreError::Unavailable("group commit queue full".into()))?;
            return rx.await.map_err(|_| StoreError::Unavailable("group writer stopped".into()))?;
        }
        let w = self.begin().await?;
        let (tx, guard) = w.into_parts();
        let (mut tx, mut r) = op(tx).await;
        if matches!(r, Ok(true))
            && let Err(e) = self.apply_effects(&mut tx, fx).await
        {
            r = Err(e);
        }
        if matches!(r, Ok(true)) {
            tx.commit().await.map_err(map_err)?;
        } else {
            tx.rollback().await.map_err(map_err)?;
        }
        drop(guard);
        r
    }
}
