//! Lost-factor recovery cases: opened with a cancel link, approved by one or two different
//! reviewers after the waiting period, carried out in one transaction.

use gatehouse_core::clock::Timestamp;
use gatehouse_core::friction::WithdrawalHold;
use gatehouse_core::ids::UserId;
use gatehouse_core::recovery::{ApprovalDecision, CaseState, RecoveryCase, decide_approval};
use gatehouse_core::store::{EmailToken, SideEffects, StoreError, StoreResult};
use sqlx::any::AnyRow;
use sqlx::{Any, Transaction};

use super::friction::{apply_hold, insert_token};
use super::sessions::revoke_where;
use super::{SqlStore, map_err, rows};

const COLS: &str = "id, user_id, state, evidence_sealed, created_at, execute_after, required_approvals, \
                    first_reviewer, decided_by, decided_at";

fn opt_user(r: &AnyRow, col: &str) -> StoreResult<Option<UserId>> {
    match rows::opt_text(r, col)? {
        Some(s) => UserId::parse(&s).map(Some).ok_or_else(|| StoreError::Corrupt(format!("invalid {col}"))),
        None => Ok(None),
    }
}

fn case(r: &AnyRow) -> StoreResult<RecoveryCase> {
    Ok(RecoveryCase {
        id: rows::text(r, "id")?,
        user_id: rows::user_id(r, "user_id")?,
        state: CaseState::from_stored(&rows::text(r, "state")?)
            .ok_or_else(|| StoreError::Corrupt("recovery state".into()))?,
        evidence_sealed: rows::text(r, "evidence_sealed")?,
        created_at: rows::ts(r, "created_at")?,
        execute_after: rows::ts(r, "execute_after")?,
        required_approvals: u8::try_from(rows::i64_col(r, "required_approvals")?)
            .map_err(|_| StoreError::Corrupt("required_approvals".into()))?,
        first_reviewer: opt_user(r, "first_reviewer")?,
        decided_by: opt_user(r, "decided_by")?,
        decided_at: rows::opt_ts(r, "decided_at")?,
    })
}

pub(crate) async fn create_case(
    s: &SqlStore,
    c: &RecoveryCase,
    cancel: &EmailToken,
    fx: SideEffects,
) -> StoreResult<bool> {
    let mut w = s.begin().await?;
    // The account row's lock serialises concurrent openings for one account.
    if !super::friction::lock_account(&mut w.tx, c.user_id).await? {
        return Ok(false);
    }
    let open = sqlx::query("SELECT COUNT(*) AS n FROM recovery_cases WHERE user_id = $1 AND state = 'open'")
        .bind(c.user_id.to_string())
        .fetch_one(&mut *w.tx)
        .await
        .map_err(map_err)?;
    if rows::i64_col(&open, "n")? > 0 {
        return Ok(false);
    }
    sqlx::query(
        "INSERT INTO recovery_cases (id, user_id, state, evidence_sealed, created_at, execute_after, required_approvals) \
         VALUES ($1, $2, $3, $4, $5, $6, $7)",
    )
    .bind(c.id.clone())
    .bind(c.user_id.to_string())
    .bind(c.state.as_str())
    .bind(c.evidence_sealed.clone())
    .bind(c.created_at.as_millis())
    .bind(c.execute_after.as_millis())
    .bind(i64::from(c.required_approvals))
    .execute(&mut *w.tx)
    .await
    .map_err(map_err)?;
    insert_token(&mut w.tx, cancel, c.created_at).await?;
    s.finish(w, fx).await?;
    Ok(true)
}

pub(crate) async fn list_cases(s: &SqlStore, open_only: bool, limit: u32) -> StoreResult<Vec<RecoveryCase>> {
    let filter = if open_only { "WHERE state = 'open'" } else { "" };
    let sql = format!("SELECT {COLS} FROM recovery_cases {filter} ORDER BY created_at DESC, id LIMIT $1");
    let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(i64::from(limit))
        .fetch_all(&mut *s.reader().await?)
        .await
        .map_err(map_err)?;
    rows.iter().map(case).collect()
}

pub(crate) async fn find_case(s: &SqlStore, id: &str) -> StoreResult<Option<RecoveryCase>> {
    let sql = format!("SELECT {COLS} FROM recovery_cases WHERE id = $1");
    let row = sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(id.to_owned())
        .fetch_optional(&mut *s.reader().await?)
        .await
        .map_err(map_err)?;
    row.as_ref().map(case).transpose()
}

pub(crate) async fn cancel_in_tx(
    tx: &mut Transaction<'static, Any>,
    user: UserId,
    id: &str,
    now: Timestamp,
) -> StoreResult<bool> {
    let r = sqlx::query(
        "UPDATE recovery_cases SET state = 'cancelled', decided_at = $1 WHERE id = $2 AND user_id = $3 AND state = 'open'",
    )
    .bind(now.as_millis())
    .bind(id.to_owned())
    .bind(user.to_string())
    .execute(&mut **tx)
    .await
    .map_err(map_err)?;
    Ok(r.rows_affected() == 1)
}

