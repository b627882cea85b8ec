//! The SQL store: connection setup, write transactions and the audit-chain append that every
//! mutating operation shares.

mod accounts;
mod apikeys;
mod audit;
// proof of possession (issue 9)
mod bindings;
// friction (issue 5)
mod friction;
mod group;
mod recovery;
mod withdrawals;
// end friction
mod mail;
mod mfa;
mod replay;
mod risk;
mod rows;
mod sessions;
mod throttle;
mod webhooks;

use std::str::FromStr;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use async_trait::async_trait;
use gatehouse_core::audit::{AuditEvent, AuditRecord};
use gatehouse_core::clock::{Clock, Timestamp};
use gatehouse_core::secret::SecretBytes;
use gatehouse_core::store::{
    QueuedMail, SecretStore, SideEffects, Store, StoreError, StoreResult, futures_ping::PingFuture,
};
use sqlx::any::{AnyPoolOptions, install_default_drivers};
use sqlx::pool::PoolConnection;
use sqlx::{Any, AnyConnection, AnyPool, Connection, Executor, Row, Transaction};
use tokio::sync::{Mutex, MutexGuard};

/// Which database a URL names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// Embedded, single process.
    Sqlite,
    /// Shared by many instances.
    Postgres,
}

impl Backend {
    /// Detects the backend from a connection URL.
    pub fn of_url(url: &str) -> Option<Self> {
        if url.starts_with("sqlite:") {
            Some(Self::Sqlite)
        } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            Some(Self::Postgres)
        } else {
            None
        }
    }
}

/// Connection-pool settings (R106: every dependency has a documented maximum and timeouts).
#[derive(Debug, Clone, Copy)]
pub struct DbSettings {
    /// Pool size.
    pub max_connections: u32,
    /// How long a request waits for a connection before failing with 503.
    pub acquire_timeout: Duration,
    /// PostgreSQL `statement_timeout`.
    pub statement_timeout: Duration,
    /// Group commit for hot-path writes (see `group`); off runs each in its own transaction.
    pub group_commit: bool,
}

impl Default for DbSettings {
    fn default() -> Self {
        Self {
            max_connections: 16,
            acquire_timeout: Duration::from_millis(2000),
            statement_timeout: Duration::from_secs(2),
            group_commit: true,
        }
    }
}

/// What the store needs to write audit records: the MAC key and this instance's name.
#[derive(Debug)]
struct AuditSigner {
    key: SecretBytes,
    instance: String,
}

/// SQLite or PostgreSQL behind one implementation of the core store traits.
pub struct SqlStore {
    pool: AnyPool,
    readers: Option<Readers>,
    acquire_timeout: Duration,
    backend: Backend,
    write_lock: Option<Arc<Mutex<()>>>,
    clock: Arc<dyn Clock>,
    signer: OnceLock<AuditSigner>,
    replay: OnceLock<replay::ReplayWriter>,
    group: OnceLock<group::GroupWriter>,
    group_commit: bool,
}

impl std::fmt::Debug for SqlStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqlStore").field("backend", &self.backend).finish()
    }
}

pub(crate) fn map_err(e: sqlx::Error) -> StoreError {
    use sqlx::Error as E;
    match e {
        E::PoolTimedOut | E::PoolClosed | E::Io(_) | E::Tls(_) | E::Protocol(_) | E::WorkerCrashed => {
            StoreError::Unavailable(e.to_string())
        }
        E::Database(db) => {
            let code = db.code().map(|c| c.into_owned()).unwrap_or_default();
            if db.is_unique_violation() {
                StoreError::Conflict
            } else if matches!(code.as_str(), "57014" | "57P01" | "57P02" | "57P03" | "53300" | "5" | "6" | "517")
                || code.starts_with("08")
            {
                // statement timeout, admin shutdown, too many connections, connection
                // exceptions; SQLITE_BUSY / SQLITE_LOCKED.
                StoreError::Unavailable(db.to_string())
            } else {
                StoreError::Other(db.to_string())
            }
        }
        E::ColumnDecode { .. } | E::Decode(_) | E::ColumnNotFound(_) | E::TypeNotFound { .. } => {
            StoreError::Corrupt(e.to_string())
        }
        other => StoreError::Other(other.to_string()),
    }
}

/// How many connections SQLite reads keep open beside the pool.
const SQLITE_READERS: usize = 4;

