//! Withdrawal holds, the settings lock, anti-phishing codes, emailed action links and the
//! password reset (issue 5). Address book and intents live in `withdrawals.rs`, recovery
//! cases in `recovery.rs`; the trait is implemented here and delegates to them.

use async_trait::async_trait;
use gatehouse_core::clock::{Span, Timestamp};
use gatehouse_core::friction::{FrictionState, LinkAction, WithdrawalHold};
use gatehouse_core::friction_store::{ConfirmOutcome, FrictionStore, LinkEffects, ResetEffects};
use gatehouse_core::ids::UserId;
use gatehouse_core::password::PasswordHashString;
use gatehouse_core::recovery::{ApprovalDecision, RecoveryCase};
use gatehouse_core::secret::TokenHash;
use gatehouse_core::store::{EmailToken, SideEffects, StoreResult};
use gatehouse_core::withdrawal::{AddressEntry, Intent};
use sqlx::{Any, Transaction};

use super::sessions::revoke_where;
use super::{SqlStore, map_err, recovery, rows, withdrawals};

/// Records a withdrawal hold inside `tx`: the shared helper every security change uses (via
/// `SideEffects::hold`). A hold only ever grows: a later existing end is kept.
pub(crate) async fn apply_hold(tx: &mut Transaction<'static, Any>, hold: &WithdrawalHold) -> StoreResult<()> {
    sqlx::query(
        "UPDATE accounts SET \
         withdrawal_hold_reason = CASE WHEN withdrawals_held_until IS NULL OR withdrawals_held_until < $1 THEN $2 ELSE withdrawal_hold_reason END, \
         withdrawals_held_until = CASE WHEN withdrawals_held_until IS NULL OR withdrawals_held_until < $1 THEN $1 ELSE withdrawals_held_until END \
         WHERE id = $3",
    )
    .bind(hold.until.as_millis())
    .bind(hold.reason.clone())
    .bind(hold.user.to_string())
    .execute(&mut **tx)
    .await
    .map_err(map_err)?;
    Ok(())
}

/// Inserts an emailed single-use token.
pub(crate) async fn insert_token(
    tx: &mut Transaction<'static, Any>,
    t: &EmailToken,
    now: Timestamp,
) -> StoreResult<()> {
    sqlx::query(
        "INSERT INTO email_tokens (hash, user_id, purpose, created_at, expires_at) VALUES ($1, $2, $3, $4, $5)",
    )
    .bind(t.hash.as_bytes().to_vec())
    .bind(t.user_id.to_string())
    .bind(t.purpose.clone())
    .bind(now.as_millis())
    .bind(t.expires_at.as_millis())
    .execute(&mut **tx)
    .await
    .map_err(map_err)?;
    Ok(())
}

/// Takes the account row's lock (PostgreSQL; SQLite writers are serialised already) so that
/// checks made next in this transaction cannot race another writer of the same account.
pub(crate) async fn lock_account(tx: &mut Transaction<'static, Any>, user: UserId) -> StoreResult<bool> {
    let r = sqlx::query("UPDATE accounts SET withdrawal_allowlist_only = withdrawal_allowlist_only WHERE id = $1")
        .bind(user.to_string())
        .execute(&mut **tx)
        .await
        .map_err(map_err)?;
    Ok(r.rows_affected() == 1)
}

/// Freezes inside `tx` (the one-click link): marks the account, revokes sessions, suspends keys.
async fn freeze_in_tx(tx: &mut Transaction<'static, Any>, user: UserId, now: Timestamp) -> StoreResult<bool> {
    let r = sqlx::query("UPDATE accounts SET frozen_at = $1, frozen_reason = $2 WHERE id = $3 AND frozen_at IS NULL")
        .bind(now.as_millis())
        .bind("owner_link".to_owned())
        .bind(user.to_string())
        .execute(&mut **tx)
        .await
        .map_err(map_err)?;
    if r.rows_affected() == 0 {
        return Ok(false);
    }
    revoke_where(tx, user, None, "account_frozen", now).await?;
    super::apikeys::suspend_all(tx, user, now).await?;
    Ok(true)
}

async fn account_email(tx: &mut Transaction<'static, Any>, user: UserId) -> StoreResult<String> {
    let row = sqlx::query("SELECT email FROM accounts WHERE id = $1")
        .bind(user.to_string())
        .fetch_one(&mut **tx)
        .await
        .map_err(map_err)?;
    rows::text(&row, "email")
}