/// Removes the account's second factors inside the approval transaction: TOTP seed (with its
/// last accepted step), backup codes, WebAuthn credentials and open ceremonies, SMS number (confirmed or
/// pending), and every
/// pending-login or step-up token and session proof made with them. Returns the rows deleted.
async fn reset_second_factors_in_tx(tx: &mut Transaction<'static, Any>, user: UserId) -> StoreResult<u64> {
    const DELETES: [&str; 8] = [
        "DELETE FROM mfa_totp WHERE user_id = $1",
        "DELETE FROM mfa_backup_codes WHERE user_id = $1",
        "DELETE FROM mfa_tokens WHERE user_id = $1",
        "DELETE FROM mfa_session_proofs WHERE user_id = $1",
        "DELETE FROM webauthn_credentials WHERE user_id = $1",
        "DELETE FROM webauthn_ceremonies WHERE user_id = $1",
        "DELETE FROM mfa_sms WHERE user_id = $1",
        "DELETE FROM mfa_sms_pending WHERE user_id = $1",
    ];
    let mut n = 0;
    for statement in DELETES {
        let r = sqlx::query(statement).bind(user.to_string()).execute(&mut **tx).await.map_err(map_err)?;
        n += r.rows_affected();
    }
    Ok(n)
}

pub(crate) async fn approve(
    s: &SqlStore,
    id: &str,
    reviewer: UserId,
    now: Timestamp,
    hold: WithdrawalHold,
    fx: &(dyn for<'c> Fn(&'c RecoveryCase, ApprovalDecision) -> SideEffects + Send + Sync),
) -> StoreResult<Option<ApprovalDecision>> {
    let mut w = s.begin().await?;
    // Take the case's row lock first so two reviewers deciding at once are serialised.
    sqlx::query("UPDATE recovery_cases SET state = state WHERE id = $1")
        .bind(id.to_owned())
        .execute(&mut *w.tx)
        .await
        .map_err(map_err)?;
    let sql = format!("SELECT {COLS} FROM recovery_cases WHERE id = $1");
    let row =
        sqlx::query(sqlx::AssertSqlSafe(sql)).bind(id.to_owned()).fetch_optional(&mut *w.tx).await.map_err(map_err)?;
    let Some(c) = row.as_ref().map(case).transpose()? else { return Ok(None) };
    let decision = decide_approval(&c, reviewer, now);
    match decision {
        ApprovalDecision::Recorded => {
            sqlx::query("UPDATE recovery_cases SET first_reviewer = $1 WHERE id = $2 AND state = 'open'")
                .bind(reviewer.to_string())
                .bind(id.to_owned())
                .execute(&mut *w.tx)
                .await
                .map_err(map_err)?;
        }
        ApprovalDecision::Execute => {
            sqlx::query(
                "UPDATE recovery_cases SET state = 'executed', decided_by = $1, decided_at = $2 WHERE id = $3 AND state = 'open'",
            )
            .bind(reviewer.to_string())
            .bind(now.as_millis())
            .bind(id.to_owned())
            .execute(&mut *w.tx)
            .await
            .map_err(map_err)?;
            revoke_where(&mut w.tx, c.user_id, None, "recovery", now).await?;
            super::apikeys::suspend_all(&mut w.tx, c.user_id, now).await?;
            reset_second_factors_in_tx(&mut w.tx, c.user_id).await?;
            // The owner has recovered: a freeze ends here, the hold keeps withdrawals shut.
            sqlx::query("UPDATE accounts SET frozen_at = NULL, frozen_reason = NULL WHERE id = $1")
                .bind(c.user_id.to_string())
                .execute(&mut *w.tx)
                .await
                .map_err(map_err)?;
            apply_hold(&mut w.tx, &hold).await?;
        }
        _ => {}
    }
    s.finish(w, fx(&c, decision)).await?;
    Ok(Some(decision))
}

pub(crate) async fn reject(
    s: &SqlStore,
    id: &str,
    reviewer: UserId,
    now: Timestamp,
    fx: SideEffects,
) -> StoreResult<bool> {
    let mut w = s.begin().await?;
    let r = sqlx::query(
        "UPDATE recovery_cases SET state = 'rejected', decided_by = $1, decided_at = $2 WHERE id = $3 AND state = 'open' \
         AND user_id <> $1",
    )
    .bind(reviewer.to_string())
    .bind(now.as_millis())
    .bind(id.to_owned())
    .execute(&mut *w.tx)
    .await
    .map_err(map_err)?;
    if r.rows_affected() == 0 {
        return Ok(false);
    }
    s.finish(w, fx).await?;
    Ok(true)
}