/// The SQLite pool's size: writes run one at a time behind the write lock and reads have their
/// own connections, so two suffice — and few connections keep the writer's page cache warm (a
/// connection's cache survives its own commits, not other connections').
const SQLITE_POOL: u32 = 2;

/// SQLite connections held open for reads, outside the pool.
///
/// sqlx runs each SQLite connection on its own thread and every statement is a round trip to
/// it; a pooled connection adds a ping on the way back to the pool (and by default another on
/// the way out), so a one-row read cost three trips. A held connection costs one. WAL mode lets
/// these readers run beside the one writer; they see what has committed, as pool connections do.
struct Readers {
    conns: Vec<Mutex<AnyConnection>>,
    next: std::sync::atomic::AtomicUsize,
}

impl Readers {
    async fn open(url: &str, n: usize) -> StoreResult<Self> {
        let mut conns = Vec::with_capacity(n);
        for _ in 0..n {
            let mut c = AnyConnection::connect(url).await.map_err(map_err)?;
            // The same settings as the pool's (a few single-statement writes run here too).
            for pragma in ["PRAGMA synchronous = FULL", "PRAGMA foreign_keys = ON", "PRAGMA busy_timeout = 5000"] {
                c.execute(pragma).await.map_err(map_err)?;
            }
            conns.push(Mutex::new(c));
        }
        Ok(Self { conns, next: std::sync::atomic::AtomicUsize::new(0) })
    }

    /// A free connection if there is one, else a wait for the next in turn.
    async fn get(&self) -> MutexGuard<'_, AnyConnection> {
        let n = self.conns.len();
        let start = self.next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        for i in 0..n {
            if let Ok(g) = self.conns[(start + i) % n].try_lock() {
                return g;
            }
        }
        self.conns[start % n].lock().await
    }
}

/// A connection lent for one read.
pub(crate) enum Reader<'a> {
    Held(MutexGuard<'a, AnyConnection>),
    Pooled(PoolConnection<Any>),
}

impl std::ops::Deref for Reader<'_> {
    type Target = AnyConnection;
    fn deref(&self) -> &AnyConnection {
        match self {
            Self::Held(c) => c,
            Self::Pooled(c) => c,
        }
    }
}

impl std::ops::DerefMut for Reader<'_> {
    fn deref_mut(&mut self) -> &mut AnyConnection {
        match self {
            Self::Held(c) => c,
            Self::Pooled(c) => c,
        }
    }
}

/// A write transaction; for SQLite it also holds the in-process write lock.
pub(crate) struct WriteTx<'a> {
    pub(crate) tx: Transaction<'static, Any>,
    _guard: Option<MutexGuard<'a, ()>>,
}

impl<'a> WriteTx<'a> {
    /// The transaction and the write-lock guard, for callers that hand the transaction on.
    pub(crate) fn into_parts(self) -> (Transaction<'static, Any>, Option<MutexGuard<'a, ()>>) {
        (self.tx, self._guard)
    }
}

