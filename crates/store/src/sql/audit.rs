//! Reading the audit chain (appending happens in `mod.rs`, inside every write transaction).

use async_trait::async_trait;
use gatehouse_core::audit::{AuditEvent, AuditRecord};
use gatehouse_core::ids::UserId;
use gatehouse_core::store::{AuditStore, SideEffects, StoreResult};
use sqlx::any::AnyRow;

use super::rows;
use super::{SqlStore, map_err};

const COLS: &str = "seq, at, instance, kind, actor, subject, ip, request_id, outcome, details, prev_hash, hash, mac";

fn record(row: &AnyRow) -> StoreResult<AuditRecord> {
    Ok(AuditRecord {
        seq: rows::i64_col(row, "seq")?,
        at: rows::ts(row, "at")?,
        instance: rows::text(row, "instance")?,
        kind: rows::text(row, "kind")?,
        actor: rows::opt_text(row, "actor")?,
        subject: rows::opt_text(row, "subject")?,
        ip: rows::opt_text(row, "ip")?,
        request_id: rows::opt_text(row, "request_id")?,
        outcome: rows::text(row, "outcome")?,
        details: rows::text(row, "details")?,
        prev_hash: rows::hash32(row, "prev_hash")?,
        hash: rows::hash32(row, "hash")?,
        mac: rows::hash32(row, "mac")?,
    })
}

#[async_trait]
impl AuditStore for SqlStore {
    async fn append(&self, events: Vec<AuditEvent>) -> StoreResult<()> {
        let w = self.begin().await?;
        self.finish(w, SideEffects { events, ..Default::default() }).await
    }

    async fn history(&self, user: UserId, before_seq: Option<i64>, limit: u32) -> StoreResult<Vec<AuditRecord>> {
        let sql = format!("SELECT {COLS} FROM audit_events WHERE subject = $1 AND seq < $2 ORDER BY seq DESC LIMIT $3");
        let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(user.to_string())
            .bind(before_seq.unwrap_or(i64::MAX))
            .bind(i64::from(limit))
            .fetch_all(&mut *self.reader().await?)
            .await
            .map_err(map_err)?;
        rows.iter().map(record).collect()
    }

    async fn records_after(&self, after_seq: i64, limit: u32) -> StoreResult<Vec<AuditRecord>> {
        let sql = format!("SELECT {COLS} FROM audit_events WHERE seq > $1 ORDER BY seq ASC LIMIT $2");
        let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(after_seq)
            .bind(i64::from(limit))
            .fetch_all(&mut *self.reader().await?)
            .await
            .map_err(map_err)?;
        rows.iter().map(record).collect()
    }
}
