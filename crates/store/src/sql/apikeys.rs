//! API keys and their usage counts.

use async_trait::async_trait;
use gatehouse_core::apikey::{ApiKey, ApiKeyId, ApiKeyStatus};
use gatehouse_core::ids::UserId;
use gatehouse_core::store::{ApiKeyStore, KeyLastUse, KeyUsage, SideEffects, StoreError, StoreResult, StoredApiKey};
use sqlx::any::AnyRow;
use sqlx::{Any, Row, Transaction};

use super::rows;
use super::{SqlStore, map_err};

fn status_str(s: ApiKeyStatus) -> &'static str {
    match s {
        ApiKeyStatus::Active => "active",
        ApiKeyStatus::Locked => "locked",
        ApiKeyStatus::Suspended => "suspended",
        ApiKeyStatus::Revoked => "revoked",
    }
}

fn record_json(k: &ApiKey) -> StoreResult<String> {
    serde_json::to_string(k).map_err(|e| StoreError::Other(format!("api key record: {e}")))
}

fn decode(row: &AnyRow) -> StoreResult<StoredApiKey> {
    let mut key: ApiKey = serde_json::from_str(&rows::text(row, "record")?)
        .map_err(|e| StoreError::Corrupt(format!("api key record: {e}")))?;
    // The batched last-use columns are the source of truth for last use.
    key.last_used = match rows::opt_ts(row, "last_used_at")? {
        Some(at) => Some(gatehouse_core::apikey::key::LastUse {
            at,
            ip: rows::opt_text(row, "last_used_ip")?.and_then(|s| s.parse().ok()),
            user_agent: rows::opt_text(row, "last_used_ua")?,
        }),
        None => None,
    };
    let secret_sealed: Option<Vec<u8>> = row.try_get("secret_sealed").map_err(map_err)?;
    let public_key: Option<Vec<u8>> = row.try_get("public_key").map_err(map_err)?;
    Ok(StoredApiKey { key, secret_sealed, public_key })
}

const COLS: &str = "record, secret_sealed, public_key, last_used_at, last_used_ip, last_used_ua";

async fn insert(tx: &mut Transaction<'static, Any>, k: &StoredApiKey) -> StoreResult<()> {
    let key = &k.key;
    sqlx::query(
        "INSERT INTO api_keys (id, owner, kind, status, record, secret_sealed, public_key, created_at, expires_at, updated_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $8)",
    )
    .bind(key.id.to_string())
    .bind(key.owner.to_string())
    .bind(serde_json::to_value(key.kind).ok().and_then(|v| v.as_str().map(str::to_owned)).unwrap_or_default())
    .bind(status_str(key.status))
    .bind(record_json(key)?)
    .bind(k.secret_sealed.clone())
    .bind(k.public_key.clone())
    .bind(key.created_at.as_millis())
    .bind(key.expires_at.as_millis())
    .execute(&mut **tx)
    .await
    .map_err(map_err)?;
    Ok(())
}

async fn update(
    tx: &mut Transaction<'static, Any>,
    key: &ApiKey,
    now: gatehouse_core::clock::Timestamp,
) -> StoreResult<bool> {
    let r = sqlx::query(
        "UPDATE api_keys SET status = $1, record = $2, expires_at = $3, updated_at = $4 WHERE id = $5 AND owner = $6",
    )
    .bind(status_str(key.status))
    .bind(record_json(key)?)
    .bind(key.expires_at.as_millis())
    .bind(now.as_millis())
    .bind(key.id.to_string())
    .bind(key.owner.to_string())
    .execute(&mut **tx)
    .await
    .map_err(map_err)?;
    Ok(r.rows_affected() == 1)
}

/// Suspends every API key of `user` that is not revoked, inside `tx` (account freeze).
pub(crate) async fn suspend_all(
    tx: &mut Transaction<'static, Any>,
    user: UserId,
    now: gatehouse_core::clock::Timestamp,
) -> StoreResult<()> {
    let sql = format!("SELECT {COLS} FROM api_keys WHERE owner = $1 AND status <> 'revoked'");
    let rows =
        sqlx::query(sqlx::AssertSqlSafe(sql)).bind(user.to_string()).fetch_all(&mut **tx).await.map_err(map_err)?;
    for row in &rows {
        let mut key = decode(row)?.key;
        if key.suspend().is_ok() {
            update(tx, &key, now).await?;
        }
    }
    Ok(())
}

#[async_trait]
impl ApiKeyStore for SqlStore {
    async fn create_api_key(&self, k: &StoredApiKey, max_live: u32, fx: SideEffects) -> StoreResult<bool> {
        let mut w = self.begin().await?;
        let row = sqlx::query("SELECT COUNT(*) AS n FROM api_keys WHERE owner = $1 AND status <> 'revoked'")
            .bind(k.key.owner.to_string())
            .fetch_one(&mut *w.tx)
            .await
            .map_err(map_err)?;
        if rows::i64_col(&row, "n")? >= i64::from(max_live) {
            return Ok(false);
        }
        insert(&mut w.tx, k).await?;
        self.finish(w, fx).await?;
        Ok(true)
    }

    async fn find_api_key(&self, id: ApiKeyId) -> StoreResult<Option<StoredApiKey>> {
        let sql = format!("SELECT {COLS} FROM api_keys WHERE id = $1");
        let row = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(id.to_string())
            .fetch_optional(&mut *self.reader().await?)
            .await
            .map_err(map_err)?;
        row.as_ref().map(decode).transpose()
    }

    async fn list_api_keys(&self, owner: UserId) -> StoreResult<Vec<ApiKey>> {
        let sql = format!("SELECT {COLS} FROM api_keys WHERE owner = $1 ORDER BY created_at DESC");
        let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(owner.to_string())
            .fetch_all(&mut *self.reader().await?)
            .await
            .map_err(map_err)?;
        rows.iter().map(|r| decode(r).map(|k| k.key)).collect()
    }

