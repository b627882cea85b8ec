//! The withdrawal address book and intents. A confirmed intent is its own outbox row: the
//! delivery worker claims it with a lease, and the intent id is the idempotency key the back
//! end deduplicates on, so a retry can never become a second withdrawal.

use gatehouse_core::clock::{Span, Timestamp};
use gatehouse_core::friction_store::ConfirmOutcome;
use gatehouse_core::ids::UserId;
use gatehouse_core::store::{EmailToken, SideEffects, StoreError, StoreResult};
use gatehouse_core::withdrawal::{
    self, AddressEntry, Asset, Destination, Intent, IntentDetails, IntentState, WithdrawalContext,
};
use sqlx::any::AnyRow;
use sqlx::{Any, Transaction};

use super::friction::{insert_token, lock_account, read_friction};
use super::{SqlStore, map_err, rows};

const ADDRESS_COLS: &str = "id, user_id, asset, address, label, created_at, active_at, cancelled_at";
const INTENT_COLS: &str = "id, user_id, units, canonical, state, confirmed_at, delivered_at, attempts";

fn address(r: &AnyRow) -> StoreResult<AddressEntry> {
    let bad = |w: &str| StoreError::Corrupt(format!("invalid {w}"));
    Ok(AddressEntry {
        id: rows::text(r, "id")?,
        user_id: rows::user_id(r, "user_id")?,
        asset: Asset::parse(&rows::text(r, "asset")?).ok_or_else(|| bad("asset"))?,
        address: Destination::parse(&rows::text(r, "address")?).ok_or_else(|| bad("address"))?,
        label: rows::text(r, "label")?,
        created_at: rows::ts(r, "created_at")?,
        active_at: rows::ts(r, "active_at")?,
        cancelled_at: rows::opt_ts(r, "cancelled_at")?,
    })
}

fn intent(r: &AnyRow) -> StoreResult<Intent> {
    let canonical = rows::text(r, "canonical")?;
    let details: IntentDetails =
        serde_json::from_str(&canonical).map_err(|e| StoreError::Corrupt(format!("intent json: {e}")))?;
    Ok(Intent {
        details,
        canonical,
        units: rows::i64_col(r, "units")?,
        state: IntentState::from_stored(&rows::text(r, "state")?)
            .ok_or_else(|| StoreError::Corrupt("intent state".into()))?,
        confirmed_at: rows::opt_ts(r, "confirmed_at")?,
        delivered_at: rows::opt_ts(r, "delivered_at")?,
        attempts: rows::i64_col(r, "attempts")?,
    })
}

pub(crate) async fn add_address(
    s: &SqlStore,
    e: &AddressEntry,
    cancel: &EmailToken,
    fx: SideEffects,
) -> StoreResult<()> {
    let mut w = s.begin().await?;
    sqlx::query(
        "INSERT INTO withdrawal_addresses (id, user_id, asset, address, label, created_at, active_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7)",
    )
    .bind(e.id.clone())
    .bind(e.user_id.to_string())
    .bind(e.asset.as_str().to_owned())
    .bind(e.address.as_str().to_owned())
    .bind(e.label.clone())
    .bind(e.created_at.as_millis())
    .bind(e.active_at.as_millis())
    .execute(&mut *w.tx)
    .await
    .map_err(map_err)?;
    insert_token(&mut w.tx, cancel, e.created_at).await?;
    s.finish(w, fx).await
}

pub(crate) async fn list_addresses(s: &SqlStore, user: UserId) -> StoreResult<Vec<AddressEntry>> {
    let sql =
        format!("SELECT {ADDRESS_COLS} FROM withdrawal_addresses WHERE user_id = $1 ORDER BY created_at DESC, id");
    let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(user.to_string())
        .fetch_all(&mut *s.reader().await?)
        .await
        .map_err(map_err)?;
    rows.iter().map(address).collect()
}

pub(crate) async fn cancel_address_in_tx(
    tx: &mut Transaction<'static, Any>,
    user: UserId,
    id: &str,
    now: Timestamp,
) -> StoreResult<bool> {
    let r = sqlx::query(
        "UPDATE withdrawal_addresses SET cancelled_at = $1 WHERE id = $2 AND user_id = $3 AND cancelled_at IS NULL",
    )
    .bind(now.as_millis())
    .bind(id.to_owned())
    .bind(user.to_string())
    .execute(&mut **tx)
    .await
    .map_err(map_err)?;
    Ok(r.rows_affected() == 1)
}

pub(crate) async fn create_intent(s: &SqlStore, i: &Intent, fx: SideEffects) -> StoreResult<()> {
    let mut w = s.begin().await?;
    sqlx::query(
        "INSERT INTO withdrawal_intents (id, user_id, asset, units, canonical, state, created_at, expires_at) \
         VALUES ($1, $2, $3, $4, $5, 'pending', $6, $7)",
    )
    .bind(i.details.id.clone())
    .bind(i.details.user.clone())
    .bind(i.details.asset.clone())
    .bind(i.units)
    .bind(i.canonical.clone())
    .bind(i.details.created_at_ms)
    .bind(i.details.expires_at_ms)
    .execute(&mut *w.tx)
    .await
    .map_err(map_err)?;
    s.finish(w, fx).await
}

pub(crate) async fn find_intent(s: &SqlStore, id: &str) -> StoreResult<Option<Intent>> {
    let sql = format!("SELECT {INTENT_COLS} FROM withdrawal_intents WHERE id = $1");
    let row = sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(id.to_owned())
        .fetch_optional(&mut *s.reader().await?)
        .await
        .map_err(map_err)?;
    row.as_ref().map(intent).transpose()
}

