//! The mail outbox: messages are queued in the transaction that causes them and sent by a
//! background worker, retried until the SMTP server accepts them (F18).

use async_trait::async_trait;
use gatehouse_core::clock::{Span, Timestamp};
use gatehouse_core::store::{MailStore, QueuedMail, StoreResult};
use sqlx::Row;

use super::rows;
use super::{SqlStore, map_err};

#[async_trait]
impl MailStore for SqlStore {
    async fn claim_mail(&self, now: Timestamp, lease: Span, limit: u32) -> StoreResult<Vec<QueuedMail>> {
        let due = sqlx::query(
            "SELECT id FROM mail_outbox WHERE sent_at IS NULL AND next_attempt_at <= $1 ORDER BY next_attempt_at LIMIT $2",
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
            // The conditional update is the claim: two instances never both send a message.
            let claimed = sqlx::query(
                "UPDATE mail_outbox SET next_attempt_at = $1, attempts = attempts + 1 \
                 WHERE id = $2 AND sent_at IS NULL AND next_attempt_at <= $3 RETURNING id, recipient, sealed, created_at",
            )
            .bind(now.plus(lease).as_millis())
            .bind(id)
            .bind(now.as_millis())
            .fetch_optional(&mut *w.tx)
            .await
            .map_err(map_err)?;
            w.tx.commit().await.map_err(map_err)?;
            if let Some(r) = claimed {
                let sealed: Option<Vec<u8>> = r.try_get("sealed").map_err(map_err)?;
                out.push(QueuedMail {
                    id: rows::text(&r, "id")?,
                    recipient: rows::text(&r, "recipient")?,
                    sealed: sealed.unwrap_or_default(),
                    created_at: rows::ts(&r, "created_at")?,
                });
            }
        }
        Ok(out)
    }

    async fn mark_mail_sent(&self, id: &str, now: Timestamp) -> StoreResult<()> {
        let mut w = self.begin().await?;
        sqlx::query("UPDATE mail_outbox SET sent_at = $1, sealed = NULL, last_error = NULL WHERE id = $2")
            .bind(now.as_millis())
            .bind(id.to_owned())
            .execute(&mut *w.tx)
            .await
            .map_err(map_err)?;
        w.tx.commit().await.map_err(map_err)
    }

    async fn mark_mail_failed(&self, id: &str, error: &str, retry_at: Timestamp) -> StoreResult<()> {
        let mut w = self.begin().await?;
        let error: String = error.chars().take(500).collect();
        sqlx::query("UPDATE mail_outbox SET last_error = $1, next_attempt_at = $2 WHERE id = $3 AND sent_at IS NULL")
            .bind(error)
            .bind(retry_at.as_millis())
            .bind(id.to_owned())
            .execute(&mut *w.tx)
            .await
            .map_err(map_err)?;
        w.tx.commit().await.map_err(map_err)
    }

    async fn pending_mail(&self) -> StoreResult<u64> {
        let row = sqlx::query("SELECT COUNT(*) AS n FROM mail_outbox WHERE sent_at IS NULL")
            .fetch_one(&mut *self.reader().await?)
            .await
            .map_err(map_err)?;
        Ok(u64::try_from(rows::i64_col(&row, "n")?).unwrap_or(0))
    }
}