impl SqlStore {
    /// Connects to `url` and applies the backend's migrations. SQLite files are created (with
    /// their directory) if missing and opened in WAL mode with `synchronous=FULL` (F13).
    pub async fn connect(url: &str, settings: DbSettings, clock: Arc<dyn Clock>) -> StoreResult<Self> {
        install_default_drivers();
        let backend =
            Backend::of_url(url).ok_or_else(|| StoreError::Other("unsupported database URL scheme".into()))?;
        let mut url = url.to_owned();
        if backend == Backend::Sqlite {
            let path = url.trim_start_matches("sqlite://").trim_start_matches("sqlite:");
            let path = path.split('?').next().unwrap_or("");
            let dir = std::path::Path::new(path).parent();
            if let Some(dir) = dir.filter(|d| !d.as_os_str().is_empty() && path != ":memory:") {
                std::fs::create_dir_all(dir).map_err(|e| StoreError::Unavailable(e.to_string()))?;
            }
            if !url.contains('?') {
                url.push_str("?mode=rwc");
            }
        }
        let statement_ms = settings.statement_timeout.as_millis();
        let mut opts = AnyPoolOptions::new()
            .max_connections(if backend == Backend::Sqlite {
                settings.max_connections.min(SQLITE_POOL)
            } else {
                settings.max_connections
            })
            .acquire_timeout(settings.acquire_timeout);
        opts = opts.after_connect(move |conn, _meta| {
            Box::pin(async move {
                match backend {
                    Backend::Sqlite => {
                        conn.execute("PRAGMA journal_mode = WAL").await?;
                        conn.execute("PRAGMA synchronous = FULL").await?;
                        conn.execute("PRAGMA foreign_keys = ON").await?;
                        conn.execute("PRAGMA busy_timeout = 5000").await?;
                        // The pool's connections do the writes (ADR 0015), and a writer's page
                        // cache survives its own commits: up to 64 MiB of it (SQLite's default
                        // is 2 MiB) keeps the hot B-tree pages of a grown database in memory
                        // instead of re-reading them from the OS on every batch (ADR 0016).
                        // Readers' caches are dropped whenever another connection commits, so
                        // they keep the default.
                        conn.execute("PRAGMA cache_size = -65536").await?;
                    }
                    Backend::Postgres => {
                        conn.execute(sqlx::AssertSqlSafe(format!("SET statement_timeout = {statement_ms}"))).await?;
                    }
                }
                Ok(())
            })
        });
        if backend == Backend::Sqlite {
            // An embedded file cannot go stale: the pool's ping before each use (another trip
            // to the connection's thread) buys nothing.
            opts = opts.test_before_acquire(false);
        }
        let pool = opts.connect(&url).await.map_err(map_err)?;
        let migrator = match backend {
            Backend::Sqlite => sqlx::migrate!("./migrations/sqlite"),
            Backend::Postgres => sqlx::migrate!("./migrations/postgres"),
        };
        migrator.run(&pool).await.map_err(|e| StoreError::Other(format!("migration failed: {e}")))?;
        let readers = match backend {
            Backend::Sqlite if !url.contains(":memory:") && !url.contains("mode=memory") => {
                Some(Readers::open(&url, SQLITE_READERS).await?)
            }
            _ => None,
        };
        Ok(Self {
            pool,
            readers,
            acquire_timeout: settings.acquire_timeout,
            backend,
            write_lock: (backend == Backend::Sqlite).then(|| Arc::new(Mutex::new(()))),
            clock,
            signer: OnceLock::new(),
            replay: OnceLock::new(),
            group: OnceLock::new(),
            group_commit: settings.group_commit,
        })
    }

    /// The backend in use.
    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// Installs the audit MAC key and instance name. Until this is called every write that
    /// carries audit events fails (fail closed).
    pub fn set_audit_signer(&self, key: SecretBytes, instance: &str) {
        let _ = self.signer.set(AuditSigner { key, instance: instance.to_owned() });
    }

    /// Starts the background writers (the group-commit replay writer and the group-commit
    /// writer for hot-path writes). Call once, from inside
    /// a tokio runtime, after wrapping the store in an `Arc`.
    pub fn start_background(self: &Arc<Self>) {
        let _ = self.replay.get_or_init(|| replay::ReplayWriter::spawn(Arc::clone(self)));
        if self.group_commit {
            let _ = self.group.get_or_init(|| group::GroupWriter::spawn(Arc::clone(self)));
        }
    }

    pub(crate) fn replay_writer(&self) -> StoreResult<&replay::ReplayWriter> {
        self.replay.get().ok_or_else(|| StoreError::Unavailable("replay writer not started".into()))
    }

    /// Closes the pool.
    pub async fn close(&self) {
        self.pool.close().await;
    }

    pub(crate) fn pool(&self) -> &AnyPool {
        &self.pool
    }