pub(crate) async fn confirmed_units_since(
    tx: &mut Transaction<'static, Any>,
    user: UserId,
    asset: &str,
    since: Timestamp,
) -> StoreResult<i64> {
    let row = sqlx::query(
        "SELECT CAST(COALESCE(SUM(units), 0) AS BIGINT) AS n FROM withdrawal_intents \
         WHERE user_id = $1 AND asset = $2 AND state = 'confirmed' AND confirmed_at >= $3",
    )
    .bind(user.to_string())
    .bind(asset.to_owned())
    .bind(since.as_millis())
    .fetch_one(&mut **tx)
    .await
    .map_err(map_err)?;
    rows::i64_col(&row, "n")
}

async fn entries_for(
    tx: &mut Transaction<'static, Any>,
    user: UserId,
    asset: &str,
    addr: &str,
) -> StoreResult<Vec<AddressEntry>> {
    let sql =
        format!("SELECT {ADDRESS_COLS} FROM withdrawal_addresses WHERE user_id = $1 AND asset = $2 AND address = $3");
    let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(user.to_string())
        .bind(asset.to_owned())
        .bind(addr.to_owned())
        .fetch_all(&mut **tx)
        .await
        .map_err(map_err)?;
    rows.iter().map(address).collect()
}

/// Everything the withdrawal rule needs, read inside `tx` (after [`lock_account`]).
pub(crate) async fn context_in_tx(
    tx: &mut Transaction<'static, Any>,
    user: UserId,
    asset: &str,
    destination: &str,
    now: Timestamp,
) -> StoreResult<(bool, gatehouse_core::friction::FrictionState, Vec<AddressEntry>, i64)> {
    let frozen = sqlx::query("SELECT frozen_at FROM accounts WHERE id = $1")
        .bind(user.to_string())
        .fetch_optional(&mut **tx)
        .await
        .map_err(map_err)?;
    // An account that cannot be read is treated as frozen: fail closed.
    let frozen = match frozen {
        Some(r) => rows::opt_i64(&r, "frozen_at")?.is_some(),
        None => true,
    };
    let f = read_friction(tx, user).await?;
    let entries = entries_for(tx, user, asset, destination).await?;
    let used = confirmed_units_since(tx, user, asset, now.minus(Span::hours(24))).await?;
    Ok((frozen, f, entries, used))
}

pub(crate) async fn confirm_intent(
    s: &SqlStore,
    id: &str,
    user: UserId,
    now: Timestamp,
    daily_limit: i64,
    fx: SideEffects,
) -> StoreResult<ConfirmOutcome> {
    let mut w = s.begin().await?;
    if !lock_account(&mut w.tx, user).await? {
        return Ok(ConfirmOutcome::NotConfirmable);
    }
    let sql = format!("SELECT {INTENT_COLS} FROM withdrawal_intents WHERE id = $1 AND user_id = $2");
    let row = sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(id.to_owned())
        .bind(user.to_string())
        .fetch_optional(&mut *w.tx)
        .await
        .map_err(map_err)?;
    let Some(i) = row.as_ref().map(intent).transpose()? else { return Ok(ConfirmOutcome::NotConfirmable) };
    if i.state == IntentState::Confirmed {
        return Ok(ConfirmOutcome::AlreadyConfirmed);
    }
    if !i.is_confirmable(now) {
        return Ok(ConfirmOutcome::NotConfirmable);
    }
    let (frozen, f, entries, used) =
        context_in_tx(&mut w.tx, user, &i.details.asset, &i.details.destination, now).await?;
    let ctx = WithdrawalContext {
        frozen,
        held_until: f.held_until,
        allowlist_only: f.allowlist_only,
        entries: &entries,
        used_today: used,
        daily_limit,
    };
    if let Err(r) = withdrawal::check(&ctx, i.units, now) {
        return Ok(ConfirmOutcome::Refused(r));
    }
    let r = sqlx::query(
        "UPDATE withdrawal_intents SET state = 'confirmed', confirmed_at = $1, next_attempt_at = $1 \
         WHERE id = $2 AND state = 'pending' AND expires_at > $1",
    )
    .bind(now.as_millis())
    .bind(id.to_owned())
    .execute(&mut *w.tx)
    .await
    .map_err(map_err)?;
    if r.rows_affected() != 1 {
        return Ok(ConfirmOutcome::AlreadyConfirmed);
    }
    s.finish(w, fx).await?;
    Ok(ConfirmOutcome::Confirmed)
}

pub(crate) async fn claim_intents(s: &SqlStore, now: Timestamp, lease: Span, limit: u32) -> StoreResult<Vec<Intent>> {
    let due = sqlx::query(
        "SELECT id FROM withdrawal_intents WHERE state = 'confirmed' AND delivered_at IS NULL AND next_attempt_at <= $1 \
         ORDER BY next_attempt_at LIMIT $2",
    )
    .bind(now.as_millis())
    .bind(i64::from(limit))
    .fetch_all(&mut *s.reader().await?)
    .await
    .map_err(map_err)?;
    let mut out = Vec::new();
    for row in due {
        let id = rows::text(&row, "id")?;
        let mut w = s.begin().await?;
        // The conditional update is the claim: two instances never deliver one intent at once.
        let sql = format!(
            "UPDATE withdrawal_intents SET next_attempt_at = $1, attempts = attempts + 1 \
             WHERE id = $2 AND state = 'confirmed' AND delivered_at IS NULL AND next_attempt_at <= $3 RETURNING {INTENT_COLS}"
        );
        let claimed = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(now.plus(lease).as_millis())
            .bind(id)
            .bind(now.as_millis())
            .fetch_optional(&mut *w.tx)
            .await
            .map_err(map_err)?;
        w.tx.commit().await.map_err(map_err)?;
        if let Some(r) = claimed {
            out.push(intent(&r)?);
        }
    }
    Ok(out)
}