    async fn update_api_key(&self, key: &ApiKey, fx: SideEffects) -> StoreResult<bool> {
        let mut w = self.begin().await?;
        if !update(&mut w.tx, key, self.now()).await? {
            return Ok(false);
        }
        self.finish(w, fx).await?;
        Ok(true)
    }

    async fn rotate_api_key(&self, predecessor: &ApiKey, successor: &StoredApiKey, fx: SideEffects) -> StoreResult<()> {
        let mut w = self.begin().await?;
        if !update(&mut w.tx, predecessor, self.now()).await? {
            return Err(StoreError::Other("rotated key not found".into()));
        }
        insert(&mut w.tx, successor).await?;
        self.finish(w, fx).await
    }

    async fn flush_key_usage(&self, usage: &[KeyUsage], last: &[KeyLastUse]) -> StoreResult<()> {
        if usage.is_empty() && last.is_empty() {
            return Ok(());
        }
        let mut w = self.begin().await?;
        for u in usage {
            sqlx::query(
                "INSERT INTO api_key_usage (key_id, route, outcome, count, last_at) VALUES ($1, $2, $3, $4, $5) \
                 ON CONFLICT (key_id, route, outcome) DO UPDATE SET count = api_key_usage.count + $4, \
                 last_at = CASE WHEN api_key_usage.last_at > $5 THEN api_key_usage.last_at ELSE $5 END",
            )
            .bind(u.key_id.to_string())
            .bind(u.route.clone())
            .bind(u.outcome.clone())
            .bind(i64::try_from(u.count).unwrap_or(i64::MAX))
            .bind(u.last_at.as_millis())
            .execute(&mut *w.tx)
            .await
            .map_err(map_err)?;
        }
        for l in last {
            sqlx::query(
                "UPDATE api_keys SET last_used_at = $1, last_used_ip = $2, last_used_ua = $3 \
                 WHERE id = $4 AND (last_used_at IS NULL OR last_used_at < $1)",
            )
            .bind(l.at.as_millis())
            .bind(l.ip.clone())
            .bind(l.user_agent.clone())
            .bind(l.key_id.to_string())
            .execute(&mut *w.tx)
            .await
            .map_err(map_err)?;
        }
        w.tx.commit().await.map_err(map_err)
    }

    async fn keys_expiring_before(
        &self,
        before: gatehouse_core::clock::Timestamp,
        limit: u32,
    ) -> StoreResult<Vec<(ApiKey, u8)>> {
        let sql = format!(
            "SELECT {COLS}, reminded_stage FROM api_keys WHERE status <> 'revoked' AND expires_at < $1 ORDER BY expires_at LIMIT $2"
        );
        let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(before.as_millis())
            .bind(i64::from(limit))
            .fetch_all(&mut *self.reader().await?)
            .await
            .map_err(map_err)?;
        rows.iter()
            .map(|r| Ok((decode(r)?.key, u8::try_from(rows::i64_col(r, "reminded_stage")?).unwrap_or(u8::MAX))))
            .collect()
    }

    async fn mark_key_reminded(&self, id: ApiKeyId, stage: u8, fx: SideEffects) -> StoreResult<bool> {
        let mut w = self.begin().await?;
        let r = sqlx::query("UPDATE api_keys SET reminded_stage = $1 WHERE id = $2 AND reminded_stage < $1")
            .bind(i64::from(stage))
            .bind(id.to_string())
            .execute(&mut *w.tx)
            .await
            .map_err(map_err)?;
        if r.rows_affected() == 0 {
            return Ok(false);
        }
        self.finish(w, fx).await?;
        Ok(true)
    }

    async fn note_key_networks(
        &self,
        seen: &[(ApiKeyId, String)],
        now: gatehouse_core::clock::Timestamp,
    ) -> StoreResult<Vec<(ApiKeyId, String)>> {
        if seen.is_empty() {
            return Ok(vec![]);
        }
        let mut w = self.begin().await?;
        let mut fresh = Vec::new();
        for (key, network) in seen {
            let had_any = sqlx::query("SELECT network FROM api_key_networks WHERE key_id = $1 LIMIT 1")
                .bind(key.to_string())
                .fetch_optional(&mut *w.tx)
                .await
                .map_err(map_err)?
                .is_some();
            let r = sqlx::query(
                "INSERT INTO api_key_networks (key_id, network, first_seen) VALUES ($1, $2, $3) ON CONFLICT (key_id, network) DO NOTHING",
            )
            .bind(key.to_string())
            .bind(network.clone())
            .bind(now.as_millis())
            .execute(&mut *w.tx)
            .await
            .map_err(map_err)?;
            if r.rows_affected() == 1 && had_any {
                fresh.push((*key, network.clone()));
            }
        }
        w.tx.commit().await.map_err(map_err)?;
        Ok(fresh)
    }

    async fn key_usage(&self, id: ApiKeyId) -> StoreResult<Vec<KeyUsage>> {
        let rows = sqlx::query(
            "SELECT route, outcome, count, last_at FROM api_key_usage WHERE key_id = $1 ORDER BY route, outcome",
        )
        .bind(id.to_string())
        .fetch_all(&mut *self.reader().await?)
        .await
        .map_err(map_err)?;
        rows.iter()
            .map(|r| {
                Ok(KeyUsage {
                    key_id: id,
                    route: rows::text(r, "route")?,
                    outcome: rows::text(r, "outcome")?,
                    count: u64::try_from(rows::i64_col(r, "count")?).unwrap_or(0),
                    last_at: rows::ts(r, "last_at")?,
                })
            })
            .collect()
    }
}