    /// A connection for one read (or one self-contained statement): on SQLite one of the held
    /// reader connections, elsewhere one from the pool.
    pub(crate) async fn reader(&self) -> StoreResult<Reader<'_>> {
        match &self.readers {
            Some(r) => tokio::time::timeout(self.acquire_timeout, r.get())
                .await
                .map(Reader::Held)
                .map_err(|_| StoreError::Unavailable("timed out waiting for a reader connection".into())),
            None => self.pool.acquire().await.map(Reader::Pooled).map_err(map_err),
        }
    }

    pub(crate) fn now(&self) -> Timestamp {
        self.clock.now()
    }

    pub(crate) async fn begin(&self) -> StoreResult<WriteTx<'_>> {
        let guard = match &self.write_lock {
            Some(lock) => Some(lock.lock().await),
            None => None,
        };
        let tx = match self.backend {
            Backend::Sqlite => self.pool.begin_with("BEGIN IMMEDIATE").await,
            Backend::Postgres => self.pool.begin().await,
        }
        .map_err(map_err)?;
        Ok(WriteTx { tx, _guard: guard })
    }

    /// Appends `fx` (audit events and queued mail) inside `tx`.
    pub(crate) async fn apply_effects(&self, tx: &mut Transaction<'static, Any>, fx: SideEffects) -> StoreResult<()> {
        self.append_events(tx, &fx.events).await?;
        // friction (issue 5): the withdrawal hold commits with the change that causes it.
        if let Some(h) = &fx.hold {
            friction::apply_hold(tx, h).await?;
        }
        // end friction
        for m in fx.mails {
            insert_mail(tx, &m).await?;
        }
        for h in fx.webhooks {
            sqlx::query(
                "INSERT INTO webhook_outbox (id, topic, body, created_at, attempts, next_attempt_at) VALUES ($1, $2, $3, $4, 0, $4)",
            )
            .bind(h.id)
            .bind(h.topic)
            .bind(h.body)
            .bind(h.created_at.as_millis())
            .execute(&mut **tx)
            .await
            .map_err(map_err)?;
        }
        Ok(())
    }

    /// Appends `events` to the audit chain inside `tx`, in order: the head moved once, the
    /// rows inserted sixteen at a time, the head's hash set.
    pub(crate) async fn append_events(
        &self,
        tx: &mut Transaction<'static, Any>,
        events: &[AuditEvent],
    ) -> StoreResult<()> {
        if events.is_empty() {
            return Ok(());
        }
        let signer = self.signer.get().ok_or_else(|| StoreError::Other("audit signer not configured".into()))?;
        append_events(tx, events, self.now(), signer).await
    }

    /// Commits `tx` after applying `fx`.
    pub(crate) async fn finish(&self, mut w: WriteTx<'_>, fx: SideEffects) -> StoreResult<()> {
        self.apply_effects(&mut w.tx, fx).await?;
        w.tx.commit().await.map_err(map_err)
    }
}

/// Row counts of the multi-row audit inserts: a batch is cut into pieces of these sizes (16s,
/// then the remainder in powers of two), so only five statement texts ever exist and each
/// stays prepared in the connection's cache. Small on purpose: SQLite resolves `$N` parameter
/// names by a linear scan, so a statement's cost grows with the square of its parameters.
const AUDIT_INSERT_ROWS: [usize; 5] = [16, 8, 4, 2, 1];

/// The audit insert for `rows` rows (one of [`AUDIT_INSERT_ROWS`]).
fn audit_insert_sql(rows: usize) -> &'static str {
    static SQL: OnceLock<Vec<String>> = OnceLock::new();
    let all = SQL.get_or_init(|| {
        AUDIT_INSERT_ROWS
            .iter()
            .map(|&n| {
                let tuples: Vec<String> = (0..n)
                    .map(|i| {
                        let marks: Vec<String> = (1..=13).map(|k| format!("${}", i * 13 + k)).collect();
                        format!("({})", marks.join(", "))
                    })
                    .collect();
                format!(
                    "INSERT INTO audit_events (seq, at, instance, kind, actor, subject, ip, request_id, outcome, details, prev_hash, hash, mac) VALUES {}",
                    tuples.join(", ")
                )
            })
            .collect()
    });
    let i = AUDIT_INSERT_ROWS.iter().position(|&n| n == rows).unwrap_or(AUDIT_INSERT_ROWS.len() - 1);
    all.get(i).map(String::as_str).unwrap_or_default()
}

