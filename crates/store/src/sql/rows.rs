//! Row decoding shared by the SQL modules. Every column is read by name; anything that does
//! not decode is `Corrupt`, never a default value.

use gatehouse_core::account::{Account, AccountStatus, Email};
use gatehouse_core::clock::Timestamp;
use gatehouse_core::ids::{DeviceId, SessionId, UserId};
use gatehouse_core::password::PasswordHashString;
use gatehouse_core::session::{Session, SessionKind};
use gatehouse_core::store::{StoreError, StoreResult};
use sqlx::Row;
use sqlx::any::AnyRow;

use super::map_err;

pub(crate) fn i64_col(row: &AnyRow, col: &str) -> StoreResult<i64> {
    row.try_get::<i64, _>(col).map_err(map_err)
}

pub(crate) fn opt_i64(row: &AnyRow, col: &str) -> StoreResult<Option<i64>> {
    row.try_get::<Option<i64>, _>(col).map_err(map_err)
}

pub(crate) fn text(row: &AnyRow, col: &str) -> StoreResult<String> {
    row.try_get::<String, _>(col).map_err(map_err)
}

pub(crate) fn opt_text(row: &AnyRow, col: &str) -> StoreResult<Option<String>> {
    row.try_get::<Option<String>, _>(col).map_err(map_err)
}

pub(crate) fn blob(row: &AnyRow, col: &str) -> StoreResult<Vec<u8>> {
    row.try_get::<Vec<u8>, _>(col).map_err(map_err)
}

pub(crate) fn ts(row: &AnyRow, col: &str) -> StoreResult<Timestamp> {
    i64_col(row, col).map(Timestamp::from_millis)
}

pub(crate) fn opt_ts(row: &AnyRow, col: &str) -> StoreResult<Option<Timestamp>> {
    opt_i64(row, col).map(|v| v.map(Timestamp::from_millis))
}

pub(crate) fn hash32(row: &AnyRow, col: &str) -> StoreResult<[u8; 32]> {
    blob(row, col)?.try_into().map_err(|_| StoreError::Corrupt(format!("{col} is not 32 bytes")))
}

fn parse<T>(v: Option<T>, what: &str) -> StoreResult<T> {
    v.ok_or_else(|| StoreError::Corrupt(format!("invalid {what}")))
}

pub(crate) fn user_id(row: &AnyRow, col: &str) -> StoreResult<UserId> {
    parse(UserId::parse(&text(row, col)?), col)
}

/// Account columns with an `a_` alias prefix, for joins.
pub(crate) const ACCOUNT_COLS: &str = "a.id AS a_id, a.email AS a_email, a.email_verified_at AS a_email_verified_at, \
     a.password_hash AS a_password_hash, a.status AS a_status, a.is_admin AS a_is_admin, a.high_value AS a_high_value, \
     a.created_at AS a_created_at, a.password_changed_at AS a_password_changed_at, a.frozen_at AS a_frozen_at";

/// Session columns with an `s_` alias prefix.
pub(crate) const SESSION_COLS: &str = "s.id AS s_id, s.user_id AS s_user_id, s.device_id AS s_device_id, \
     s.ua_family AS s_ua_family, s.device_name AS s_device_name, s.kind AS s_kind, s.created_ip AS s_created_ip, \
     s.last_ip AS s_last_ip, s.created_at AS s_created_at, s.last_seen_at AS s_last_seen_at, s.expires_at AS s_expires_at, \
     s.auth_time AS s_auth_time, s.revoked_at AS s_revoked_at, s.revoke_reason AS s_revoke_reason";

pub(crate) fn account(row: &AnyRow) -> StoreResult<Account> {
    Ok(Account {
        id: user_id(row, "a_id")?,
        email: Email::from_stored(text(row, "a_email")?),
        email_verified_at: opt_ts(row, "a_email_verified_at")?,
        password_hash: PasswordHashString::from_stored(text(row, "a_password_hash")?),
        status: AccountStatus::from_stored(&text(row, "a_status")?),
        is_admin: i64_col(row, "a_is_admin")? != 0,
        high_value: i64_col(row, "a_high_value")? != 0,
        created_at: ts(row, "a_created_at")?,
        password_changed_at: ts(row, "a_password_changed_at")?,
        frozen_at: opt_ts(row, "a_frozen_at")?,
    })
}

pub(crate) fn session(row: &AnyRow) -> StoreResult<Session> {
    Ok(Session {
        id: parse(SessionId::parse(&text(row, "s_id")?), "session id")?,
        user_id: user_id(row, "s_user_id")?,
        device_id: parse(DeviceId::parse(&text(row, "s_device_id")?), "device id")?,
        ua_family: text(row, "s_ua_family")?,
        device_name: text(row, "s_device_name")?,
        kind: parse(SessionKind::from_stored(&text(row, "s_kind")?), "session kind")?,
        created_ip: text(row, "s_created_ip")?,
        last_ip: text(row, "s_last_ip")?,
        created_at: ts(row, "s_created_at")?,
        last_seen_at: ts(row, "s_last_seen_at")?,
        expires_at: ts(row, "s_expires_at")?,
        auth_time: ts(row, "s_auth_time")?,
        revoked_at: opt_ts(row, "s_revoked_at")?,
        revoke_reason: opt_text(row, "s_revoke_reason")?,
    })
}
