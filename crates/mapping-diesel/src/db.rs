//! The [`Database`] handle: a connection pool, the options, retries, and
//! transactions.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use diesel::Connection;
use diesel_migrations::MigrationHarness;
use mapping_model::{Error, Result};

use crate::cache::{CacheOptions, CacheStats, MappingCache, MemcachedOptions, WriteLog};
use crate::connection::{DbConnection, Manager, ServerSettings, SqliteSettings};
use crate::errors::{is_wsrep_not_ready, is_wsrep_not_ready_source, transience, Transience};
use crate::migrations::NovaMigrations;
use crate::url::{BackendKind, ConnectionUrl};

/// How transient failures (deadlocks, serialization failures, lock-wait
/// timeouts, SQLite busy) are retried.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Attempts in all, the first included (1 = never retry).
    pub max_attempts: u32,
    /// Delay before the first retry; doubled for each further one.
    pub base_delay: Duration,
    /// Upper bound of one delay.
    pub max_delay: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            max_attempts: 5,
            base_delay: Duration::from_millis(10),
            max_delay: Duration::from_millis(500),
        }
    }
}

impl RetryPolicy {
    /// A policy that never retries.
    pub fn never() -> Self {
        Self {
            max_attempts: 1,
            ..Self::default()
        }
    }

    /// The delay before retry number `retry` (1-based): `base_delay` doubled
    /// per retry, capped at `max_delay`, then jittered uniformly into
    /// `[delay/2, delay]` so that colliding callers do not retry in lockstep.
    pub fn delay(&self, retry: u32) -> Duration {
        let exp = self.base_delay.saturating_mul(
            1u32.checked_shl(retry.saturating_sub(1))
                .unwrap_or(u32::MAX),
        );
        let capped = exp.min(self.max_delay);
        let half = capped / 2;
        half + half.mul_f64(jitter())
    }
}

/// A number in `[0, 1)`, from the standard library's randomly keyed hasher:
/// enough to spread retries apart without a random-number crate.
fn jitter() -> f64 {
    use std::hash::BuildHasher;
    static CALLS: AtomicU64 = AtomicU64::new(0);
    let x = std::collections::hash_map::RandomState::new()
        .hash_one(CALLS.fetch_add(1, Ordering::Relaxed));
    (x >> 11) as f64 / (1u64 << 53) as f64
}

/// Options of a [`Database`].
#[derive(Debug, Clone)]
pub struct Options {
    /// Most connections the pool holds (0 counts as 1; an in-memory SQLite
    /// database always uses one).
    pub max_connections: u32,
    /// How long a caller waits for a pooled connection before
    /// [`Error::PoolTimeout`] (or [`Error::Connection`] if the server cannot
    /// be reached meanwhile).
    pub connection_timeout: Duration,
    /// A pooled connection idle for longer than this is pinged (one round
    /// trip) before it is handed out; one used more recently is handed out
    /// without a ping, and should it have died meanwhile the operation fails
    /// (reads are retried on another connection). `Duration::ZERO` pings on
    /// every checkout.
    pub ping_idle_after: Duration,
    /// How long a SQLite statement waits for a lock held elsewhere (at most
    /// `i32::MAX` milliseconds; zero fails at once with "database is locked",
    /// which the retry policy then retries).
    pub sqlite_busy_timeout: Duration,
    /// How much of a SQLite database file is read through memory mapping
    /// (`PRAGMA mmap_size`, bytes; 0 turns it off). Reads of mapped pages
    /// need no system call: a lookup in a 1M-row table took 7.5 µs instead
    /// of 10.5 µs (docs/benchmarks.md). An I/O error on a mapped page is a
    /// signal rather than an error code, which is SQLite's own caveat.
    pub sqlite_mmap_size: u64,
    /// Retries of transient failures.
    pub retry: RetryPolicy,
    /// The default against which `transport_url` templates are expanded
    /// (Nova's `[DEFAULT]/transport_url`); `None` leaves templates as stored.
    pub default_transport_url: Option<String>,
    /// The default against which `database_connection` templates are expanded
    /// (Nova's `[database]/connection`); `None` leaves templates as stored.
    pub default_database_connection: Option<String>,
    /// The first, in-process tier of the cache of instance-uuid lookups
    /// (see [`crate::cache`]); `None` (the default) turns it off.
    pub cache: Option<CacheOptions>,
    /// How long opening one PostgreSQL or MySQL connection may take, the
    /// handshake included (default 5 s; must be longer than zero). Separate
    /// from `connection_timeout`: a caller waiting on the pool while the
    /// server is unreachable gets [`Error::Connection`] once an attempt to
    /// connect has failed, within about this bound, instead of waiting the
    /// whole `connection_timeout`. A `connect_timeout` in the URL (seconds,
    /// as in libpq and PyMySQL) takes precedence. Not used by SQLite.
    pub connect_timeout: Duration,
    /// MySQL/MariaDB Galera only: the session's `wsrep_sync_wait` (0-15), set
    /// on every new connection, as oslo.db's `mysql_wsrep_sync_wait`. `1`
    /// makes reads wait until the node has applied every write the cluster
    /// committed before them (read-your-writes through a load balancer), at
    /// the cost of that wait. `None` (default) keeps the server's setting.
    pub wsrep_sync_wait: Option<u8>,
    /// The memcached tier of the cache of instance-uuid lookups, shared by
    /// every process (see [`crate::cache`]); `None` (the default) turns it off.
    pub memcached: Option<MemcachedOptions>,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            max_connections: 10,
            connection_timeout: Duration::from_secs(30),
            ping_idle_after: Duration::from_secs(1),
            sqlite_busy_timeout: Duration::from_secs(5),
            sqlite_mmap_size: 256 * 1024 * 1024,
            retry: RetryPolicy::default(),
            default_transport_url: None,
            default_database_connection: None,
            cache: None,
            connect_timeout: Duration::from_secs(5),
            wsrep_sync_wait: None,
            memcached: None,
        }
    }
}

