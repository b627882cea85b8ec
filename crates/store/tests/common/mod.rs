//! Test harness: one fresh database per test, on SQLite and on PostgreSQL.
//!
//! PostgreSQL tests need the server named by `GATEHOUSE_TEST_PG` (default
//! `postgres://postgres@127.0.0.1:5432/test`); each test gets its own schema. If the server
//! cannot be reached the test fails loudly: a backend that is not tested is not supported.

#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use gatehouse_core::account::{Account, AccountStatus, Email};
use gatehouse_core::clock::{ManualClock, Span, Timestamp};
use gatehouse_core::ids::{DeviceId, SessionId, UserId};
use gatehouse_core::password::PasswordHashString;
use gatehouse_core::rng::SecureRng;
use gatehouse_core::secret::{SecretBytes, Token};
use gatehouse_core::session::{Session, SessionKind};
use gatehouse_core::store::{AccountStore, EmailToken, NewSession, SideEffects};
use gatehouse_store::{DbSettings, SqlStore};

pub const T0: Timestamp = Timestamp::from_secs(1_800_000_000);

static COUNTER: AtomicU64 = AtomicU64::new(0);

pub fn pg_admin_url() -> String {
    std::env::var("GATEHOUSE_TEST_PG").unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into())
}

fn unique(prefix: &str) -> String {
    let n = COUNTER.fetch_add(1, Ordering::SeqCst);
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or(0);
    format!("{prefix}_{}_{}_{n}", std::process::id(), nanos % 1_000_000_000)
}

/// A fresh PostgreSQL schema; returns a URL whose search_path points at it.
pub async fn fresh_pg_url() -> String {
    use sqlx::Executor;
    sqlx::any::install_default_drivers();
    let admin = pg_admin_url();
    let pool = sqlx::AnyPool::connect(&admin)
        .await
        .unwrap_or_else(|e| panic!("PostgreSQL at {admin} is required for the store tests and is unreachable: {e}"));
    let schema = unique("ghtest");
    pool.execute(sqlx::AssertSqlSafe(format!("CREATE SCHEMA {schema}"))).await.expect("create schema");
    pool.close().await;
    let sep = if admin.contains('?') { '&' } else { '?' };
    format!("{admin}{sep}options=-c%20search_path%3D{schema}")
}

pub fn fresh_sqlite_url() -> String {
    let dir = std::env::temp_dir().join(unique("ghtest"));
    std::fs::create_dir_all(&dir).expect("temp dir");
    format!("sqlite://{}", dir.join("gatehouse.db").display())
}

pub async fn open(url: &str, clock: ManualClock) -> Arc<SqlStore> {
    let store = SqlStore::connect(url, DbSettings::default(), Arc::new(clock)).await.expect("connect store");
    store.set_audit_signer(SecretBytes::new(vec![7; 32]), "test-instance");
    let store = Arc::new(store);
    store.start_background();
    store
}

/// Runs the body once on SQLite and once on PostgreSQL, each with a fresh database.
#[macro_export]
macro_rules! on_every_backend {
    ($name:ident, |$store:ident, $clock:ident| $body:block) => {
        mod $name {
            use super::*;
            async fn run($store: std::sync::Arc<gatehouse_store::SqlStore>, $clock: gatehouse_core::clock::ManualClock) $body

            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn sqlite() {
                let clock = gatehouse_core::clock::ManualClock::new($crate::common::T0);
                let store = $crate::common::open(&$crate::common::fresh_sqlite_url(), clock.clone()).await;
                run(store, clock).await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn postgres() {
                let clock = gatehouse_core::clock::ManualClock::new($crate::common::T0);
                let store = $crate::common::open(&$crate::common::fresh_pg_url().await, clock.clone()).await;
                run(store, clock).await;
            }
        }
    };
}

/// A new API session for `user` at `T0` (12 h), with its access token (10 min) and refresh
/// token.
pub fn new_session(user: UserId, rng: &dyn SecureRng) -> (NewSession, Token, Token) {
    let session = Session {
        id: SessionId::generate(T0, rng),
        user_id: user,
        device_id: DeviceId::generate(T0, rng),
        ua_family: "curl/Other".into(),
        device_name: "curl on Other".into(),
        kind: SessionKind::Api,
        created_ip: "127.0.0.1".into(),
        last_ip: "127.0.0.1".into(),
        created_at: T0,
        last_seen_at: T0,
        expires_at: T0.plus(Span::hours(12)),
        auth_time: T0,
        revoked_at: None,
        revoke_reason: None,
    };
    let (access, refresh) = (Token::generate(rng), Token::generate(rng));
    let new = NewSession {
        session,
        access_hash: access.hash(),
        access_expires_at: T0.plus(Span::minutes(10)),
        refresh_hash: refresh.hash(),
    };
    (new, access, refresh)
}

/// An active account created at `T0`, its email verified then when `verified`.
pub fn account(email: &str, verified: bool, rng: &dyn SecureRng) -> Account {
    Account {
        id: UserId::generate(T0, rng),
        email: Email::parse(email).unwrap(),
        email_verified_at: verified.then_some(T0),
        password_hash: PasswordHashString::from_stored("$argon2id$v=19$m=19456,t=2,p=1$c2FsdA$aGFzaA".into()),
        status: AccountStatus::Active,
        is_admin: false,
        high_value: false,
        created_at: T0,
        password_changed_at: T0,
        frozen_at: None,
    }
}

/// [`account`] stored, with a 24 h email-verification token.
pub async fn create_account(store: &SqlStore, email: &str, verified: bool, rng: &dyn SecureRng) -> Account {
    let a = account(email, verified, rng);
    let et = EmailToken {
        hash: Token::generate(rng).hash(),
        user_id: a.id,
        purpose: "verify_email".into(),
        expires_at: T0.plus(Span::hours(24)),
    };
    store.create_account(&a, &et, SideEffects::default()).await.unwrap();
    a
}

/// A verified, active account's id.
pub async fn user(store: &SqlStore, email: &str, rng: &dyn SecureRng) -> UserId {
    create_account(store, email, true, rng).await.id
}