async fn append_events(
    tx: &mut Transaction<'static, Any>,
    events: &[AuditEvent],
    now: Timestamp,
    signer: &AuditSigner,
) -> StoreResult<()> {
    let n = i64::try_from(events.len()).map_err(|_| StoreError::Other("too many audit events".into()))?;
    // Moving the head first takes its lock (PostgreSQL) or needs the write lock we already hold
    // (SQLite): appenders are serialised and the chain stays linear. It answers with the new
    // last sequence number and the hash of the record before ours.
    let head = sqlx::query("UPDATE audit_head SET seq = seq + $1 WHERE id = 1 RETURNING seq, hash")
        .bind(n)
        .fetch_one(&mut **tx)
        .await
        .map_err(map_err)?;
    let last: i64 = head.try_get("seq").map_err(map_err)?;
    let prev: Vec<u8> = head.try_get("hash").map_err(map_err)?;
    let mut prev: [u8; 32] = prev.try_into().map_err(|_| StoreError::Corrupt("audit head hash".into()))?;
    let mut records = Vec::with_capacity(events.len());
    for (seq, e) in (last - n + 1..).zip(events) {
        let r = AuditRecord::chain(e, seq, now, &signer.instance, prev, &signer.key);
        prev = r.hash;
        records.push(r);
    }
    let mut rest = records.as_slice();
    while !rest.is_empty() {
        let rows = AUDIT_INSERT_ROWS.iter().copied().find(|&n| n <= rest.len()).unwrap_or(1);
        let (chunk, tail) = rest.split_at(rows);
        rest = tail;
        let mut q = sqlx::query(sqlx::AssertSqlSafe(audit_insert_sql(rows)));
        for r in chunk {
            q = q
                .bind(r.seq)
                .bind(r.at.as_millis())
                .bind(r.instance.clone())
                .bind(r.kind.clone())
                .bind(r.actor.clone())
                .bind(r.subject.clone())
                .bind(r.ip.clone())
                .bind(r.request_id.clone())
                .bind(r.outcome.clone())
                .bind(r.details.clone())
                .bind(r.prev_hash.to_vec())
                .bind(r.hash.to_vec())
                .bind(r.mac.to_vec());
        }
        q.execute(&mut **tx).await.map_err(map_err)?;
    }
    sqlx::query("UPDATE audit_head SET hash = $1 WHERE id = 1")
        .bind(prev.to_vec())
        .execute(&mut **tx)
        .await
        .map_err(map_err)?;
    Ok(())
}

async fn insert_mail(tx: &mut Transaction<'static, Any>, m: &QueuedMail) -> StoreResult<()> {
    sqlx::query(
        "INSERT INTO mail_outbox (id, recipient, sealed, created_at, attempts, next_attempt_at) VALUES ($1, $2, $3, $4, 0, $4)",
    )
    .bind(m.id.clone())
    .bind(m.recipient.clone())
    .bind(m.sealed.clone())
    .bind(m.created_at.as_millis())
    .execute(&mut **tx)
    .await
    .map_err(map_err)?;
    Ok(())
}

#[async_trait]
impl SecretStore for SqlStore {
    async fn get_or_init_secret(&self, name: &str, candidate: Vec<u8>, now: Timestamp) -> StoreResult<Vec<u8>> {
        let mut w = self.begin().await?;
        sqlx::query(
            "INSERT INTO server_secrets (name, sealed, created_at) VALUES ($1, $2, $3) ON CONFLICT (name) DO NOTHING",
        )
        .bind(name.to_owned())
        .bind(candidate)
        .bind(now.as_millis())
        .execute(&mut *w.tx)
        .await
        .map_err(map_err)?;
        let row = sqlx::query("SELECT sealed FROM server_secrets WHERE name = $1")
            .bind(name.to_owned())
            .fetch_one(&mut *w.tx)
            .await
            .map_err(map_err)?;
        let sealed: Vec<u8> = row.try_get("sealed").map_err(map_err)?;
        w.tx.commit().await.map_err(map_err)?;
        Ok(sealed)
    }
}

impl Store for SqlStore {
    fn ping(&self) -> PingFuture<'_> {
        Box::pin(async move {
            sqlx::query("SELECT 1").execute(&self.pool).await.map_err(map_err)?;
            Ok(())
        })
    }

    fn db_time(&self) -> gatehouse_core::store::DbTimeFuture<'_> {
        Box::pin(async move {
            match self.backend {
                Backend::Sqlite => Ok(None),
                Backend::Postgres => {
                    let row = sqlx::query("SELECT CAST(EXTRACT(EPOCH FROM clock_timestamp()) * 1000 AS BIGINT) AS ms")
                        .fetch_one(&self.pool)
                        .await
                        .map_err(map_err)?;
                    Ok(Some(Timestamp::from_millis(row.try_get::<i64, _>("ms").map_err(map_err)?)))
                }
            }
        })
    }
}

impl FromStr for Backend {
    type Err = StoreError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Backend::of_url(s).ok_or_else(|| StoreError::Other("unsupported database URL".into()))
    }
}