pub(crate) struct Shared {
    pool: r2d2::Pool<Manager>,
    /// A clone of the pool's manager (they share the last connection error).
    manager: Manager,
    /// Instance-mapping creates whose outcome is unknown, by instance uuid.
    pub(crate) uncertain: crate::models::instance_mapping::UncertainCreates,
    url: ConnectionUrl,
    backend: BackendKind,
    pub(crate) options: Options,
    retries: AtomicU64,
    pub(crate) cache: Option<MappingCache>,
}

/// Counters of a [`Database`], shared by all its clones (see [`Database::stats`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Stats {
    /// Transient failures (deadlock, serialization failure, lock-wait
    /// timeout, SQLite busy, lost connection on a read) retried so far.
    pub retries: u64,
}

/// A handle on a `nova_api` database: a pool of connections plus options.
/// Cheap to clone; clones share the pool.
///
/// Every operation is reached through [`Database::cells`],
/// [`Database::instance_mappings`] and [`Database::host_mappings`], or inside
/// [`Database::transaction`].
#[derive(Clone)]
pub struct Database {
    shared: Arc<Shared>,
}

impl std::fmt::Debug for Database {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Database")
            .field("url", &self.shared.url.redacted())
            .field("backend", &self.shared.backend)
            .finish()
    }
}

impl Database {
    /// Opens the database named by `url` (any form of SPEC §6) with default options.
    pub fn open(url: &str) -> Result<Self> {
        Self::open_with(url, Options::default())
    }

    /// Opens the database named by `url` with `options`. One connection is
    /// made at once, so a database that is down is reported here.
    pub fn open_with(url: &str, options: Options) -> Result<Self> {
        Self::open_inner(url, options, true)
    }

    /// Like [`Database::open_with`] but connects nothing yet: the first
    /// checkout connects (waiting at most `connection_timeout`), so opening
    /// never blocks on a server that is down or hangs. For the per-cell pools
    /// of `mapping-router`; an in-memory SQLite database still connects at once.
    #[doc(hidden)]
    pub fn open_lazy_for_router(url: &str, options: Options) -> Result<Self> {
        Self::open_inner(url, options, false)
    }

