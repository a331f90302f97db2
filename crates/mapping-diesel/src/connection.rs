//! One connection type for every compiled-in backend (diesel's
//! `MultiConnection`), and the r2d2 manager that opens it from a
//! [`ConnectionUrl`].

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

/// Opens connections for the pool.
#[derive(Debug, Clone)]
pub struct Manager {
    url: ConnectionUrl,
    sqlite: SqliteSettings,
    ping_idle_after: Duration,
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
}

impl Manager {
    /// A manager for `url`. A connection idle in the pool for longer than
    /// `ping_idle_after` is pinged before it is handed out again.
    pub fn new(url: ConnectionUrl, sqlite: SqliteSettings, ping_idle_after: Duration) -> Self {
        Self {
            url,
            sqlite,
            ping_idle_after,
        }
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
            BackendKind::Postgres => DbConnection::Postgres(
                diesel::PgConnection::establish(target)
                    .map_err(|e| ConnectError::Driver(self.scrub(e.to_string())))?,
            ),
            #[cfg(feature = "mysql")]
            BackendKind::Mysql => DbConnection::Mysql(
                diesel::MysqlConnection::establish(target)
                    .map_err(|e| ConnectError::Driver(self.scrub(e.to_string())))?,
            ),
            #[allow(unreachable_patterns)]
            other => return Err(ConnectError::NotCompiled(other)),
        };
        Ok(conn)
    }
}

impl r2d2::ManageConnection for Manager {
    type Connection = PooledConn;
    type Error = ConnectError;

    fn connect(&self) -> Result<PooledConn, ConnectError> {
        Ok(PooledConn {
            conn: self.open()?,
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
    fn scrub_removes_raw_and_decoded_password() {
        let url = "postgres://nova:s3cr%40t@db/nova_api";
        let msg = "auth failed for nova with s3cr@t and s3cr%40t".to_owned();
        let out = scrub_password(url, msg);
        assert!(!out.contains("s3cr"), "{out}");
        assert_eq!(scrub_password("sqlite://", "x".into()), "x");
        assert_eq!(scrub_password("mysql://root@h/db", "root".into()), "root");
    }
}
