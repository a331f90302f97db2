//! One connection type for every compiled-in backend (diesel's
//! `MultiConnection`), and the r2d2 manager that opens it from a
//! [`ConnectionUrl`].

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use diesel::connection::SimpleConnection;
use diesel::prelude::*;
use mapping_model::ConnectionFailure;

use crate::url::{percent_decode_lossy, BackendKind, ConnectionUrl};

macro_rules! define_connection {
    ($($(#[$doc:meta])* $variant:ident($ty:ty)),+ $(,)?) => {
        /// A connection to any backend compiled into this build.
        ///
        /// Match on it only for the few per-backend escape hatches; everything
        /// else goes through diesel's shared query builder.
        #[derive(diesel::MultiConnection)]
        pub enum DbConnection {
            $($(#[$doc])* $variant($ty),)+
        }
    };
}

#[cfg(all(feature = "postgres", feature = "mysql"))]
define_connection!(
    /// PostgreSQL.
    Postgres(diesel::PgConnection),
    /// MySQL or MariaDB.
    Mysql(diesel::MysqlConnection),
    /// SQLite.
    Sqlite(diesel::SqliteConnection),
);
#[cfg(all(feature = "postgres", not(feature = "mysql")))]
define_connection!(
    /// PostgreSQL.
    Postgres(diesel::PgConnection),
    /// SQLite.
    Sqlite(diesel::SqliteConnection),
);
#[cfg(all(not(feature = "postgres"), feature = "mysql"))]
define_connection!(
    /// MySQL or MariaDB.
    Mysql(diesel::MysqlConnection),
    /// SQLite.
    Sqlite(diesel::SqliteConnection),
);
#[cfg(all(not(feature = "postgres"), not(feature = "mysql")))]
define_connection!(
    /// SQLite.
    Sqlite(diesel::SqliteConnection),
);

impl DbConnection {
    /// Which engine this connection talks to.
    pub fn backend(&self) -> BackendKind {
        match self {
            #[cfg(feature = "postgres")]
            DbConnection::Postgres(_) => BackendKind::Postgres,
            #[cfg(feature = "mysql")]
            DbConnection::Mysql(_) => BackendKind::Mysql,
            DbConnection::Sqlite(_) => BackendKind::Sqlite,
        }
    }
}

/// Settings applied to every new SQLite connection.
#[derive(Debug, Clone, Copy)]
pub struct SqliteSettings {
    /// How long a statement waits for a lock held by another connection.
    pub busy_timeout: Duration,
    /// `PRAGMA mmap_size` of a file database (bytes; 0 = no memory mapping).
    pub mmap_size: u64,
}

/// A connection held by the pool, with the time it was last given back.
pub struct PooledConn {
    conn: DbConnection,
    returned: Instant,
    /// Set when a ping failed: the pool drops the connection when it is given back.
    dead: bool,
}

impl PooledConn {
    /// Whether the connection went back to the pool less than `window` ago
    /// (and so was not pinged at checkout).
    pub(crate) fn returned_within(&self, window: Duration) -> bool {
        self.returned.elapsed() < window
    }

    /// Marks the connection dead (it lost its server): the pool drops it
    /// when it is given back, instead of handing it out again.
    pub(crate) fn mark_dead(&mut self) {
        self.dead = true;
    }

    /// Pings the connection; a failure marks it dead, for the pool to drop.
    pub(crate) fn ping(&mut self) -> Result<(), ConnectError> {
        use diesel::r2d2::R2D2Connection;
        let r = self.conn.ping().map_err(ConnectionFailure::Dead);
        self.dead = r.is_err();
        r
    }
}

impl std::ops::Deref for PooledConn {
    type Target = DbConnection;
    fn deref(&self) -> &DbConnection {
        &self.conn
    }
}

impl std::ops::DerefMut for PooledConn {
    fn deref_mut(&mut self) -> &mut DbConnection {
        &mut self.conn
    }
}

/// Why a connection could not be opened or kept (never holds a password).
pub type ConnectError = ConnectionFailure;

/// Settings applied to every new PostgreSQL or MySQL connection.
#[derive(Debug, Clone, Copy)]
pub struct ServerSettings {
    /// How long opening one connection may take, handshake included; a
    /// `connect_timeout` in the URL (seconds) takes precedence.
    pub connect_timeout: Duration,
    /// MySQL/MariaDB only: `SET SESSION wsrep_sync_wait = n` on every new
    /// connection (Galera read-your-writes); `None` leaves the server's value.
    #[cfg_attr(not(feature = "mysql"), allow(dead_code))]
    pub wsrep_sync_wait: Option<u8>,
}

impl Default for ServerSettings {
    fn default() -> Self {
        Self {
            connect_timeout: Duration::from_secs(5),
            wsrep_sync_wait: None,
        }
    }
}

/// The outcome of the latest attempt to open a connection, shared by the
/// pool's manager (which records it) and the callers waiting on the pool
/// (which give up at once when the server is known to be down). Unlike the
/// pool's last error, it is not consumed by the first caller to read it:
/// every caller waiting through one outage gets the same error.
#[derive(Debug, Default)]
pub struct ConnectHealth {
    last: Mutex<Option<(Instant, Option<Arc<ConnectionFailure>>)>>,
}

impl ConnectHealth {
    fn record(&self, error: Option<Arc<ConnectionFailure>>) {
        let mut last = self.last.lock().unwrap_or_else(|p| p.into_inner());
        *last = Some((Instant::now(), error));
    }

    /// The error of the latest attempt to connect, if it failed at or after
    /// `since` (and none succeeded after it).
    pub fn failed_since(&self, since: Instant) -> Option<Arc<ConnectionFailure>> {
        let last = self.last.lock().unwrap_or_else(|p| p.into_inner());
        match &*last {
            Some((at, Some(error))) if *at >= since => Some(Arc::clone(error)),
            _ => None,
        }
    }
}

/// The life of an in-memory SQLite database: its one connection is opened
/// once; should the pool ever drop it, the database is lost and the pool
/// must not open a fresh, empty one in its place.
#[derive(Debug, Default)]
struct MemoryState {
    opened: AtomicBool,
    lost: AtomicBool,
}

/// Opens connections for the pool.
#[derive(Debug, Clone)]
pub struct Manager {
    url: ConnectionUrl,
    sqlite: SqliteSettings,
    ping_idle_after: Duration,
    /// The last failure to open or keep a connection, typed (r2d2 keeps only
    /// its text); cleared when a connection opens.
    last_error: Arc<Mutex<Option<Arc<ConnectionFailure>>>>,
    memory: Option<Arc<MemoryState>>,
    /// Whether the server-locale warning was logged (MySQL-like only).
    #[cfg_attr(not(feature = "mysql"), allow(dead_code))]
    warned_locale: Arc<AtomicBool>,
    server: ServerSettings,
    health: Arc<ConnectHealth>,
}

impl Manager {
    /// A manager for `url`. A connection idle in the pool for longer than
    /// `ping_idle_after` is pinged before it is handed out again.
    pub fn new(url: ConnectionUrl, sqlite: SqliteSettings, ping_idle_after: Duration) -> Self {
        let memory = url.is_sqlite_memory().then(Arc::default);
        Self {
            url,
            sqlite,
            ping_idle_after,
            last_error: Arc::default(),
            memory,
            warned_locale: Arc::default(),
            server: ServerSettings::default(),
            health: Arc::default(),
        }
    }

    /// The same manager with `server` applied to PostgreSQL and MySQL connections.
    pub fn with_server_settings(mut self, server: ServerSettings) -> Self {
        self.server = server;
        self
    }

    /// The record of attempts to connect, shared with the pool's callers.
    pub fn health(&self) -> Arc<ConnectHealth> {
        Arc::clone(&self.health)
    }

    /// The connect timeout in force: the URL's `connect_timeout` (whole
    /// seconds, as libpq and PyMySQL read it) when present and positive,
    /// else [`ServerSettings::connect_timeout`].
    pub fn connect_timeout(&self) -> Duration {
        url_connect_timeout(self.url.diesel_url()).unwrap_or(self.server.connect_timeout)
    }

    /// Removes the password of the URL from a driver message, in case the
    /// driver echoed it.
    fn scrub(&self, message: String) -> String {
        scrub_password(self.url.diesel_url(), message)
    }

    /// The driver's connection error with any password removed.
    fn establish_error(&self, e: diesel::ConnectionError) -> ConnectionFailure {
        use diesel::ConnectionError as E;
        ConnectionFailure::Establish(match e {
            E::BadConnection(m) => E::BadConnection(self.scrub(m)),
            E::InvalidConnectionUrl(m) => E::InvalidConnectionUrl(self.scrub(m)),
            other => other,
        })
    }

    /// Takes the last connection failure, if the pool's last attempt failed.
    pub(crate) fn take_last_error(&self) -> Option<Arc<ConnectionFailure>> {
        self.last_error.lock().ok().and_then(|mut e| e.take())
    }

    fn note_error(&self, e: &Arc<ConnectionFailure>) {
        if let Ok(mut slot) = self.last_error.lock() {
            *slot = Some(Arc::clone(e));
        }
    }

    /// Why the in-memory database is gone, if it is.
    pub(crate) fn memory_lost(&self) -> Option<ConnectionFailure> {
        let m = self.memory.as_ref()?;
        m.lost
            .load(Ordering::Acquire)
            .then_some(ConnectionFailure::MemoryDatabaseLost {
                reason: "its only connection was dropped; its data is gone",
            })
    }

    /// Opens one connection.
    /// Opens one connection and sets up its session (see [`session_setup`]).
    pub fn open(&self) -> Result<DbConnection, ConnectError> {
        let target = self.url.diesel_url();
        let conn = match self.url.backend() {
            BackendKind::Sqlite => {
                let mut c = diesel::SqliteConnection::establish(target)
                    .map_err(|e| self.establish_error(e))?;
                let mut pragmas = format!(
                    "PRAGMA foreign_keys = ON; PRAGMA busy_timeout = {};",
                    self.sqlite.busy_timeout.as_millis().min(i32::MAX as u128)
                );
                if !self.url.is_sqlite_memory() {
                    pragmas.push_str(&format!(
                        " PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL; PRAGMA mmap_size = {};",
                        self.sqlite.mmap_size
                    ));
                }
                c.batch_execute(&pragmas)
                    .map_err(ConnectionFailure::Setup)?;
                DbConnection::Sqlite(c)
            }
            #[cfg(feature = "postgres")]
            BackendKind::Postgres => {
                // libpq's own timeout too, so that a connection given up on
                // here does not linger in its thread.
                let target = if url_connect_timeout(target).is_some() {
                    target.to_owned()
                } else {
                    let secs = self.connect_timeout().as_secs_f64().ceil().max(1.0) as u64;
                    let sep = if target.contains('?') { '&' } else { '?' };
                    format!("{target}{sep}connect_timeout={secs}")
                };
                // No session setup: failures are told by their SQLSTATE,
                // whatever language the server answers in.
                let c = self.bounded(move || {
                    diesel::PgConnection::establish(&target).map_err(ConnectionFailure::Establish)
                })?;
                DbConnection::Postgres(c)
            }
            #[cfg(feature = "mysql")]
            BackendKind::Mysql => {
                let target = target.to_owned();
                let warned = Arc::clone(&self.warned_locale);
                let sync_wait = self.server.wsrep_sync_wait;
                let c = self.bounded(move || {
                    let mut c = diesel::MysqlConnection::establish(&target)
                        .map_err(ConnectionFailure::Establish)?;
                    session_setup::mysql(&mut c, &warned);
                    if let Some(n) = sync_wait {
                        c.batch_execute(&format!("SET SESSION wsrep_sync_wait = {n}"))
                            .map_err(ConnectionFailure::Setup)?;
                    }
                    Ok(c)
                })?;
                DbConnection::Mysql(c)
            }
            #[allow(unreachable_patterns)]
            other => {
                return Err(ConnectionFailure::NotCompiled {
                    backend: match other {
                        BackendKind::Postgres => "PostgreSQL",
                        BackendKind::Mysql => "MySQL",
                        BackendKind::Sqlite => "SQLite",
                    },
                })
            }
        };
        Ok(conn)
    }
}

impl Manager {
    /// Runs `establish` on a thread of its own and waits for it at most the
    /// connect timeout: the drivers cannot bound every step of a connection
    /// themselves (diesel's MySQL connection has no connect timeout, and a
    /// server that accepts but never answers stalls the handshake). A
    /// connection that arrives too late is closed by that thread.
    #[allow(dead_code)] // unused when no server backend is compiled in
    fn bounded<C: Send + 'static>(
        &self,
        establish: impl FnOnce() -> Result<C, ConnectionFailure> + Send + 'static,
    ) -> Result<C, ConnectionFailure> {
        let timeout = self.connect_timeout();
        let (tx, rx) = std::sync::mpsc::sync_channel(1);
        std::thread::Builder::new()
            .name("mapping-connect".into())
            .spawn(move || {
                // The receiver is gone when the caller gave up: the
                // connection is then dropped (closed) here.
                let _ = tx.send(establish());
            })
            .map_err(|e| {
                ConnectionFailure::Establish(diesel::ConnectionError::BadConnection(format!(
                    "cannot start a connect thread: {e}"
                )))
            })?;
        match rx.recv_timeout(timeout) {
            Ok(Ok(c)) => Ok(c),
            Ok(Err(ConnectionFailure::Establish(e))) => Err(self.establish_error(e)),
            Ok(Err(e)) => Err(e),
            Err(_) => Err(ConnectionFailure::TimedOut { after: timeout }),
        }
    }
}

/// The `connect_timeout` query value of a PostgreSQL or MySQL URL (whole
/// seconds; absent, unparsable or zero gives `None`).
fn url_connect_timeout(url: &str) -> Option<Duration> {
    let (_, query) = url.split_once('?')?;
    query
        .split('&')
        .filter_map(|piece| piece.split_once('='))
        .filter(|(k, _)| *k == "connect_timeout")
        .filter_map(|(_, v)| v.trim().parse::<u64>().ok())
        .next_back()
        .filter(|secs| *secs > 0)
        .map(Duration::from_secs)
}

impl r2d2::ManageConnection for Manager {
    type Connection = PooledConn;
    type Error = Arc<ConnectError>;

    fn connect(&self) -> Result<PooledConn, Arc<ConnectError>> {
        if let Some(m) = &self.memory {
            // A second connection would be a second, empty database.
            if m.opened.swap(true, Ordering::AcqRel) {
                m.lost.store(true, Ordering::Release);
                let e = Arc::new(ConnectionFailure::MemoryDatabaseLost {
                    reason: "its only connection was dropped; its data is gone",
                });
                self.note_error(&e);
                return Err(e);
            }
        }
        match self.open() {
            Ok(conn) => {
                self.health.record(None);
                if let Ok(mut slot) = self.last_error.lock() {
                    *slot = None;
                }
                Ok(PooledConn {
                    conn,
                    returned: Instant::now(),
                    dead: false,
                })
            }
            Err(e) => {
                let e = Arc::new(e);
                self.health.record(Some(Arc::clone(&e)));
                self.note_error(&e);
                Err(e)
            }
        }
    }

    /// Pings a connection that sat idle longer than `ping_idle_after`; one
    /// given back more recently was working a moment ago and is handed out
    /// as is (the round trip of a ping would double the cost of a lookup).
    /// Should it have died meanwhile, the operation fails instead: a read is
    /// retried on another connection, a write reports what is known of its
    /// outcome (see `Database`).
    fn is_valid(&self, conn: &mut PooledConn) -> Result<(), Arc<ConnectError>> {
        if conn.returned_within(self.ping_idle_after) {
            return Ok(());
        }
        conn.ping().map_err(|e| {
            let e = Arc::new(e);
            self.note_error(&e);
            e
        })
    }

    /// Called as a connection goes back to the pool: also notes the time.
    /// The one connection of an in-memory SQLite database is never dropped
    /// for a transaction left open (a panic in a caller's closure): it is
    /// rolled back and kept, since dropping it would drop the database.
    fn has_broken(&self, conn: &mut PooledConn) -> bool {
        use diesel::r2d2::R2D2Connection;
        conn.returned = Instant::now();
        if self.memory.is_some() && !conn.dead {
            if conn.conn.is_broken() {
                reset_sqlite_transaction(&mut conn.conn);
            }
            let broken = conn.conn.is_broken();
            if broken {
                tracing::error!(
                    "the in-memory SQLite connection cannot be reset: its data is lost"
                );
            }
            return broken;
        }
        conn.dead || conn.conn.is_broken()
    }
}

/// Rolls back whatever transaction a SQLite connection has open and resets
/// diesel's record of it (after a panic inside a transaction closure).
// With SQLite alone compiled in, the pattern always matches.
#[allow(irrefutable_let_patterns)]
fn reset_sqlite_transaction(conn: &mut DbConnection) {
    use diesel::connection::{AnsiTransactionManager, TransactionManager};
    if let DbConnection::Sqlite(c) = conn {
        // Fails harmlessly when no transaction is open.
        let _ = c.batch_execute("ROLLBACK");
        *<AnsiTransactionManager as TransactionManager<diesel::SqliteConnection>>::transaction_manager_status_mut(c) =
            Default::default();
        tracing::warn!("rolled back a transaction left open on the in-memory SQLite connection");
    }
}

/// What every new MySQL/MariaDB connection runs once: pin the language of
/// server messages. PostgreSQL needs nothing: its failures are told by
/// their SQLSTATE, which diesel hands over; a MySQL-like server's error
/// number is not handed over, and its SQLSTATE is too coarse for a
/// lock-wait timeout (HY000) or Galera's "node not ready" (08S01, shared
/// with a server shutdown), so those are told by their English text.
mod session_setup {
    #[allow(unused_imports)]
    use super::*;

    /// `SET SESSION lc_messages = 'en_US'` (any user may).
    #[cfg(feature = "mysql")]
    pub(super) fn mysql(c: &mut diesel::MysqlConnection, warned: &AtomicBool) {
        if let Err(e) = c.batch_execute("SET SESSION lc_messages = 'en_US'") {
            if !warned.swap(true, Ordering::Relaxed) {
                tracing::warn!(error = %e, "could not pin lc_messages to en_US: deadlocks and lock-wait timeouts reported in another language will not be retried");
            }
        }
    }
}

/// Replaces every occurrence of the password of `url` (raw or
/// percent-decoded) in `message` with `***`.
pub(crate) fn scrub_password(url: &str, message: String) -> String {
    let Some((_, rest)) = url.split_once("://") else {
        return message;
    };
    let netloc = rest.split(['/', '?', '#']).next().unwrap_or("");
    let Some((userinfo, _)) = netloc.rsplit_once('@') else {
        return message;
    };
    let Some((_, password)) = userinfo.split_once(':') else {
        return message;
    };
    let mut out = message;
    for candidate in [password.to_owned(), percent_decode_lossy(password)] {
        if !candidate.is_empty() {
            out = out.replace(&candidate, "***");
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connect_timeout_comes_from_the_url_or_the_settings() {
        assert_eq!(
            url_connect_timeout("mysql://u@h/db?ssl_mode=required&connect_timeout=7"),
            Some(Duration::from_secs(7))
        );
        assert_eq!(
            url_connect_timeout("postgres://u@h/db?connect_timeout=0"),
            None
        );
        assert_eq!(
            url_connect_timeout("postgres://u@h/db?connect_timeout=x"),
            None
        );
        assert_eq!(url_connect_timeout("postgres://u@h/db"), None);
        let m = |url: &str| {
            Manager::new(
                ConnectionUrl::parse(url).unwrap(),
                SqliteSettings {
                    busy_timeout: Duration::ZERO,
                    mmap_size: 0,
                },
                Duration::ZERO,
            )
            .with_server_settings(ServerSettings {
                connect_timeout: Duration::from_millis(1500),
                wsrep_sync_wait: None,
            })
        };
        assert_eq!(
            m("mysql+pymysql://u@h/db?connect_timeout=2").connect_timeout(),
            Duration::from_secs(2)
        );
        assert_eq!(
            m("mysql://u@h/db").connect_timeout(),
            Duration::from_millis(1500)
        );
    }

    #[test]
    fn health_reports_only_failures_since_the_wait_began() {
        let h = ConnectHealth::default();
        let before = Instant::now();
        assert!(h.failed_since(before).is_none());
        h.record(Some(Arc::new(ConnectionFailure::TimedOut {
            after: Duration::from_secs(1),
        })));
        assert!(h.failed_since(before).is_some());
        let later = Instant::now() + Duration::from_secs(1);
        assert!(h.failed_since(later).is_none());
        h.record(None);
        assert!(h.failed_since(before).is_none());
    }

    #[test]
    fn scrub_removes_raw_and_decoded_password() {
        let url = "postgres://nova:s3cr%40t@db/nova_api";
        let msg = "auth failed for nova with s3cr@t and s3cr%40t".to_owned();
        let out = scrub_password(url, msg);
        assert!(!out.contains("s3cr"), "{out}");
        assert_eq!(scrub_password("sqlite://", "x".into()), "x");
        assert_eq!(scrub_password("mysql://root@h/db", "root".into()), "root");
    }
}
