//! The webhook outbox: queued in the transaction that causes it, delivered by a worker with
//! retries until the receiver acknowledges; the row id is the idempotency key.

use async_trait::async_trait;
use gatehouse_core::clock::{Span, Timestamp};
use gatehouse_core::store::{QueuedWebhook, StoreResult, WebhookStore};

use super::rows;
use super::{SqlStore, map_err};

#[async_trait]
impl WebhookStore for SqlStore {
    async fn claim_webhooks(&self, now: Timestamp, lease: Span, limit: u32) -> StoreResult<Vec<QueuedWebhook>> {
        let due = sqlx::query(
            "SELECT id FROM webhook_outbox WHERE delivered_at IS NULL AND next_attempt_at <= $1 ORDER BY next_attempt_at LIMIT $2",
        )
        .bind(now.as_millis())
        .bind(i64::from(limit))
        .fetch_all(&mut *self.reader().await?)
        .await
        .map_err(map_err)?;
        let mut out = Vec::new();
        for row in due {
            let id = rows::text(&row, "id")?;
            let mut w = self.begin().await?;
            let claimed = sqlx::query(
                "UPDATE webhook_outbox SET next_attempt_at = $1, attempts = attempts + 1 \
                 WHERE id = $2 AND delivered_at IS NULL AND next_attempt_at <= $3 RETURNING id, topic, body, created_at",
            )
            .bind(now.plus(lease).as_millis())
            .bind(id)
            .bind(now.as_millis())
            .fetch_optional(&mut *w.tx)
            .await
            .map_err(map_err)?;
            w.tx.commit().await.map_err(map_err)?;
            if let Some(r) = claimed {
                out.push(QueuedWebhook {
                    id: rows::text(&r, "id")?,
                    topic: rows::text(&r, "topic")?,
                    body: rows::text(&r, "body")?,
                    created_at: rows::ts(&r, "created_at")?,
                });
            }
        }
        Ok(out)
    }

    async fn mark_webhook_delivered(&self, id: &str, now: Timestamp) -> StoreResult<()> {
        let mut w = self.begin().await?;
        sqlx::query("UPDATE webhook_outbox SET delivered_at = $1, last_error = NULL WHERE id = $2")
            .bind(now.as_millis())
            .bind(id.to_owned())
            .execute(&mut *w.tx)
            .await
            .map_err(map_err)?;
        w.tx.commit().await.map_err(map_err)
    }

    async fn mark_webhook_failed(&self, id: &str, error: &str, retry_at: Timestamp) -> StoreResult<()> {
        let mut w = self.begin().await?;
        let error: String = error.chars().take(500).collect();
        sqlx::query(
            "UPDATE webhook_outbox SET last_error = $1, next_attempt_at = $2 WHERE id = $3 AND delivered_at IS NULL",
        )
        .bind(error)
        .bind(retry_at.as_millis())
        .bind(id.to_owned())
        .execute(&mut *w.tx)
        .await
        .map_err(map_err)?;
        w.tx.commit().await.map_err(map_err)
    }

    async fn pending_webhooks(&self) -> StoreResult<u64> {
        let row = sqlx::query("SELECT COUNT(*) AS n FROM webhook_outbox WHERE delivered_at IS NULL")
            .fetch_one(&mut *self.reader().await?)
            .await
            .map_err(map_err)?;
        Ok(u64::try_from(rows::i64_col(&row, "n")?).unwrap_or(0))
    }
}