pub(crate) async fn read_friction(tx: &mut Transaction<'static, Any>, user: UserId) -> StoreResult<FrictionState> {
    let row = sqlx::query(
        "SELECT withdrawals_held_until, withdrawal_hold_reason, withdrawal_allowlist_only, settings_locked_at, \
         settings_unlock_at, anti_phishing_sealed FROM accounts WHERE id = $1",
    )
    .bind(user.to_string())
    .fetch_optional(&mut **tx)
    .await
    .map_err(map_err)?;
    let Some(r) = row else { return Ok(FrictionState::default()) };
    Ok(FrictionState {
        held_until: rows::opt_ts(&r, "withdrawals_held_until")?,
        hold_reason: rows::opt_text(&r, "withdrawal_hold_reason")?,
        allowlist_only: rows::i64_col(&r, "withdrawal_allowlist_only")? != 0,
        settings_locked_at: rows::opt_ts(&r, "settings_locked_at")?,
        settings_unlock_at: rows::opt_ts(&r, "settings_unlock_at")?,
        anti_phishing_sealed: rows::opt_text(&r, "anti_phishing_sealed")?,
    })
}

#[async_trait]
impl FrictionStore for SqlStore {
    async fn find_friction(&self, user: UserId) -> StoreResult<FrictionState> {
        let mut tx = self.pool().begin().await.map_err(map_err)?;
        let f = read_friction(&mut tx, user).await?;
        tx.rollback().await.map_err(map_err)?;
        Ok(f)
    }

    async fn set_anti_phishing_code(&self, user: UserId, sealed: Option<String>, fx: SideEffects) -> StoreResult<()> {
        let mut w = self.begin().await?;
        sqlx::query("UPDATE accounts SET anti_phishing_sealed = $1 WHERE id = $2")
            .bind(sealed)
            .bind(user.to_string())
            .execute(&mut *w.tx)
            .await
            .map_err(map_err)?;
        self.finish(w, fx).await
    }

    async fn set_allowlist_only(&self, user: UserId, on: bool, fx: SideEffects) -> StoreResult<()> {
        let mut w = self.begin().await?;
        sqlx::query("UPDATE accounts SET withdrawal_allowlist_only = $1 WHERE id = $2")
            .bind(i64::from(on))
            .bind(user.to_string())
            .execute(&mut *w.tx)
            .await
            .map_err(map_err)?;
        self.finish(w, fx).await
    }

