//! Test harness: one fresh database per test, on SQLite and on PostgreSQL.
//!
//! PostgreSQL tests need the server named by `GATEHOUSE_TEST_PG` (default
//! `postgres://postgres@127.0.0.1:5432/test`); each test gets its own schema. If the server
//! cannot be reached the test fails loudly: a backend that is not tested is not supported.

#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use gatehouse_core::clock::{ManualClock, Timestamp};
use gatehouse_core::secret::SecretBytes;
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
