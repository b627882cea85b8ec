//! Sessions, access tokens and refresh-token rotation.

use async_trait::async_trait;
use gatehouse_core::account::Account;
use gatehouse_core::clock::Timestamp;
use gatehouse_core::ids::{DeviceId, SessionId, UserId};
use gatehouse_core::secret::TokenHash;
use gatehouse_core::session::{RefreshOutcome, RefreshRecord, RefreshState, Session};
use gatehouse_core::store::{
    AccessRecord, NewSession, RefreshDecision, RefreshRequest, SessionStore, SideEffects, StoreError, StoreResult,
    classify_refresh,
};
use sqlx::{Any, Transaction};

use super::rows::{self, ACCOUNT_COLS, SESSION_COLS};
use super::{SqlStore, map_err};

/// Revokes the live sessions of `user` except `keep`, their refresh families and access
/// tokens, inside `tx`. Returns the number of sessions revoked.
pub(crate) async fn revoke_where(
    tx: &mut Transaction<'static, Any>,
    user: UserId,
    keep: Option<SessionId>,
    reason: &str,
    now: Timestamp,
) -> StoreResult<u64> {
    let keep = keep.map(|k| k.to_string()).unwrap_or_default();
    let r = sqlx::query(
        "UPDATE sessions SET revoked_at = $1, revoke_reason = $2 WHERE user_id = $3 AND id <> $4 AND revoked_at IS NULL",
    )
    .bind(now.as_millis())
    .bind(reason.to_owned())
    .bind(user.to_string())
    .bind(keep.clone())
    .execute(&mut **tx)
    .await
    .map_err(map_err)?;
    sqlx::query(
        "UPDATE refresh_tokens SET state = 'revoked' WHERE state <> 'revoked' AND session_id IN \
         (SELECT id FROM sessions WHERE user_id = $1 AND id <> $2 AND revoked_at IS NOT NULL)",
    )
    .bind(user.to_string())
    .bind(keep.clone())
    .execute(&mut **tx)
    .await
    .map_err(map_err)?;
    sqlx::query(
        "DELETE FROM access_tokens WHERE session_id IN \
         (SELECT id FROM sessions WHERE user_id = $1 AND id <> $2 AND revoked_at IS NOT NULL)",
    )
    .bind(user.to_string())
    .bind(keep)
    .execute(&mut **tx)
    .await
    .map_err(map_err)?;
    Ok(r.rows_affected())
}

async fn revoke_one(
    tx: &mut Transaction<'static, Any>,
    id: SessionId,
    reason: &str,
    now: Timestamp,
) -> StoreResult<bool> {
    let r = sqlx::query("UPDATE sessions SET revoked_at = $1, revoke_reason = $2 WHERE id = $3 AND revoked_at IS NULL")
        .bind(now.as_millis())
        .bind(reason.to_owned())
        .bind(id.to_string())
        .execute(&mut **tx)
        .await
        .map_err(map_err)?;
    sqlx::query("UPDATE refresh_tokens SET state = 'revoked' WHERE session_id = $1 AND state <> 'revoked'")
        .bind(id.to_string())
        .execute(&mut **tx)
        .await
        .map_err(map_err)?;
    sqlx::query("DELETE FROM access_tokens WHERE session_id = $1")
        .bind(id.to_string())
        .execute(&mut **tx)
        .await
        .map_err(map_err)?;
    Ok(r.rows_affected() > 0)
}

async fn insert_access(
    tx: &mut Transaction<'static, Any>,
    hash: TokenHash,
    session: SessionId,
    now: Timestamp,
    expires: Timestamp,
) -> StoreResult<()> {
    sqlx::query(
        "INSERT INTO access_tokens (hash, session_id, created_at, expires_at) VALUES ($1, $2, $3, $4) ON CONFLICT (hash) DO NOTHING",
    )
    .bind(hash.as_bytes().to_vec())
    .bind(session.to_string())
    .bind(now.as_millis())
    .bind(expires.as_millis())
    .execute(&mut **tx)
    .await
    .map_err(map_err)?;
    Ok(())
}