    fn open_inner(url: &str, options: Options, connect_now: bool) -> Result<Self> {
        if options.connection_timeout.is_zero() {
            // The pool cannot wait "no time at all" (r2d2 would panic).
            return Err(Error::InvalidInput {
                field: "connection_timeout",
                reason: "must be longer than zero".into(),
            });
        }
        if options.connect_timeout.is_zero() {
            return Err(Error::InvalidInput {
                field: "connect_timeout",
                reason: "must be longer than zero".into(),
            });
        }
        if options.wsrep_sync_wait.is_some_and(|n| n > 15) {
            return Err(Error::InvalidInput {
                field: "wsrep_sync_wait",
                reason: "must be a bit mask from 0 to 15".into(),
            });
        }
        let cache = MappingCache::from_options(&options)?;
        let url = ConnectionUrl::parse(url).map_err(|e| Error::Url(e.to_string()))?;
        let backend = url.backend();
        let manager = Manager::new(
            url.clone(),
            SqliteSettings {
                busy_timeout: options.sqlite_busy_timeout,
                mmap_size: options.sqlite_mmap_size,
            },
            options.ping_idle_after,
        )
        .with_server_settings(ServerSettings {
            connect_timeout: options.connect_timeout,
            wsrep_sync_wait: options.wsrep_sync_wait,
        });
        let memory = url.is_sqlite_memory();
        let first = if connect_now || memory {
            Some(manager.open().map_err(|e| Error::Connection {
                url: url.redacted(),
                source: Arc::new(e),
            })?)
        } else {
            None
        };
        let mut builder = r2d2::Pool::builder()
            .max_size(if memory {
                1
            } else {
                options.max_connections.max(1)
            })
            .min_idle(Some(0))
            // Callers wait `options.connection_timeout` in `checkout`; the
            // pool's own timeout only caps its back-off between attempts to
            // reconnect at half of it, so that a server that comes back is
            // found again within about half a second.
            .connection_timeout(options.connection_timeout.min(RECONNECT_EVERY * 2))
            .error_handler(Box::new(LogErrors));
        if memory {
            builder = builder.idle_timeout(None).max_lifetime(None);
        }
        drop(first);
        let pool = if memory {
            // Each in-memory connection is its own database: keep one forever.
            builder
                .min_idle(Some(1))
                .build(manager.clone())
                .map_err(|_| Error::Connection {
                    url: url.redacted(),
                    source: manager.take_last_error().unwrap_or_else(|| {
                        Arc::new(mapping_model::ConnectionFailure::MemoryDatabaseLost {
                            reason: "its connection could not be opened",
                        })
                    }),
                })?
        } else {
            builder.build_unchecked(manager.clone())
        };
        tracing::debug!(url = %url.redacted(), ?backend, "opened database");
        Ok(Self {
            shared: Arc::new(Shared {
                pool,
                manager,
                uncertain: Default::default(),
                url,
                backend,
                cache,
                options,
                retries: AtomicU64::new(0),
            }),
        })
    }

    /// Which engine this database runs on.
    pub fn backend(&self) -> BackendKind {
        self.shared.backend
    }

    /// The connection URL with its password hidden.
    pub fn redacted_url(&self) -> String {
        self.shared.url.redacted()
    }

    /// The options in force.
    pub fn options(&self) -> &Options {
        &self.shared.options
    }

    /// Counters since the database was opened.
    pub fn stats(&self) -> Stats {
        Stats {
            retries: self.shared.retries.load(Ordering::Relaxed),
        }
    }

    /// Counters of each tier of the mapping cache, or `None` when both are
    /// off (see [`Options::cache`] and [`Options::memcached`]).
    pub fn cache_stats(&self) -> Option<CacheStats> {
        self.shared.cache.as_ref().map(MappingCache::stats)
    }

    /// Empties the first tier and invalidates every value of the memcached
    /// tier, for every process (a no-op when both are off), e.g. after
    /// changing the database behind the library's back.
    pub fn clear_cache(&self) {
        if let Some(c) = &self.shared.cache {
            c.clear();
        }
    }

    /// Takes a connection from the pool, which waits up to
    /// `connection_timeout` and reconnects as needed. Fails with
    /// [`Error::Connection`] carrying the typed cause when the pool's last
    /// attempt to open (or ping) a connection failed (the server is down),
    /// else with [`Error::PoolTimeout`] (every connection stayed busy). An
    /// in-memory SQLite database whose connection was lost fails at once.
    fn checkout(&self) -> Result<r2d2::PooledConnection<Manager>> {
        let connection_error = |source| Error::Connection {
            url: self.shared.url.redacted(),
            source,
        };
        if let Some(lost) = self.shared.manager.memory_lost() {
            return Err(connection_error(Arc::new(lost)));
        }
        let start = Instant::now();
        self.wait_for_connection(start).map_err(|e| {
            let e = match e {
                PoolWait::ServerDown(source) => {
                    tracing::warn!(error = %source, "database unreachable");
                    return connection_error(source);
                }
                PoolWait::TimedOut(e) => e,
            };
            tracing::warn!(error = %e, "no database connection available");
            match self.shared.manager.take_last_error() {
                Some(source) => connection_error(source),
                None => Error::PoolTimeout {
                    waited_ms: u64::try_from(start.elapsed().as_millis()).unwrap_or(u64::MAX),
                },
            }
        })
    }

