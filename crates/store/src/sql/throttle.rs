//! Shared login-failure counters.

use async_trait::async_trait;
use gatehouse_core::audit::AuditEvent;
use gatehouse_core::clock::Timestamp;
use gatehouse_core::store::{SideEffects, StoreResult, ThrottleStore};
use gatehouse_core::throttle::{FailureCounter, LockRule};
use sqlx::any::AnyRow;

use super::rows;
use super::{SqlStore, map_err};

fn counter(row: &AnyRow) -> StoreResult<FailureCounter> {
    Ok(FailureCounter {
        consecutive: u32::try_from(rows::i64_col(row, "consecutive")?).unwrap_or(u32::MAX),
        last_failure_at: rows::opt_ts(row, "last_failure_at")?,
        locked_until: rows::opt_ts(row, "locked_until")?,
    })
}

#[async_trait]
impl ThrottleStore for SqlStore {
    async fn load_counters(&self, keys: &[String]) -> StoreResult<Vec<FailureCounter>> {
        if keys.is_empty() {
            return Ok(Vec::new());
        }
        // One statement for all keys; the answer comes back in the order asked.
        let marks: Vec<String> = (1..=keys.len()).map(|i| format!("${i}")).collect();
        let sql = format!(
            "SELECT key, consecutive, last_failure_at, locked_until FROM login_throttle WHERE key IN ({})",
            marks.join(", ")
        );
        let mut q = sqlx::query(sqlx::AssertSqlSafe(sql));
        for k in keys {
            q = q.bind(k.clone());
        }
        let found = q.fetch_all(&mut *self.reader().await?).await.map_err(map_err)?;
        let mut out = vec![FailureCounter::default(); keys.len()];
        for row in &found {
            let key = rows::text(row, "key")?;
            let c = counter(row)?;
            for (slot, k) in out.iter_mut().zip(keys) {
                if *k == key {
                    *slot = c;
                }
            }
        }
        Ok(out)
    }

    async fn record_failure(
        &self,
        keys: &[String],
        rule: LockRule,
        now: Timestamp,
        mut fx: SideEffects,
        on_lock: AuditEvent,
    ) -> StoreResult<FailureCounter> {
        let mut w = self.begin().await?;
        let mut account = FailureCounter::default();
        for (i, k) in keys.iter().enumerate() {
            let row = sqlx::query(
                "INSERT INTO login_throttle (key, consecutive, last_failure_at, locked_until) VALUES ($1, 1, $2, NULL) \
                 ON CONFLICT (key) DO UPDATE SET consecutive = login_throttle.consecutive + 1, last_failure_at = $2 \
                 RETURNING consecutive, last_failure_at, locked_until",
            )
            .bind(k.clone())
            .bind(now.as_millis())
            .fetch_one(&mut *w.tx)
            .await
            .map_err(map_err)?;
            let mut c = counter(&row)?;
            if i == 0 {
                let already_locked = c.locked_until.is_some_and(|t| t > now);
                if c.consecutive >= rule.after && !already_locked {
                    let until = now.plus(rule.duration);
                    sqlx::query("UPDATE login_throttle SET locked_until = $1 WHERE key = $2")
                        .bind(until.as_millis())
                        .bind(k.clone())
                        .execute(&mut *w.tx)
                        .await
                        .map_err(map_err)?;
                    c.locked_until = Some(until);
                    fx.events.push(on_lock.clone().with("locked_until", until.to_rfc3339()));
                }
                account = c;
            }
        }
        self.finish(w, fx).await?;
        Ok(account)
    }
}
