//! One connection type for every compiled-in backend (diesel's
//! `MultiConnection`), and the r2d2 manager that opens it from a
//! [`ConnectionUrl`].

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use diesel::connection::SimpleConnection;
use diesel::prelude::*;

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
        let r = self
            .conn
            .ping()
            .map_err(|e| ConnectError::Driver(e.to_string()));
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

/// Settings applied to every new PostgreSQL or MySQL connection.
#[derive(Debug, Clone, Copy)]
pub struct ServerSettings {
    /// How long opening one connection may take, handshake included; a
    /// `connect_timeout` in the URL (seconds) takes precedence.
    pub connect_timeout: Duration,
    /// MySQL/MariaDB only: `SET SESSION wsrep_sync_wait = n` on every new
    /// connection (Galera read-your-writes); `None` leaves the server's value.
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
/// (which give up at once when the server is known to be down).
#[derive(Debug, Default)]
pub struct ConnectHealth {
    last: Mutex<Option<(Instant, Option<String>)>>,
}

impl ConnectHealth {
    fn record(&self, error: Option<String>) {
        let mut last = self.last.lock().unwrap_or_else(|p| p.into_inner());
        *last = Some((Instant::now(), error));
    }

    /// The error of the latest attempt to connect, if it failed at or after
    /// `since` (and none succeeded after it).
    pub fn failed_since(&self, since: Instant) -> Option<String> {
        let last = self.last.lock().unwrap_or_else(|p| p.into_inner());
        match &*last {
            Some((at, Some(error))) if *at >= since => Some(error.clone()),
            _ => None,
        }
    }
}

/// Opens connections for the pool.
#[derive(Debug, Clone)]
pub struct Manager {
    url: ConnectionUrl,
    sqlite: SqliteSettings,
    ping_idle_after: Duration,
    server: ServerSettings,
    health: Arc<ConnectHealth>,
}

/// Why a connection could not be opened (the message never holds a password).
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    /// The backend is not compiled into this build.
    #[error("{0:?} support is not compiled in (enable the cargo feature)")]
    NotCompiled(BackendKind),
    /// The driver refused or failed.
    #[error("{0}")]
    Driver(String),
    /// The server did not answer within the connect timeout.
    #[error("no connection within the connect timeout of {0:?}")]
    TimedOut(Duration),
}

impl Manager {
    /// A manager for `url`. A connection idle in the pool for longer than
    /// `ping_idle_after` is pinged before it is handed out again.
    pub fn new(url: ConnectionUrl, sqlite: SqliteSettings, ping_idle_after: Duration) -> Self {
        Self {
            url,
            sqlite,
            ping_idle_after,
            server: ServerSettings::default(),
            health: Arc::default(),
        }
    }

    /// The same manager with `server` applied to PostgreSQL and MySQL connections.
    pub fn with_server_settings(mut self, server: ServerSettings) -> Self {
        self.server = server;
        self
    }

    /// The record of connection attempts, shared with the pool's callers.
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

    /// Opens one connection.
    pub fn open(&self) -> Result<DbConnection, ConnectError> {
        let target = self.url.diesel_url();
        let conn = match self.url.backend() {
            BackendKind::Sqlite => {
                let mut c = diesel::SqliteConnection::establish(target)
                    .map_err(|e| ConnectError::Driver(self.scrub(e.to_string())))?;
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
                    .map_err(|e| ConnectError::Driver(e.to_string()))?;
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
                let c = self.bounded(move || diesel::PgConnection::establish(&target))?;
                DbConnection::Postgres(c)
            }
            #[cfg(feature = "mysql")]
            BackendKind::Mysql => {
                let target = target.to_owned();
                let sync_wait = self.server.wsrep_sync_wait;
                let c = self.bounded(move || {
                    let mut c =
                        diesel::MysqlConnection::establish(&target).map_err(|e| e.to_string())?;
                    if let Some(n) = sync_wait {
                        c.batch_execute(&format!("SET SESSION wsrep_sync_wait = {n}"))
                            .map_err(|e| format!("setting wsrep_sync_wait: {e}"))?;
                    }
                    Ok::<_, String>(c)
                })?;
                DbConnection::Mysql(c)
            }
            #[allow(unreachable_patterns)]
            other => return Err(ConnectError::NotCompiled(other)),
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
    fn bounded<C, E>(
        &self,
        establish: impl FnOnce() -> Result<C, E> + Send + 'static,
    ) -> Result<C, ConnectError>
    where
        C: Send + 'static,
        E: std::fmt::Display + Send + 'static,
    {
        let timeout = self.connect_timeout();
        let (tx, rx) = std::sync::mpsc::sync_channel(1);
        std::thread::Builder::new()
            .name("mapping-connect".into())
            .spawn(move || {
                // The receiver is gone when the caller gave up: the
                // connection is then dropped (closed) here.
                let _ = tx.send(establish().map_err(|e| e.to_string()));
            })
            .map_err(|e| ConnectError::Driver(format!("cannot start a connect thread: {e}")))?;
        match rx.recv_timeout(timeout) {
            Ok(Ok(c)) => Ok(c),
            Ok(Err(message)) => Err(ConnectError::Driver(self.scrub(message))),
            Err(_) => Err(ConnectError::TimedOut(timeout)),
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
    type Error = ConnectError;

    fn connect(&self) -> Result<PooledConn, ConnectError> {
        let opened = self.open();
        self.health
            .record(opened.as_ref().err().map(ToString::to_string));
        Ok(PooledConn {
            conn: opened?,
            returned: Instant::now(),
            dead: false,
        })
    }

    /// Pings a connection that sat idle longer than `ping_idle_after`; one
    /// given back more recently was working a moment ago and is handed out
    /// as is (the round trip of a ping would double the cost of a lookup).
    /// Should it have died meanwhile, the operation fails instead, and a read
    /// is retried on another connection.
    /// Writes are pinged in any case, by the caller (see `Database`).
    fn is_valid(&self, conn: &mut PooledConn) -> Result<(), ConnectError> {
        if conn.returned_within(self.ping_idle_after) {
            return Ok(());
        }
        conn.ping()
    }

    /// Called as a connection goes back to the pool: also notes the time.
    fn has_broken(&self, conn: &mut PooledConn) -> bool {
        use diesel::r2d2::R2D2Connection;
        conn.returned = Instant::now();
        conn.dead || conn.conn.is_broken()
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
        assert_eq!(h.failed_since(before), None);
        h.record(Some("refused".into()));
        assert_eq!(h.failed_since(before).as_deref(), Some("refused"));
        let later = Instant::now() + Duration::from_secs(1);
        assert_eq!(h.failed_since(later), None);
        h.record(None);
        assert_eq!(h.failed_since(before), None);
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