    /// Waits for a pooled connection up to `connection_timeout`, in short
    /// slices; gives up with [`PoolWait::ServerDown`] as soon as an attempt
    /// to connect made since `start` failed (and none succeeded after it), so
    /// that every caller learns of a dead server within about the connect
    /// timeout, with the same error.
    fn wait_for_connection(
        &self,
        start: Instant,
    ) -> std::result::Result<r2d2::PooledConnection<Manager>, PoolWait> {
        let deadline = start + self.shared.options.connection_timeout;
        loop {
            let now = Instant::now();
            let slice = deadline.saturating_duration_since(now).min(POOL_POLL);
            match self.shared.pool.get_timeout(slice) {
                Ok(conn) => return Ok(conn),
                Err(e) => {
                    if let Some(source) = self.shared.manager.health().failed_since(start) {
                        return Err(PoolWait::ServerDown(source));
                    }
                    if Instant::now() >= deadline {
                        return Err(PoolWait::TimedOut(e));
                    }
                }
            }
        }
    }

    /// Takes a connection for `op`. A write that is not [`Op::ping_free`]
    /// gets a connection known to be alive: one not pinged at checkout (used
    /// within `ping_idle_after`) is pinged now, and a dead one is dropped and
    /// another taken, since such a write cannot be repeated safely after a
    /// lost connection.
    fn checkout_for(&self, op: Op) -> Result<r2d2::PooledConnection<Manager>> {
        let window = self.shared.options.ping_idle_after;
        let mut tries = self.shared.options.max_connections.max(1) + 1;
        loop {
            let mut conn = self.checkout()?;
            if op.ping_free || !conn.returned_within(window) {
                return Ok(conn);
            }
            match conn.ping() {
                Ok(()) => return Ok(conn),
                Err(e) if tries > 1 => {
                    tracing::warn!(operation = op.name, error = %e, "pooled connection is dead, taking another");
                    tries -= 1;
                }
                Err(e) => {
                    return Err(Error::Connection {
                        url: self.shared.url.redacted(),
                        source: Arc::new(e),
                    })
                }
            }
        }
    }

    /// Applies every pending migration of the embedded set.
    ///
    /// The whole of it (adopting a database made by Nova's migrations, then
    /// the pending migrations) runs under a database-wide lock (see
    /// [`crate::migrations::with_migration_lock`]), so that processes
    /// migrating the same database at once all succeed, one after another.
    pub fn migrate(&self) -> Result<()> {
        let mut conn = self.checkout()?;
        let backend = self.shared.backend;
        let (result, released) =
            crate::migrations::with_migration_lock(&mut conn, &self.shared.options.retry, |conn| {
                crate::schema_check::adopt_nova_schema(conn)?;
                conn.run_pending_migrations(NovaMigrations::new(backend))
                    .map(|applied| applied.iter().map(|v| v.to_string()).collect::<Vec<_>>())
                    .map_err(|e| Error::Migration(e.to_string()))
            });
        if !released {
            // Closing the session releases a lock that could not be.
            conn.mark_dead();
        }
        for v in result? {
            tracing::info!(version = %v, "applied migration");
        }
        Ok(())
    }

    /// Reverts the most recent migration; returns its version.
    ///
    /// Refused on a database that Nova's own migrations manage (its
    /// `alembic_version` table is present): reverting the baseline would drop
    /// Nova's tables and every mapping in them.
    pub fn revert_last_migration(&self) -> Result<String> {
        let mut conn = self.checkout()?;
        let tables = crate::schema_check::table_names(&mut conn)?;
        if tables.iter().any(|t| t == "alembic_version") {
            return Err(Error::Migration(
                "refusing to revert: this nova_api is managed by Nova's migrations \
                 (alembic_version present), reverting would drop its mapping tables"
                    .to_owned(),
            ));
        }
        conn.revert_last_migration(NovaMigrations::new(self.shared.backend))
            .map(|v| v.to_string())
            .map_err(|e| Error::Migration(e.to_string()))
    }