async fn insert_refresh(
    tx: &mut Transaction<'static, Any>,
    hash: TokenHash,
    session: SessionId,
    now: Timestamp,
    expires: Timestamp,
) -> StoreResult<()> {
    sqlx::query(
        "INSERT INTO refresh_tokens (hash, session_id, state, created_at, expires_at) VALUES ($1, $2, 'active', $3, $4)",
    )
    .bind(hash.as_bytes().to_vec())
    .bind(session.to_string())
    .bind(now.as_millis())
    .bind(expires.as_millis())
    .execute(&mut **tx)
    .await
    .map_err(map_err)?;
    Ok(())
}

async fn load_refresh(tx: &mut Transaction<'static, Any>, hash: TokenHash) -> StoreResult<Option<RefreshRecord>> {
    let row = sqlx::query(
        "SELECT hash, session_id, state, successor, used_at, expires_at FROM refresh_tokens WHERE hash = $1",
    )
    .bind(hash.as_bytes().to_vec())
    .fetch_optional(&mut **tx)
    .await
    .map_err(map_err)?;
    let Some(row) = row else { return Ok(None) };
    let stored = TokenHash::from_bytes(rows::hash32(&row, "hash")?);
    // Looked up by hash; still compared in constant time (R57).
    if !stored.ct_eq(&hash) {
        return Ok(None);
    }
    let successor: Option<Vec<u8>> = sqlx::Row::try_get(&row, "successor").map_err(map_err)?;
    Ok(Some(RefreshRecord {
        hash: stored,
        session_id: SessionId::parse(&rows::text(&row, "session_id")?)
            .ok_or_else(|| StoreError::Corrupt("refresh session id".into()))?,
        state: RefreshState::from_stored(&rows::text(&row, "state")?),
        successor: successor.as_deref().and_then(TokenHash::from_slice),
        used_at: rows::opt_ts(&row, "used_at")?,
        expires_at: rows::ts(&row, "expires_at")?,
    }))
}

async fn load_session_account(
    tx: &mut Transaction<'static, Any>,
    id: SessionId,
) -> StoreResult<Option<(Session, Account)>> {
    let sql = format!(
        "SELECT {SESSION_COLS}, {ACCOUNT_COLS} FROM sessions s JOIN accounts a ON a.id = s.user_id WHERE s.id = $1"
    );
    let row =
        sqlx::query(sqlx::AssertSqlSafe(sql)).bind(id.to_string()).fetch_optional(&mut **tx).await.map_err(map_err)?;
    row.map(|r| Ok((rows::session(&r)?, rows::account(&r)?))).transpose()
}

/// Inserts a session, its first tokens, and clears the login counters in `reset_keys`, inside
/// `tx` (shared by plain and bound session creation).
pub(crate) async fn insert_session(
    tx: &mut Transaction<'static, Any>,
    new: &NewSession,
    reset_keys: &[String],
) -> StoreResult<()> {
    let s = &new.session;
    sqlx::query(
        "INSERT INTO sessions (id, user_id, device_id, ua_family, device_name, kind, created_ip, last_ip, created_at, \
         last_seen_at, expires_at, auth_time) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)",
    )
    .bind(s.id.to_string())
    .bind(s.user_id.to_string())
    .bind(s.device_id.to_string())
    .bind(s.ua_family.clone())
    .bind(s.device_name.clone())
    .bind(s.kind.as_str())
    .bind(s.created_ip.clone())
    .bind(s.last_ip.clone())
    .bind(s.created_at.as_millis())
    .bind(s.last_seen_at.as_millis())
    .bind(s.expires_at.as_millis())
    .bind(s.auth_time.as_millis())
    .execute(&mut **tx)
    .await
    .map_err(map_err)?;
    insert_access(tx, new.access_hash, s.id, s.created_at, new.access_expires_at).await?;
    insert_refresh(tx, new.refresh_hash, s.id, s.created_at, s.expires_at).await?;
    for k in reset_keys {
        sqlx::query("DELETE FROM login_throttle WHERE key = $1")
            .bind(k.clone())
            .execute(&mut **tx)
            .await
            .map_err(map_err)?;
    }
    Ok(())
}

#[async_trait]
impl SessionStore for SqlStore {
    async fn create_session(&self, new: &NewSession, reset_keys: &[String], fx: SideEffects) -> StoreResult<()> {
        let mut w = self.begin().await?;
        insert_session(&mut w.tx, new, reset_keys).await?;
        self.finish(w, fx).await
    }