    async fn lock_settings(&self, user: UserId, now: Timestamp, fx: SideEffects) -> StoreResult<bool> {
        let mut w = self.begin().await?;
        let r = sqlx::query(
            "UPDATE accounts SET settings_locked_at = $1, settings_unlock_at = NULL WHERE id = $2 AND \
             (settings_locked_at IS NULL OR (settings_unlock_at IS NOT NULL AND settings_unlock_at <= $1))",
        )
        .bind(now.as_millis())
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

    async fn request_settings_unlock(
        &self,
        user: UserId,
        at: Timestamp,
        now: Timestamp,
        cancel: &EmailToken,
        fx: SideEffects,
    ) -> StoreResult<bool> {
        let mut w = self.begin().await?;
        let r = sqlx::query(
            "UPDATE accounts SET settings_unlock_at = $1 WHERE id = $2 AND settings_locked_at IS NOT NULL AND settings_unlock_at IS NULL",
        )
        .bind(at.as_millis())
        .bind(user.to_string())
        .execute(&mut *w.tx)
        .await
        .map_err(map_err)?;
        if r.rows_affected() == 0 {
            return Ok(false);
        }
        insert_token(&mut w.tx, cancel, now).await?;
        self.finish(w, fx).await?;
        Ok(true)
    }

    async fn cancel_settings_unlock(&self, user: UserId, now: Timestamp, fx: SideEffects) -> StoreResult<bool> {
        let mut w = self.begin().await?;
        let r = sqlx::query("UPDATE accounts SET settings_unlock_at = NULL WHERE id = $1 AND settings_unlock_at > $2")
            .bind(user.to_string())
            .bind(now.as_millis())
            .execute(&mut *w.tx)
            .await
            .map_err(map_err)?;
        if r.rows_affected() == 0 {
            return Ok(false);
        }
        self.finish(w, fx).await?;
        Ok(true)
    }

    async fn set_high_value(&self, user: UserId, on: bool, fx: SideEffects) -> StoreResult<()> {
        let mut w = self.begin().await?;
        sqlx::query("UPDATE accounts SET high_value = $1 WHERE id = $2")
            .bind(i64::from(on))
            .bind(user.to_string())
            .execute(&mut *w.tx)
            .await
            .map_err(map_err)?;
        self.finish(w, fx).await
    }

    async fn create_link(&self, token: &EmailToken, fx: SideEffects) -> StoreResult<()> {
        let mut w = self.begin().await?;
        insert_token(&mut w.tx, token, self.now()).await?;
        self.finish(w, fx).await
    }

    async fn redeem_link(
        &self,
        hash: TokenHash,
        now: Timestamp,
        fx: LinkEffects<'_>,
    ) -> StoreResult<Option<(UserId, LinkAction, bool)>> {
        let mut w = self.begin().await?;
        let row = sqlx::query(
            "UPDATE email_tokens SET used_at = $1 WHERE hash = $2 AND used_at IS NULL AND expires_at > $1 AND \
             (purpose IN ('freeze', 'cancel_settings_unlock') OR purpose LIKE 'cancel_address:%' OR purpose LIKE 'cancel_recovery:%') \
             RETURNING user_id, purpose",
        )
        .bind(now.as_millis())
        .bind(hash.as_bytes().to_vec())
        .fetch_optional(&mut *w.tx)
        .await
        .map_err(map_err)?;
        let Some(row) = row else { return Ok(None) };
        let user = rows::user_id(&row, "user_id")?;
        let Some(action) = LinkAction::from_purpose(&rows::text(&row, "purpose")?) else { return Ok(None) };
        let changed = match &action {
            LinkAction::Freeze => freeze_in_tx(&mut w.tx, user, now).await?,
            LinkAction::CancelAddress(id) => withdrawals::cancel_address_in_tx(&mut w.tx, user, id, now).await?,
            LinkAction::CancelSettingsUnlock => {
                sqlx::query("UPDATE accounts SET settings_unlock_at = NULL WHERE id = $1 AND settings_unlock_at > $2")
                    .bind(user.to_string())
                    .bind(now.as_millis())
                    .execute(&mut *w.tx)
                    .await
                    .map_err(map_err)?
                    .rows_affected()
                    == 1
            }
            LinkAction::CancelRecovery(id) => recovery::cancel_in_tx(&mut w.tx, user, id, now).await?,
        };
        let email = account_email(&mut w.tx, user).await?;
        let effects = fx(user, &email, &action, changed);
        self.finish(w, effects).await?;
        Ok(Some((user, action, changed)))
    }

    async fn complete_password_reset(
        &self,
        hash: TokenHash,
        new_hash: &PasswordHashString,
        now: Timestamp,
        fx: ResetEffects<'_>,
    ) -> StoreResult<Option<UserId>> {
        let mut w = self.begin().await?;
        let row = sqlx::query(
            "UPDATE email_tokens SET used_at = $1 WHERE hash = $2 AND purpose = 'password_reset' AND used_at IS NULL \
             AND expires_at > $1 RETURNING user_id",
        )
        .bind(now.as_millis())
        .bind(hash.as_bytes().to_vec())
        .fetch_optional(&mut *w.tx)
        .await
        .map_err(map_err)?;
        let Some(row) = row else { return Ok(None) };
        let user = rows::user_id(&row, "user_id")?;
        // Only the password changes: enrolled second factors stay, so the next login still
        // asks for one (R82).
        sqlx::query("UPDATE accounts SET password_hash = $1, password_changed_at = $2 WHERE id = $3")
            .bind(new_hash.as_str().to_owned())
            .bind(now.as_millis())
            .bind(user.to_string())
            .execute(&mut *w.tx)
            .await
            .map_err(map_err)?;
        revoke_where(&mut w.tx, user, None, "password_reset", now).await?;
        let email = account_email(&mut w.tx, user).await?;
        self.finish(w, fx(user, &email)).await?;
        Ok(Some(user))
    }

    async fn add_withdrawal_address(
        &self,
        entry: &AddressEntry,
        cancel: &EmailToken,
        fx: SideEffects,
    ) -> StoreResult<()> {
        withdrawals::add_address(self, entry, cancel, fx).await
    }

    async fn list_withdrawal_addresses(&self, user: UserId) -> StoreResult<Vec<AddressEntry>> {
        withdrawals::list_addresses(self, user).await
    }

    async fn cancel_withdrawal_address(
        &self,
        user: UserId,
        id: &str,
        now: Timestamp,
        fx: SideEffects,
    ) -> StoreResult<bool> {
        let mut w = self.begin().await?;
        if !withdrawals::cancel_address_in_tx(&mut w.tx, user, id, now).await? {
            return Ok(false);
        }
        self.finish(w, fx).await?;
        Ok(true)
    }

    async fn create_intent(&self, intent: &Intent, fx: SideEffects) -> StoreResult<()> {
        withdrawals::create_intent(self, intent, fx).await
    }

    async fn find_intent(&self, id: &str) -> StoreResult<Option<Intent>> {
        withdrawals::find_intent(self, id).await
    }

    async fn confirmed_units_since(&self, user: UserId, asset: &str, since: Timestamp) -> StoreResult<i64> {
        let mut tx = self.pool().begin().await.map_err(map_err)?;
        let n = withdrawals::confirmed_units_since(&mut tx, user, asset, since).await?;
        tx.rollback().await.map_err(map_err)?;
        Ok(n)
    }

    async fn confirm_intent(
        &self,
        id: &str,
        user: UserId,
        now: Timestamp,
        daily_limit: i64,
        fx: SideEffects,
    ) -> StoreResult<ConfirmOutcome> {
        withdrawals::confirm_intent(self, id, user, now, daily_limit, fx).await
    }

    async fn claim_intents(&self, now: Timestamp, lease: Span, limit: u32) -> StoreResult<Vec<Intent>> {
        withdrawals::claim_intents(self, now, lease, limit).await
    }

    async fn mark_intent_delivered(&self, id: &str, now: Timestamp) -> StoreResult<()> {
        let mut w = self.begin().await?;
        sqlx::query(
            "UPDATE withdrawal_intents SET delivered_at = $1, last_error = NULL WHERE id = $2 AND delivered_at IS NULL",
        )
        .bind(now.as_millis())
        .bind(id.to_owned())
        .execute(&mut *w.tx)
        .await
        .map_err(map_err)?;
        w.tx.commit().await.map_err(map_err)
    }

    async fn mark_intent_failed(&self, id: &str, error: &str, retry_at: Timestamp) -> StoreResult<()> {
        let mut w = self.begin().await?;
        let error: String = error.chars().take(500).collect();
        sqlx::query(
            "UPDATE withdrawal_intents SET last_error = $1, next_attempt_at = $2 WHERE id = $3 AND delivered_at IS NULL",
        )
        .bind(error)
        .bind(retry_at.as_millis())
        .bind(id.to_owned())
        .execute(&mut *w.tx)
        .await
        .map_err(map_err)?;
        w.tx.commit().await.map_err(map_err)
    }

    async fn create_recovery_case(
        &self,
        case: &RecoveryCase,
        cancel: &EmailToken,
        fx: SideEffects,
    ) -> StoreResult<bool> {
        recovery::create_case(self, case, cancel, fx).await
    }

    async fn list_recovery_cases(&self, open_only: bool, limit: u32) -> StoreResult<Vec<RecoveryCase>> {
        recovery::list_cases(self, open_only, limit).await
    }

    async fn find_recovery_case(&self, id: &str) -> StoreResult<Option<RecoveryCase>> {
        recovery::find_case(self, id).await
    }

    async fn approve_recovery(
        &self,
        id: &str,
        reviewer: UserId,
        now: Timestamp,
        hold: WithdrawalHold,
        fx: &(dyn for<'c> Fn(&'c RecoveryCase, ApprovalDecision) -> SideEffects + Send + Sync),
    ) -> StoreResult<Option<ApprovalDecision>> {
        recovery::approve(self, id, reviewer, now, hold, fx).await
    }

    async fn reject_recovery(&self, id: &str, reviewer: UserId, now: Timestamp, fx: SideEffects) -> StoreResult<bool> {
        recovery::reject(self, id, reviewer, now, fx).await
    }
}