    /// The versions of the migrations applied so far, oldest first.
    pub fn applied_migrations(&self) -> Result<Vec<String>> {
        let mut conn = self.checkout()?;
        let mut v: Vec<String> = conn
            .applied_migrations()
            .map_err(|e| Error::Migration(e.to_string()))?
            .into_iter()
            .map(|v| v.to_string())
            .collect();
        v.sort();
        Ok(v)
    }

    /// Checks, without changing anything, that the three tables exist and have
    /// the shape of SPEC §2; for a service to run at start-up.
    pub fn check_schema(&self) -> Result<()> {
        let mut conn = self.checkout()?;
        crate::schema_check::check(&mut conn)
    }

    /// Runs `f` in one database transaction: everything it does through the
    /// [`Tx`] is committed together, or rolled back when it returns an error.
    ///
    /// On a transient failure (deadlock, serialization failure, SQLite busy)
    /// the whole transaction is rolled back and `f` is run again, as the
    /// retry policy allows; `f` must therefore not have effects outside the
    /// database that cannot be repeated.
    ///
    /// A connection lost before the commit was sent is retried too (the
    /// server rolls back what it had not committed); one lost while
    /// committing is [`Error::OutcomeUnknown`].
    pub fn transaction<T>(&self, mut f: impl FnMut(&mut Tx<'_>) -> Result<T>) -> Result<T> {
        let mut exec = self;
        exec.run(Op::transaction("transaction"), &mut |tx| tx.atomic(&mut f))
    }

    /// Runs `f` with a pooled connection and the retry policy: the door for
    /// the few per-backend operations of this crate (benchmarks, tests).
    #[doc(hidden)]
    pub fn with_connection<T>(&self, f: impl FnOnce(&mut DbConnection) -> Result<T>) -> Result<T> {
        let mut conn = self.checkout()?;
        let r = f(&mut conn);
        if matches!(&r, Err(e) if transience(e) == Transience::ConnectionLost) {
            conn.mark_dead();
        }
        r
    }

    /// Cell mappings (`CellMapping` and `CellMappingList` in Nova).
    pub fn cells(&self) -> crate::CellMappings<&Database> {
        crate::CellMappings::new(self)
    }

    /// Instance mappings (`InstanceMapping` and `InstanceMappingList` in Nova).
    pub fn instance_mappings(&self) -> crate::InstanceMappings<&Database> {
        crate::InstanceMappings::new(self)
    }

    /// Host mappings (`HostMapping` and `HostMappingList` in Nova).
    pub fn host_mappings(&self) -> crate::HostMappings<&Database> {
        crate::HostMappings::new(self)
    }
}

/// How often a caller waiting on the pool checks whether the server is down.
const POOL_POLL: Duration = Duration::from_millis(50);
/// Longest pause between the pool's attempts to reconnect to a server that is down.
const RECONNECT_EVERY: Duration = Duration::from_millis(500);

/// Why no pooled connection came.
enum PoolWait {
    /// An attempt to connect failed while the caller waited: the server is down.
    ServerDown(Arc<crate::connection::ConnectError>),
    /// `connection_timeout` passed.
    TimedOut(r2d2::Error),
}

#[derive(Debug)]
struct LogErrors;

impl r2d2::HandleError<Arc<crate::connection::ConnectError>> for LogErrors {
    fn handle_error(&self, error: Arc<crate::connection::ConnectError>) {
        tracing::warn!(%error, "database connection failed");
    }
}

/// A transaction in progress (see [`Database::transaction`]).
pub struct Tx<'a> {
    pub(crate) conn: &'a mut DbConnection,
    pub(crate) shared: &'a Shared,
    /// What this transaction wrote, for the cache to forget when it ends.
    pub(crate) writes: &'a WriteLog,
    /// The state of this attempt of the operation.
    pub(crate) run: &'a RunState,
}

/// Where a write stands, for telling what a lost connection means.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum WritePhase {
    /// Statements run in autocommit: each may have been committed.
    Autocommit,
    /// Inside an explicit transaction, before its commit: a lost connection
    /// means the server rolled it back.
    BeforeCommit,
    /// The commit was sent: a lost connection leaves the outcome unknown.
    Committing,
}