    async fn find_by_access(&self, hash: TokenHash) -> StoreResult<Option<AccessRecord>> {
        let sql = format!(
            "SELECT t.hash AS t_hash, t.expires_at AS t_expires_at, {SESSION_COLS}, {ACCOUNT_COLS}, \
             b.jkt AS jkt, b.x5t_s256 AS x5t_s256 FROM access_tokens t \
             JOIN sessions s ON s.id = t.session_id JOIN accounts a ON a.id = s.user_id \
             LEFT JOIN token_bindings b ON b.session_id = s.id WHERE t.hash = $1"
        );
        let row = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(hash.as_bytes().to_vec())
            .fetch_optional(&mut *self.reader().await?)
            .await
            .map_err(map_err)?;
        let Some(row) = row else { return Ok(None) };
        if !TokenHash::from_bytes(rows::hash32(&row, "t_hash")?).ct_eq(&hash) {
            return Ok(None);
        }
        let bound = rows::opt_text(&row, "jkt")?.is_some() || rows::opt_text(&row, "x5t_s256")?.is_some();
        Ok(Some(AccessRecord {
            session: rows::session(&row)?,
            expires_at: rows::ts(&row, "t_expires_at")?,
            account: rows::account(&row)?,
            binding: if bound { Some(super::bindings::confirmation(&row)?) } else { None },
        }))
    }

    async fn touch_session(&self, id: SessionId, now: Timestamp, ip: &str) -> StoreResult<()> {
        let (id, now, ip) = (id.to_string(), now.as_millis(), ip.to_owned());
        self.grouped(
            Box::new(move |mut tx| {
                let (id, ip) = (id.clone(), ip.clone());
                Box::pin(async move {
                    let r = sqlx::query(
                        "UPDATE sessions SET last_seen_at = $1, last_ip = $2 WHERE id = $3 AND last_seen_at < $1",
                    )
                    .bind(now)
                    .bind(ip)
                    .bind(id)
                    .execute(&mut *tx)
                    .await
                    .map(|_| true)
                    .map_err(map_err);
                    (tx, r)
                })
            }),
            SideEffects::default(),
        )
        .await
        .map(|_| ())
    }

