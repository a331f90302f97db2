//! The [`Database`] handle: a connection pool, the options, retries, and
//! transactions.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use diesel::Connection;
use diesel_migrations::MigrationHarness;
use mapping_model::{Error, Result};

use crate::cache::{CacheStats, MappingCache, WriteLog};
use crate::connection::{DbConnection, Manager, ServerSettings, SqliteSettings};
use crate::errors::{is_wsrep_not_ready, is_wsrep_not_ready_source, transience, Transience};
use crate::migrations::NovaMigrations;
pub use crate::options::{Options, RetryPolicy};
use crate::url::{BackendKind, ConnectionUrl};

mod tx;
pub use tx::{Executor, Op, Tx};

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
    /// Saves whose object was not the stored row (see [`Stats::save_rechecks`]).
    pub(crate) save_rechecks: AtomicU64,
    /// Operations and transactions that wrote cell mappings (see
    /// [`Database::cell_writes`]).
    pub(crate) cell_writes: AtomicU64,
    /// Whether the server takes `INSERT … RETURNING` (MySQL protocol only).
    pub(crate) mysql_returning: crate::models::MysqlReturning,
    pub(crate) cache: Option<MappingCache>,
}

/// Counters of a [`Database`], shared by all its clones (see [`Database::stats`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Stats {
    /// Transient failures (deadlock, serialization failure, lock-wait
    /// timeout, SQLite busy, lost connection on a read) retried so far.
    pub retries: u64,
    /// Instance-mapping saves that took the general path: the object
    /// passed in was not (or could not be proven to be) the stored row, so
    /// the save wrote by key and read the row back, one round trip more.
    /// Steadily rising, it means callers save stale objects.
    pub save_rechecks: u64,
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
    /// Opens the database named by `url` (any form of `ConnectionUrl`) with default options.
    pub fn open(url: &str) -> Result<Self> {
        Self::open_with(url, Options::default())
    }

    /// Opens the database named by `url` with `options`. One connection is
    /// made at once, so a database that is down is reported here.
    ///
    /// A SQLite file is switched to WAL journal mode, which the file keeps:
    /// its other clients (Nova's too) then use WAL as well, which requires
    /// them all to be on the same host.
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
        options.validate()?;
        let cache = MappingCache::from_options(&options)?;
        let url = ConnectionUrl::parse(url).map_err(Error::Url)?;
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
                save_rechecks: AtomicU64::new(0),
                cell_writes: AtomicU64::new(0),
                mysql_returning: Default::default(),
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

    /// See `__private::without_insert_returning`.
    pub(crate) fn forget_insert_returning(&self) {
        self.shared.mysql_returning.set_unsupported();
    }

    /// Counters since the database was opened.
    pub fn stats(&self) -> Stats {
        Stats {
            retries: self.shared.retries.load(Ordering::Relaxed),
            save_rechecks: self.shared.save_rechecks.load(Ordering::Relaxed),
        }
    }

    /// How many operations or transactions through this database (any of
    /// its clones) have changed or deleted cell mappings so far, committed
    /// or not. A holder of cell records (such as `mapping-router`'s cell
    /// list) reads them again when this moves. Writes by other processes
    /// are not counted.
    pub fn cell_writes(&self) -> u64 {
        self.shared.cell_writes.load(Ordering::Acquire)
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
    /// `migrations::with_migration_lock`), so that processes
    /// migrating the same database at once all succeed, one after another.
    pub fn migrate(&self) -> Result<()> {
        let mut conn = self.checkout()?;
        let backend = self.shared.backend;
        let (result, released) =
            crate::migrations::with_migration_lock(&mut conn, &self.shared.options.retry, |conn| {
                crate::schema_check::adopt_nova_schema(conn)?;
                conn.run_pending_migrations(NovaMigrations::new(backend))
                    .map(|applied| applied.iter().map(|v| v.to_string()).collect::<Vec<_>>())
                    .map_err(|e| Error::migration("running the pending migrations", e))
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
            return Err(Error::migration_refused(
                "refusing to revert: this nova_api is managed by Nova's migrations \
                 (alembic_version present), reverting would drop its mapping tables",
            ));
        }
        conn.revert_last_migration(NovaMigrations::new(self.shared.backend))
            .map(|v| v.to_string())
            .map_err(|e| Error::migration("reverting the last migration", e))
    }

    /// The versions of the migrations applied so far, oldest first.
    pub fn applied_migrations(&self) -> Result<Vec<String>> {
        let mut conn = self.checkout()?;
        let mut v: Vec<String> = conn
            .applied_migrations()
            .map_err(|e| Error::migration("reading the applied migrations", e))?
            .into_iter()
            .map(|v| v.to_string())
            .collect();
        v.sort();
        Ok(v)
    }

    /// Checks, without changing anything, that the three tables exist and have
    /// the shape of docs/schema.md; for a service to run at start-up.
    pub fn check_schema(&self) -> Result<()> {
        let mut conn = self.checkout()?;
        crate::schema_check::check(&mut conn)
    }

    /// Runs `f` in one database transaction: everything it does through the
    /// [`Tx`] is committed together, or rolled back when it returns an error.
    ///
    /// `f` may fail with its own error type `E` (anything an [`Error`]
    /// converts into, as in diesel): that error rolls the transaction back
    /// and is returned as it is. A failed statement inside (a duplicate, a
    /// missing cell) is undone alone (a savepoint), so `f` may handle the
    /// error and carry on, on every backend.
    ///
    /// On a transient failure (deadlock, serialization failure, SQLite busy)
    /// the whole transaction is rolled back and `f` is run again, as the
    /// retry policy allows; `f` must therefore not have effects outside the
    /// database that cannot be repeated. A transient failure seen by an
    /// operation inside `f` counts even when `f` turned it into its own error.
    ///
    /// A connection lost before the commit was sent is retried too (the
    /// server rolls back what it had not committed); one lost while
    /// committing is [`Error::OutcomeUnknown`].
    ///
    /// As with diesel, the error type usually needs naming:
    /// `db.transaction::<_, Error, _>(|tx| ...)` or a typed `let`.
    ///
    /// ```
    /// # use mapping_diesel::{Database, Error};
    /// # use mapping_model::NewInstanceMapping;
    /// #[derive(Debug)]
    /// enum AppError { Db(Error), Quota }
    /// impl From<Error> for AppError { fn from(e: Error) -> Self { AppError::Db(e) } }
    ///
    /// let db = Database::open("sqlite://")?;
    /// db.migrate()?;
    /// let uuid = "0b9f4a36-59b8-4b8e-bf0b-4e1c9f6d2a10";
    /// let r: Result<(), AppError> = db.transaction(|tx| {
    ///     tx.instance_mappings().create(NewInstanceMapping::new(uuid, "p", "u"))?;
    ///     Err(AppError::Quota) // rolls back
    /// });
    /// assert!(matches!(r, Err(AppError::Quota)));
    /// assert!(db.instance_mappings().get_by_instance_uuid(uuid).is_err());
    /// # Ok::<(), Error>(())
    /// ```
    pub fn transaction<T, E, F>(&self, mut f: F) -> Result<T, E>
    where
        E: From<Error>,
        F: FnMut(&mut Tx<'_>) -> Result<T, E>,
    {
        let mut exec = self;
        let mut caller_error: Option<E> = None;
        let outcome = exec.run(Op::transaction("transaction"), &mut |tx| {
            caller_error = None;
            let transient = std::cell::Cell::new(Transience::Permanent);
            let mut outer = Tx {
                conn: &mut *tx.conn,
                shared: tx.shared,
                writes: tx.writes,
                run: tx.run,
                transient: &transient,
            };
            let url = &tx.shared.url;
            outer.atomic(|inner| {
                f(inner).map_err(|e| {
                    caller_error = Some(e);
                    match transient.get() {
                        // Retried by `run`, as the failure inside was.
                        Transience::RolledBack => Error::Database {
                            operation: "transaction",
                            source: diesel::result::Error::DatabaseError(
                                diesel::result::DatabaseErrorKind::SerializationFailure,
                                Box::new(
                                    "a statement of the transaction was rolled back by the server"
                                        .to_owned(),
                                ),
                            ),
                        },
                        // Before the commit: the server rolled back, `run`
                        // runs the transaction again on a new connection.
                        Transience::ConnectionLost => Error::Connection {
                            url: url.redacted(),
                            source: Arc::new(mapping_model::ConnectionFailure::Dead(
                                diesel::result::Error::DatabaseError(
                                    diesel::result::DatabaseErrorKind::ClosedConnection,
                                    Box::new(
                                        "the connection was lost inside the transaction".to_owned(),
                                    ),
                                ),
                            )),
                        },
                        Transience::Permanent => Error::InvalidInput {
                            field: "transaction",
                            reason: "rolled back by the caller".into(),
                        },
                    }
                })
            })
        });
        outcome.map_err(|e| caller_error.take().unwrap_or_else(|| E::from(e)))
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
