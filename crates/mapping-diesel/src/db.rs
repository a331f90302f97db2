//! The [`Database`] handle: a connection pool, the options, retries, and
//! transactions.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

use diesel::Connection;
use diesel_migrations::MigrationHarness;
use mapping_model::{Error, Result};

use crate::cache::{CacheStats, MappingCache, WriteLog};
use crate::connection::{DbConnection, Manager, SqliteSettings};
use crate::errors::{transience, Transience};
use crate::migrations::NovaMigrations;
pub use crate::options::{Options, RetryPolicy};
use crate::url::{BackendKind, ConnectionUrl};

pub(crate) struct Shared {
    pool: r2d2::Pool<Manager>,
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
        options.validate()?;
        let url = ConnectionUrl::parse(url).map_err(|e| Error::Url(e.to_string()))?;
        let backend = url.backend();
        let manager = Manager::new(
            url.clone(),
            SqliteSettings {
                busy_timeout: options.sqlite_busy_timeout,
                mmap_size: options.sqlite_mmap_size,
            },
            options.ping_idle_after,
        );
        let first = manager.open().map_err(|e| Error::Connection {
            url: url.redacted(),
            message: e.to_string(),
        })?;
        let memory = url.is_sqlite_memory();
        let mut builder = r2d2::Pool::builder()
            .max_size(if memory {
                1
            } else {
                options.max_connections.max(1)
            })
            .min_idle(Some(0))
            .connection_timeout(options.connection_timeout)
            .error_handler(Box::new(LogErrors));
        if memory {
            builder = builder.idle_timeout(None).max_lifetime(None);
        }
        drop(first);
        let pool = if memory {
            // Each in-memory connection is its own database: keep one forever.
            builder
                .min_idle(Some(1))
                .build(manager)
                .map_err(|e| Error::Connection {
                    url: url.redacted(),
                    message: e.to_string(),
                })?
        } else {
            builder.build_unchecked(manager)
        };
        tracing::debug!(url = %url.redacted(), ?backend, "opened database");
        Ok(Self {
            shared: Arc::new(Shared {
                pool,
                url,
                backend,
                cache: options.cache.map(MappingCache::new),
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

    /// Hits, misses and size of the mapping cache, or `None` when the cache
    /// is off (see [`Options::cache`]).
    pub fn cache_stats(&self) -> Option<CacheStats> {
        self.shared.cache.as_ref().map(MappingCache::stats)
    }

    /// Empties the mapping cache (a no-op when it is off), e.g. after
    /// changing the database behind this handle's back.
    pub fn clear_cache(&self) {
        if let Some(c) = &self.shared.cache {
            c.clear();
        }
    }

    /// Takes a connection from the pool, which waits up to
    /// `connection_timeout` and reconnects as needed. Fails with
    /// [`Error::Connection`] when the last attempt to connect failed (the
    /// server is down), else with [`Error::PoolTimeout`] (every connection
    /// stayed busy).
    fn checkout(&self) -> Result<r2d2::PooledConnection<Manager>> {
        let start = Instant::now();
        self.shared.pool.get().map_err(|e| {
            tracing::warn!(error = %e, "no database connection available");
            // r2d2 only exposes its last connection error through Display:
            // "timed out waiting for connection[: <error>]". The error comes
            // from `Manager`, which scrubs passwords.
            let text = e.to_string();
            match text.split_once(": ") {
                Some((_, message)) if !message.is_empty() => Error::Connection {
                    url: self.shared.url.redacted(),
                    message: message.to_owned(),
                },
                _ => Error::PoolTimeout {
                    waited_ms: u64::try_from(start.elapsed().as_millis()).unwrap_or(u64::MAX),
                },
            }
        })
    }

    /// Takes a connection for `op`. A write gets a connection known to be
    /// alive: one not pinged at checkout (used within `ping_idle_after`) is
    /// pinged now, and a dead one is dropped and another taken, since a
    /// write that fails on a lost connection cannot safely be repeated.
    fn checkout_for(&self, op: Op) -> Result<r2d2::PooledConnection<Manager>> {
        let window = self.shared.options.ping_idle_after;
        let mut tries = self.shared.options.max_connections.max(1) + 1;
        loop {
            let mut conn = self.checkout()?;
            if op.read_only || !conn.returned_within(window) {
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
                        message: e.to_string(),
                    })
                }
            }
        }
    }

    /// Applies every pending migration of the embedded set.
    pub fn migrate(&self) -> Result<()> {
        let mut conn = self.checkout()?;
        crate::schema_check::adopt_nova_schema(&mut conn)?;
        let applied = conn
            .run_pending_migrations(NovaMigrations::new(self.shared.backend))
            .map_err(|e| Error::Migration(e.to_string()))?;
        for v in applied {
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
        let outcome = exec.run(Op::write("transaction"), &mut |tx| {
            caller_error = None;
            let (shared, writes) = (tx.shared, tx.writes);
            let transient = std::cell::Cell::new(false);
            tx.conn.transaction::<T, Error, _>(|conn| {
                let mut inner = Tx {
                    conn,
                    shared,
                    writes,
                    transient: &transient,
                };
                f(&mut inner).map_err(|e| {
                    caller_error = Some(e);
                    if transient.get() {
                        // Retried by `run`, as the failure inside was.
                        Error::Database {
                            operation: "transaction",
                            source: diesel::result::Error::DatabaseError(
                                diesel::result::DatabaseErrorKind::SerializationFailure,
                                Box::new(
                                    "a statement of the transaction was rolled back by the server"
                                        .to_owned(),
                                ),
                            ),
                        }
                    } else {
                        Error::InvalidInput {
                            field: "transaction",
                            reason: "rolled back by the caller".into(),
                        }
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
        f(&mut conn)
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

#[derive(Debug)]
struct LogErrors;

impl r2d2::HandleError<crate::connection::ConnectError> for LogErrors {
    fn handle_error(&self, error: crate::connection::ConnectError) {
        tracing::warn!(%error, "database connection failed");
    }
}

/// A transaction in progress (see [`Database::transaction`]).
pub struct Tx<'a> {
    pub(crate) conn: &'a mut DbConnection,
    pub(crate) shared: &'a Shared,
    /// What this transaction wrote, for the cache to forget when it ends.
    pub(crate) writes: &'a WriteLog,
    /// Set when an operation inside failed transiently (the server rolled
    /// back), so the whole transaction is retried whatever `f` returns.
    pub(crate) transient: &'a std::cell::Cell<bool>,
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

    /// Runs `f` atomically: a transaction, or a savepoint inside one.
    pub(crate) fn atomic<T>(&mut self, f: impl FnOnce(&mut Tx<'_>) -> Result<T>) -> Result<T> {
        let (shared, writes, transient) = (self.shared, self.writes, self.transient);
        self.conn.transaction::<T, Error, _>(|conn| {
            f(&mut Tx {
                conn,
                shared,
                writes,
                transient,
            })
        })
    }

    /// Whether a transaction is open on the connection.
    fn in_transaction(&mut self) -> bool {
        use diesel::connection::TransactionManager;
        <DbConnection as Connection>::TransactionManager::transaction_manager_status_mut(self.conn)
            .transaction_depth()
            .ok()
            .flatten()
            .is_some()
    }

    /// Runs `f`, which may fail on a constraint, so that its failure leaves
    /// an open transaction usable: inside a transaction it runs in a
    /// savepoint (PostgreSQL refuses every further statement of a
    /// transaction after a failed one); outside, as it is.
    pub(crate) fn guarded<T>(&mut self, f: impl FnOnce(&mut Tx<'_>) -> Result<T>) -> Result<T> {
        if self.in_transaction() {
            self.atomic(f)
        } else {
            f(self)
        }
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
}

impl Op {
    /// A read.
    pub const fn read(name: &'static str) -> Self {
        Self {
            name,
            read_only: true,
        }
    }

    /// A write.
    pub const fn write(name: &'static str) -> Self {
        Self {
            name,
            read_only: false,
        }
    }
}

mod sealed {
    pub trait Sealed {}
    impl Sealed for &super::Database {}
    impl Sealed for &mut super::Tx<'_> {}
}

/// Where operations run: the pool (each call on its own connection, with
/// retries) or an open transaction. Implemented for `&Database` and `&mut Tx`
/// only (sealed).
pub trait Executor: sealed::Sealed {
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
            let transient = std::cell::Cell::new(false);
            let result = f(&mut Tx {
                conn: &mut conn,
                shared: &self.shared,
                writes: &writes,
                transient: &transient,
            });
            if matches!(&result, Err(e) if transience(e) == Transience::ConnectionLost) {
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
            let retry = match transience(&err) {
                Transience::RolledBack => true,
                Transience::ConnectionLost => op.read_only,
                Transience::Permanent => false,
            };
            if !retry || attempt >= policy.max_attempts {
                return Err(err);
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

impl Executor for &mut Tx<'_> {
    fn run<T>(&mut self, _op: Op, f: &mut dyn FnMut(&mut Tx<'_>) -> Result<T>) -> Result<T> {
        let result = f(self);
        if matches!(&result, Err(e) if transience(e) == Transience::RolledBack) {
            self.transient.set(true);
        }
        result
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