/// The state of one attempt of an operation on a pooled connection.
pub(crate) struct RunState {
    pub(crate) phase: std::cell::Cell<WritePhase>,
    /// Instance-mapping creates this attempt made (for
    /// [`Error::OutcomeUnknown`]: re-creating finds the row).
    pub(crate) creates: std::cell::RefCell<Vec<crate::models::instance_mapping::PendingCreate>>,
}

impl RunState {
    fn new() -> Self {
        Self {
            phase: std::cell::Cell::new(WritePhase::Autocommit),
            creates: Default::default(),
        }
    }
}

impl<'a> Tx<'a> {
    /// Which engine the transaction runs on.
    pub fn backend(&self) -> BackendKind {
        self.shared.backend
    }

    /// Cell mappings, inside this transaction.
    pub fn cells(&mut self) -> crate::CellMappings<&mut Tx<'a>> {
        crate::CellMappings::new(self)
    }

    /// Instance mappings, inside this transaction.
    pub fn instance_mappings(&mut self) -> crate::InstanceMappings<&mut Tx<'a>> {
        crate::InstanceMappings::new(self)
    }

    /// Host mappings, inside this transaction.
    pub fn host_mappings(&mut self) -> crate::HostMappings<&mut Tx<'a>> {
        crate::HostMappings::new(self)
    }

    /// The current time at the precision this backend stores.
    pub(crate) fn now(&self) -> chrono::NaiveDateTime {
        crate::timestamp::now(self.shared.backend)
    }

    /// Runs `f` atomically: a transaction, or a savepoint inside one. The
    /// outermost one records where the write stands ([`WritePhase`]).
    pub(crate) fn atomic<T>(&mut self, f: impl FnOnce(&mut Tx<'_>) -> Result<T>) -> Result<T> {
        let (shared, writes, run) = (self.shared, self.writes, self.run);
        let outermost = run.phase.get() == WritePhase::Autocommit;
        if outermost {
            run.phase.set(WritePhase::BeforeCommit);
        }
        let r = self.conn.transaction::<T, Error, _>(|conn| {
            let r = f(&mut Tx {
                conn,
                shared,
                writes,
                run,
            });
            if outermost && r.is_ok() {
                run.phase.set(WritePhase::Committing);
            }
            r
        });
        if outermost && r.is_ok() {
            run.phase.set(WritePhase::Autocommit);
        }
        r
    }
}

/// What an operation is, for logs and the retry decision.
#[derive(Debug, Clone, Copy)]
#[doc(hidden)]
pub struct Op {
    /// Name used in logs.
    pub name: &'static str,
    /// Whether the operation only reads (and so may be repeated even after a
    /// lost connection).
    pub read_only: bool,
    /// Whether a write may run on a pooled connection without pinging it
    /// first: either it is [`Op::rerunnable`], or its first statement
    /// (`BEGIN`) proves the connection before anything is written.
    pub ping_free: bool,
    /// Whether the write may simply be run again after its connection was
    /// lost at any point (a keyed update to given values; an instance
    /// mapping create, which then finds its own row).
    pub rerunnable: bool,
}

impl Op {
    /// A read.
    pub const fn read(name: &'static str) -> Self {
        Self {
            name,
            read_only: true,
            ping_free: true,
            rerunnable: true,
        }
    }

    /// A write whose connection is pinged first unless it was used within
    /// `ping_idle_after`, and which is never repeated after a lost connection
    /// unless it is known not to have committed.
    pub const fn write(name: &'static str) -> Self {
        Self {
            name,
            read_only: false,
            ping_free: false,
            rerunnable: false,
        }
    }

    /// A write that may be run again after a lost connection (see
    /// [`Op::rerunnable`]); it needs no ping.
    pub const fn rerunnable_write(name: &'static str) -> Self {
        Self {
            name,
            read_only: false,
            ping_free: true,
            rerunnable: true,
        }
    }

    /// An explicit transaction: its `BEGIN` is its ping (a connection lost
    /// before the commit is retried, the server having rolled back).
    pub const fn transaction(name: &'static str) -> Self {
        Self {
            name,
            read_only: false,
            ping_free: true,
            rerunnable: false,
        }
    }
}

