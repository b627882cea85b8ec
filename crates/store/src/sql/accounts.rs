//! Accounts and emailed tokens.

use async_trait::async_trait;
use gatehouse_core::account::{Account, Email};
use gatehouse_core::clock::Timestamp;
use gatehouse_core::ids::{SessionId, UserId};
use gatehouse_core::password::PasswordHashString;
use gatehouse_core::secret::TokenHash;
use gatehouse_core::store::{AccountStore, EmailToken, SideEffects, StoreResult};

use super::rows::{self, ACCOUNT_COLS};
use super::sessions::revoke_where;
use super::{SqlStore, map_err};

#[async_trait]
impl AccountStore for SqlStore {
    async fn create_account(&self, a: &Account, token: &EmailToken, fx: SideEffects) -> StoreResult<()> {
        let mut w = self.begin().await?;
        sqlx::query(
            "INSERT INTO accounts (id, email, email_verified_at, password_hash, status, is_admin, high_value, created_at, password_changed_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
        )
        .bind(a.id.to_string())
        .bind(a.email.as_str().to_owned())
        .bind(a.email_verified_at.map(|t| t.as_millis()))
        .bind(a.password_hash.as_str().to_owned())
        .bind(a.status.as_str())
        .bind(i64::from(a.is_admin))
        .bind(i64::from(a.high_value))
        .bind(a.created_at.as_millis())
        .bind(a.password_changed_at.as_millis())
        .execute(&mut *w.tx)
        .await
        .map_err(map_err)?;
        sqlx::query(
            "INSERT INTO email_tokens (hash, user_id, purpose, created_at, expires_at) VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(token.hash.as_bytes().to_vec())
        .bind(token.user_id.to_string())
        .bind(token.purpose.clone())
        .bind(a.created_at.as_millis())
        .bind(token.expires_at.as_millis())
        .execute(&mut *w.tx)
        .await
        .map_err(map_err)?;
        self.finish(w, fx).await
    }

    async fn find_account_by_email(&self, email: &Email) -> StoreResult<Option<Account>> {
        let sql = format!("SELECT {ACCOUNT_COLS} FROM accounts a WHERE a.email = $1");
        let row = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(email.as_str().to_owned())
            .fetch_optional(&mut *self.reader().await?)
            .await
            .map_err(map_err)?;
        row.as_ref().map(rows::account).transpose()
    }

    async fn find_account(&self, id: UserId) -> StoreResult<Option<Account>> {
        let sql = format!("SELECT {ACCOUNT_COLS} FROM accounts a WHERE a.id = $1");
        let row = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(id.to_string())
            .fetch_optional(&mut *self.reader().await?)
            .await
            .map_err(map_err)?;
        row.as_ref().map(rows::account).transpose()
    }

    async fn consume_email_token(
        &self,
        hash: TokenHash,
        purpose: &str,
        now: Timestamp,
        fx: &(dyn Fn(UserId) -> SideEffects + Send + Sync),
    ) -> StoreResult<Option<UserId>> {
        let mut w = self.begin().await?;
        let row = sqlx::query(
            "UPDATE email_tokens SET used_at = $1 WHERE hash = $2 AND purpose = $3 AND used_at IS NULL AND expires_at > $1 \
             RETURNING user_id",
        )
        .bind(now.as_millis())
        .bind(hash.as_bytes().to_vec())
        .bind(purpose.to_owned())
        .fetch_optional(&mut *w.tx)
        .await
        .map_err(map_err)?;
        let Some(row) = row else {
            return Ok(None);
        };
        let user = rows::user_id(&row, "user_id")?;
        if purpose == "verify_email" {
            sqlx::query("UPDATE accounts SET email_verified_at = COALESCE(email_verified_at, $1) WHERE id = $2")
                .bind(now.as_millis())
                .bind(user.to_string())
                .execute(&mut *w.tx)
                .await
                .map_err(map_err)?;
        }
        if let Some(address) = purpose.strip_prefix("change_email:") {
            sqlx::query("UPDATE accounts SET email = $1, email_verified_at = $2 WHERE id = $3")
                .bind(address.to_owned())
                .bind(now.as_millis())
                .bind(user.to_string())
                .execute(&mut *w.tx)
                .await
                .map_err(map_err)?;
        }
        self.finish(w, fx(user)).await?;
        Ok(Some(user))
    }

    async fn email_token_owner(&self, hash: TokenHash, purpose: &str, now: Timestamp) -> StoreResult<Option<UserId>> {
        let row = sqlx::query(
            "SELECT user_id FROM email_tokens WHERE hash = $1 AND purpose = $2 AND used_at IS NULL AND expires_at > $3",
        )
        .bind(hash.as_bytes().to_vec())
        .bind(purpose.to_owned())
        .bind(now.as_millis())
        .fetch_optional(&mut *self.reader().await?)
        .await
        .map_err(map_err)?;
        row.as_ref().map(|r| rows::user_id(r, "user_id")).transpose()
    }

    async fn record(&self, fx: SideEffects) -> StoreResult<()> {
        let w = self.begin().await?;
        self.finish(w, fx).await
    }

    async fn issue_email_token(&self, token: &EmailToken, now: Timestamp, fx: SideEffects) -> StoreResult<()> {
        let mut w = self.begin().await?;
        sqlx::query(
            "INSERT INTO email_tokens (hash, user_id, purpose, created_at, expires_at) VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(token.hash.as_bytes().to_vec())
        .bind(token.user_id.to_string())
        .bind(token.purpose.clone())
        .bind(now.as_millis())
        .bind(token.expires_at.as_millis())
        .execute(&mut *w.tx)
        .await
        .map_err(map_err)?;
        self.finish(w, fx).await
    }

    async fn change_password(
        &self,
        user: UserId,
        new_hash: &PasswordHashString,
        keep: Option<SessionId>,
        now: Timestamp,
        fx: SideEffects,
    ) -> StoreResult<u64> {
        let mut w = self.begin().await?;
        sqlx::query("UPDATE accounts SET password_hash = $1, password_changed_at = $2 WHERE id = $3")
            .bind(new_hash.as_str().to_owned())
            .bind(now.as_millis())
            .bind(user.to_string())
            .execute(&mut *w.tx)
            .await
            .map_err(map_err)?;
        let n = revoke_where(&mut w.tx, user, keep, "password_change", now).await?;
        self.finish(w, fx).await?;
        Ok(n)
    }

    async fn rehash_password(
        &self,
        user: UserId,
        old: &PasswordHashString,
        new: &PasswordHashString,
        fx: SideEffects,
    ) -> StoreResult<bool> {
        let mut w = self.begin().await?;
        let r = sqlx::query("UPDATE accounts SET password_hash = $1 WHERE id = $2 AND password_hash = $3")
            .bind(new.as_str().to_owned())
            .bind(user.to_string())
            .bind(old.as_str().to_owned())
            .execute(&mut *w.tx)
            .await
            .map_err(map_err)?;
        if r.rows_affected() == 0 {
            return Ok(false);
        }
        self.finish(w, fx).await?;
        Ok(true)
    }

    async fn freeze_account(&self, user: UserId, reason: &str, now: Timestamp, fx: SideEffects) -> StoreResult<bool> {
        let mut w = self.begin().await?;
        let r =
            sqlx::query("UPDATE accounts SET frozen_at = $1, frozen_reason = $2 WHERE id = $3 AND frozen_at IS NULL")
                .bind(now.as_millis())
                .bind(reason.to_owned())
                .bind(user.to_string())
                .execute(&mut *w.tx)
                .await
                .map_err(map_err)?;
        if r.rows_affected() == 0 {
            return Ok(false);
        }
        revoke_where(&mut w.tx, user, None, "account_frozen", now).await?;
        super::apikeys::suspend_all(&mut w.tx, user, now).await?;
        self.finish(w, fx).await?;
        Ok(true)
    }

    async fn unfreeze_account(&self, user: UserId, fx: SideEffects) -> StoreResult<bool> {
        let mut w = self.begin().await?;
        let r = sqlx::query(
            "UPDATE accounts SET frozen_at = NULL, frozen_reason = NULL WHERE id = $1 AND frozen_at IS NOT NULL",
        )
        .bind(user.to_string())
        .execute(&mut *w.tx)
        .await
        .map_err(map_err)?;
        if r.rows_affected() == 0 {
            return Ok(false);
        }
        self.finish(w, fx).await?;
        Ok(true)
    }

    async fn set_admin(&self, user: UserId, is_admin: bool, fx: SideEffects) -> StoreResult<()> {
        let mut w = self.begin().await?;
        sqlx::query("UPDATE accounts SET is_admin = $1 WHERE id = $2")
            .bind(i64::from(is_admin))
            .bind(user.to_string())
            .execute(&mut *w.tx)
            .await
            .map_err(map_err)?;
        self.finish(w, fx).await
    }
}
