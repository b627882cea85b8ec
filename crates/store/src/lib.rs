//! # gatehouse-store
//!
//! The storage traits of `gatehouse-core` implemented for SQLite (embedded mode) and
//! PostgreSQL (many instances), plus the Redis connection used for the replay cache, rate
//! limits and revocation fan-out.
//!
//! One SQL implementation serves both databases (ADR 0001): queries are written in the common
//! subset (`$n` placeholders, `RETURNING`, `INSERT … ON CONFLICT`), values are BIGINT
//! milliseconds, TEXT and BLOB/BYTEA, and each backend has its own migrations folder. The only
//! backend-specific code is connection setup and how a write transaction begins: SQLite takes
//! the database write lock up front (`BEGIN IMMEDIATE`, plus an in-process mutex) so two writers
//! never deadlock on a lock upgrade; PostgreSQL relies on row locks taken by conditional
//! updates. The same conformance suite (`tests/conformance.rs`) runs against both.

pub mod redis;
pub mod sql;

pub use sql::{Backend, DbSettings, SqlStore};