/// Where operations run: the pool (each call on its own connection, with
/// retries) or an open transaction. Implemented for `&Database` and `&mut Tx`.
pub trait Executor {
    /// Runs `f` with a transaction context.
    #[doc(hidden)]
    fn run<T>(&mut self, op: Op, f: &mut dyn FnMut(&mut Tx<'_>) -> Result<T>) -> Result<T>;

    /// The options of the database.
    #[doc(hidden)]
    fn options(&self) -> &Options;

    /// The mapping cache when this executor may use it: never inside a
    /// transaction, which must see (and not publish) its own writes.
    #[doc(hidden)]
    fn mapping_cache(&self) -> Option<&MappingCache>;
}

impl Executor for &Database {
    fn run<T>(&mut self, op: Op, f: &mut dyn FnMut(&mut Tx<'_>) -> Result<T>) -> Result<T> {
        let policy = self.shared.options.retry;
        let mut attempt = 1u32;
        loop {
            // No retry around the checkout: the pool has already waited
            // `connection_timeout` and reconnected as it could.
            let mut conn = self.checkout_for(op)?;
            let writes = WriteLog::default();
            let state = RunState::new();
            let result = f(&mut Tx {
                conn: &mut conn,
                shared: &self.shared,
                writes: &writes,
                run: &state,
            });
            let lost = matches!(&result, Err(e) if transience(e) == Transience::ConnectionLost);
            // A Galera node outside the primary component is as good as
            // gone: reconnect (a load balancer may pick a healthy node).
            if lost || matches!(&result, Err(e) if is_wsrep_not_ready(e)) {
                conn.mark_dead();
            }
            // Back to the pool before any sleep.
            drop(conn);
            // Committed or not, what was written is forgotten by the cache
            // only now that no transaction holds it any more.
            if let Some(cache) = &self.shared.cache {
                cache.apply(&writes.take());
            }
            let err = match result {
                Ok(v) => return Ok(v),
                Err(e) => e,
            };
            // A write that lost its connection: rolled back by the server if
            // the commit was not sent yet, else of unknown outcome (what it
            // tried to create is remembered, for a new attempt to find).
            let phase = state.phase.get();
            let outcome_unknown = lost && !op.read_only && phase != WritePhase::BeforeCommit;
            if outcome_unknown {
                self.shared.uncertain.remember(state.creates.take());
            }
            let retry = match transience(&err) {
                Transience::RolledBack => true,
                Transience::ConnectionLost => {
                    op.read_only || op.rerunnable || phase == WritePhase::BeforeCommit
                }
                Transience::Permanent => false,
            };
            if !retry || attempt >= policy.max_attempts {
                return Err(match err {
                    Error::Database { operation, source } if outcome_unknown => {
                        tracing::error!(operation, error = %source, "connection lost around the commit: outcome unknown");
                        Error::OutcomeUnknown { operation, source }
                    }
                    other => self.outage(other),
                });
            }
            let delay = policy.delay(attempt);
            self.shared.retries.fetch_add(1, Ordering::Relaxed);
            tracing::warn!(
                operation = op.name,
                attempt,
                max_attempts = policy.max_attempts,
                delay_ms = u64::try_from(delay.as_millis()).unwrap_or(u64::MAX),
                error = %err,
                "transient database failure, retrying"
            );
            std::thread::sleep(delay);
            attempt += 1;
        }
    }

    fn options(&self) -> &Options {
        &self.shared.options
    }

    fn mapping_cache(&self) -> Option<&MappingCache> {
        self.shared.cache.as_ref()
    }
}

impl Database {
    /// A Galera node outside the primary component is an outage like a dead
    /// server: reported as [`Error::Connection`], saying so.
    fn outage(&self, err: Error) -> Error {
        match err {
            Error::Database { source, .. } if is_wsrep_not_ready_source(&source) => {
                Error::Connection {
                    url: self.shared.url.redacted(),
                    source: Arc::new(mapping_model::ConnectionFailure::NotPrimary(source)),
                }
            }
            other => other,
        }
    }
}

impl Executor for &mut Tx<'_> {
    fn run<T>(&mut self, _op: Op, f: &mut dyn FnMut(&mut Tx<'_>) -> Result<T>) -> Result<T> {
        f(self)
    }

    fn options(&self) -> &Options {
        &self.shared.options
    }

    fn mapping_cache(&self) -> Option<&MappingCache> {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_grow_and_stay_bounded() {
        let p = RetryPolicy::default();
        for retry in 1..40 {
            let d = p.delay(retry);
            assert!(d <= p.max_delay, "{d:?}");
        }
        let first = p.delay(1);
        assert!(first >= p.base_delay / 2 && first <= p.base_delay);
    }
}