    async fn rotate_refresh(
        &self,
        req: &RefreshRequest,
        fx_for: &(dyn for<'o> Fn(&'o RefreshOutcome) -> SideEffects + Send + Sync),
    ) -> StoreResult<RefreshOutcome> {
        let mut w = self.begin().await?;
        let now = req.now;
        // Lock order is session row, then its refresh tokens, everywhere (revocations too):
        // concurrent refreshes of one family queue on the session row instead of deadlocking
        // on each other's token rows. The no-op update is the portable `SELECT … FOR UPDATE`.
        let Some(first) = load_refresh(&mut w.tx, req.presented).await? else {
            let fx = fx_for(&RefreshOutcome::Invalid);
            self.finish(w, fx).await?;
            return Ok(RefreshOutcome::Invalid);
        };
        sqlx::query("UPDATE sessions SET last_seen_at = last_seen_at WHERE id = $1")
            .bind(first.session_id.to_string())
            .execute(&mut *w.tx)
            .await
            .map_err(map_err)?;
        // At most two rounds: a conditional update lost to a concurrent winner is re-classified
        // against the winner's committed state.
        let mut outcome = RefreshOutcome::Invalid;
        for _round in 0..2 {
            let Some(record) = load_refresh(&mut w.tx, req.presented).await? else {
                outcome = RefreshOutcome::Invalid;
                break;
            };
            let Some((session, account)) = load_session_account(&mut w.tx, record.session_id).await? else {
                outcome = RefreshOutcome::Invalid;
                break;
            };
            let ids = (session.id, session.user_id);
            if session.revoked_at.is_none() && session.check_device(req.device.as_ref(), &req.ua_family).is_err() {
                outcome = RefreshOutcome::DeviceMismatch { session_id: ids.0, user_id: ids.1 };
                break;
            }
            let successor_matches = record.successor.is_some_and(|s| s.ct_eq(&req.successor));
            match classify_refresh(&record, &session, successor_matches, now, &req.policy, account.is_admin) {
                RefreshDecision::Rotate => {
                    let r = sqlx::query(
                        "UPDATE refresh_tokens SET state = 'used', successor = $1, used_at = $2 WHERE hash = $3 AND state = 'active'",
                    )
                    .bind(req.successor.as_bytes().to_vec())
                    .bind(now.as_millis())
                    .bind(req.presented.as_bytes().to_vec())
                    .execute(&mut *w.tx)
                    .await
                    .map_err(map_err)?;
                    if r.rows_affected() == 0 {
                        continue;
                    }
                    insert_refresh(&mut w.tx, req.successor, session.id, now, session.expires_at).await?;
                    insert_access(
                        &mut w.tx,
                        req.access,
                        session.id,
                        now,
                        req.access_expires_at.min(session.expires_at),
                    )
                    .await?;
                    sqlx::query("UPDATE sessions SET last_seen_at = $1, last_ip = $2 WHERE id = $3")
                        .bind(now.as_millis())
                        .bind(req.ip.clone())
                        .bind(session.id.to_string())
                        .execute(&mut *w.tx)
                        .await
                        .map_err(map_err)?;
                    outcome = RefreshOutcome::Rotated { session_id: ids.0, user_id: ids.1 };
                }
                RefreshDecision::Grace => {
                    outcome = RefreshOutcome::Grace { session_id: ids.0, user_id: ids.1 };
                }
                RefreshDecision::Reuse => {
                    revoke_one(&mut w.tx, session.id, "refresh_reuse", now).await?;
                    outcome = RefreshOutcome::Reuse { session_id: ids.0, user_id: ids.1 };
                }
                RefreshDecision::Invalid => outcome = RefreshOutcome::Invalid,
            }
            break;
        }
        let fx = fx_for(&outcome);
        self.finish(w, fx).await?;
        Ok(outcome)
    }

    async fn list_sessions(&self, user: UserId, now: Timestamp) -> StoreResult<Vec<Session>> {
        let sql = format!(
            "SELECT {SESSION_COLS} FROM sessions s WHERE s.user_id = $1 AND s.revoked_at IS NULL AND s.expires_at > $2 \
             ORDER BY s.created_at DESC"
        );
        let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(user.to_string())
            .bind(now.as_millis())
            .fetch_all(&mut *self.reader().await?)
            .await
            .map_err(map_err)?;
        rows.iter().map(rows::session).collect()
    }

    async fn revoke_session(
        &self,
        user: UserId,
        id: SessionId,
        reason: &str,
        now: Timestamp,
        fx: SideEffects,
    ) -> StoreResult<bool> {
        let mut w = self.begin().await?;
        let owned = sqlx::query("SELECT id FROM sessions WHERE id = $1 AND user_id = $2 AND revoked_at IS NULL")
            .bind(id.to_string())
            .bind(user.to_string())
            .fetch_optional(&mut *w.tx)
            .await
            .map_err(map_err)?;
        if owned.is_none() {
            return Ok(false);
        }
        let done = revoke_one(&mut w.tx, id, reason, now).await?;
        self.finish(w, fx).await?;
        Ok(done)
    }

    async fn revoke_other_sessions(
        &self,
        user: UserId,
        keep: Option<SessionId>,
        reason: &str,
        now: Timestamp,
        fx: SideEffects,
    ) -> StoreResult<u64> {
        let mut w = self.begin().await?;
        let n = revoke_where(&mut w.tx, user, keep, reason, now).await?;
        self.finish(w, fx).await?;
        Ok(n)
    }

    async fn is_known_device(&self, user: UserId, device: DeviceId) -> StoreResult<bool> {
        let row = sqlx::query("SELECT id FROM sessions WHERE user_id = $1 AND device_id = $2 LIMIT 1")
            .bind(user.to_string())
            .bind(device.to_string())
            .fetch_optional(&mut *self.reader().await?)
            .await
            .map_err(map_err)?;
        Ok(row.is_some())
    }

    async fn set_auth_time(&self, id: SessionId, now: Timestamp) -> StoreResult<()> {
        let mut w = self.begin().await?;
        sqlx::query("UPDATE sessions SET auth_time = $1 WHERE id = $2")
            .bind(now.as_millis())
            .bind(id.to_string())
            .execute(&mut *w.tx)
            .await
            .map_err(map_err)?;
        w.tx.commit().await.map_err(map_err)
    }
}
