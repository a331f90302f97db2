//! Database connection URLs (the forms of `nova.conf`): which backend a URL names, the string
//! diesel's `Connection::establish` needs for it, and a redacted form that is
//! safe to log.
//!
//! # Accepted forms
//!
//! | input | backend | diesel string |
//! | --- | --- | --- |
//! | `sqlite://`, `sqlite:///`, `sqlite:///:memory:`, `sqlite::memory:`, `:memory:` | SQLite | `:memory:` |
//! | `sqlite:////absolute/path.db` | SQLite | `/absolute/path.db` |
//! | `sqlite:///relative/path.db` | SQLite | `relative/path.db` |
//! | `/tmp/x.db`, `./x.db`, `x.db`, `C:\x.db` (no scheme) | SQLite | the path as given |
//! | `file:x.db?mode=ro` (SQLite URI filename) | SQLite | the URI as given |
//! | `postgres://…`, `postgresql://…`, `postgresql+<driver>://…` | PostgreSQL | `postgres://…` |
//! | `mysql://…`, `mysql+<driver>://…`, `mariadb://…`, `mariadb+<driver>://…` | MySQL | `mysql://…` |
//!
//! Schemes are matched case-insensitively; `sqlite+<driver>` (for example
//! SQLAlchemy's `sqlite+pysqlite`) is read like `sqlite`.
//!
//! ## SQLite
//!
//! A `?query` after an SQLAlchemy-style path is dropped (its options, such as
//! `check_same_thread`, are for Python drivers). SQLite URLs take no host or
//! credentials. Paths are not percent-decoded. A relative path that starts
//! with `file:` is handed to diesel as `./file:…` so that SQLite does not read
//! it as a URI. `file:` URIs are passed through unchanged and count as
//! in-memory when their path is `:memory:` or they carry `mode=memory`.
//! `sqlite:relative.db` (no `//`) is refused.
//!
//! ## PostgreSQL
//!
//! Only the scheme is rewritten; everything else, the query included, goes to
//! libpq as written: the query keys SQLAlchemy's PostgreSQL drivers accept are
//! libpq's own connection keywords (`client_encoding`, `sslmode`,
//! `application_name`, `host`, …), so nothing is dropped. An empty host
//! (`postgresql:///nova`) is accepted: libpq then uses the local socket.
//! Several comma-separated hosts are accepted as libpq allows.
//!
//! ## MySQL
//!
//! diesel 2.3 reads only the query keys `unix_socket`, `ssl_mode`, `ssl_ca`,
//! `ssl_cert` and `ssl_key`, and refuses a `database` key; `connect_timeout`
//! (seconds, as PyMySQL reads it) is kept for this crate's own connect
//! timeout; every other key (`charset`, `plugin`, `read_default_file`, `ssl_capath`, …) is dropped.
//! Note that dropping includes TLS options diesel cannot express. diesel
//! chooses `utf8mb4` itself, so `charset` is not needed. A `ssl_mode` value
//! diesel would refuse is refused here. A host is required, except that
//! `mysql://user@/db?unix_socket=/path` (a form SQLAlchemy users write) is
//! given the host `localhost`, which diesel turns into a socket connection.
//!
//! `localhost` reaches the server Nova reaches. PyMySQL, the driver of
//! `mysql+pymysql://` URLs, connects over TCP to `localhost` at the port
//! given (3306 by default), whereas libmysqlclient (and so diesel) takes the
//! local socket for `localhost` and ignores the port: so in a
//! `mysql+pymysql://` (or `mariadb+pymysql://`) URL without `unix_socket`,
//! the host `localhost` is written `127.0.0.1`, and a node behind HAProxy on
//! `localhost:3307` is reached through HAProxy, not the local server's
//! socket. Plain `mysql://` and other drivers' URLs (`mysql+mysqldb://` is
//! libmysqlclient too) keep libmysqlclient's reading: `localhost` is the
//! socket.
//! Only one host is accepted, and the database name must be a single path
//! segment made of characters diesel passes on verbatim (diesel does not
//! percent-decode it).
//!
//! ## Credentials
//!
//! The user information ends at the **last** `@` before the host; the
//! password is the part after its first `:`. Percent-escapes are kept as
//! written (diesel and libpq decode them); a raw `@` inside the user or the
//! password is escaped as `%40` so that both parsers see the same split. A
//! raw `/`, `?` or `#` in a password cannot be told apart from the end of the
//! host, so an `@` anywhere after the host, and any `#`, is refused with a
//! hint to percent-encode.
//!
//! ## Redaction
//!
//! [`ConnectionUrl::redacted`], `Display` and `Debug` show the normalised URL
//! (the one diesel gets, for SQLite an equivalent `sqlite:///` form) with a
//! non-empty password replaced by `***`, and with the value of every query
//! key whose name contains `pass`, `key`, `secret` or `token` replaced by
//! `***` (libpq accepts `password=` in the query). [`UrlError`] never holds
//! more of an unparsable input than a conservatively redacted copy: from the
//! first `:` after the scheme to the last `@`, everything is masked.

mod redact;
mod server;
mod sqlite;
#[cfg(test)]
mod tests;
mod text;

use std::fmt;
use std::str::FromStr;

use redact::malformed;
pub(crate) use text::percent_decode_lossy;
use text::{has_driver, split_scheme};

pub use mapping_model::{BackendKind, UrlError};

/// A parsed connection URL.
#[derive(Clone, PartialEq, Eq)]
pub struct ConnectionUrl {
    backend: BackendKind,
    /// What diesel gets; holds the password.
    diesel: String,
    /// Safe for logs.
    redacted: String,
    /// Database name (PG/MySQL) or file path (SQLite file).
    database: Option<String>,
    /// In-memory SQLite.
    memory: bool,
    /// The pieces of a PG/MySQL URL, to rebuild it with another database.
    server: Option<ServerParts>,
}

/// The pieces of a PostgreSQL or MySQL URL, as they will be written out.
#[derive(Debug, Clone, PartialEq, Eq)]
struct ServerParts {
    /// `None` when there is no `@`; raw `@` escaped.
    user: Option<String>,
    /// `None` when the user information has no `:`; raw `@` escaped.
    password: Option<String>,
    /// Host list, ports included, as written.
    host: String,
    /// The path as written: empty or starting with `/`.
    path: String,
    /// `key=value` pieces kept, as written.
    query: Vec<String>,
}

impl ConnectionUrl {
    /// Parses any accepted form.
    pub fn parse(url: &str) -> Result<Self, UrlError> {
        if url.trim().is_empty() {
            return Err(UrlError::Empty);
        }
        if url.contains('\0') {
            return Err(malformed(url, "the URL contains a NUL character"));
        }
        let Some((scheme, rest)) = split_scheme(url) else {
            if url.contains("://") {
                return Err(malformed(
                    url,
                    "neither a URL with a valid scheme nor a file path",
                ));
            }
            return Ok(Self::sqlite_path(url));
        };
        let lower = scheme.to_ascii_lowercase();
        if lower == "sqlite" || has_driver(&lower, "sqlite") {
            Self::parse_sqlite(url, rest)
        } else if lower == "file" {
            Ok(Self::sqlite_uri(url, rest))
        } else if lower == "postgres" || lower == "postgresql" || has_driver(&lower, "postgresql") {
            Self::parse_server(url, rest, BackendKind::Postgres)
        } else if lower == "mysql"
            || lower == "mariadb"
            || has_driver(&lower, "mysql")
            || has_driver(&lower, "mariadb")
        {
            Self::parse_server(url, rest, BackendKind::Mysql)
        } else {
            Err(UrlError::UnknownScheme {
                scheme: scheme.to_owned(),
            })
        }
    }

    /// The backend named by the scheme.
    pub fn backend(&self) -> BackendKind {
        self.backend
    }

    /// The string to hand to diesel's `Connection::establish` for this backend.
    ///
    /// It contains the password: never log it.
    pub fn diesel_url(&self) -> &str {
        &self.diesel
    }

    /// The URL with any password replaced by `***`, safe for logs and errors.
    pub fn redacted(&self) -> String {
        self.redacted.clone()
    }

    /// True for an in-memory SQLite database.
    pub fn is_sqlite_memory(&self) -> bool {
        self.memory
    }

    /// The database name (PG/MySQL) or file path (SQLite file), if any.
    ///
    /// For PostgreSQL the name is percent-decoded, as libpq decodes it; for
    /// MySQL it is exactly what diesel sends (diesel does not decode it).
    pub fn database(&self) -> Option<&str> {
        self.database.as_deref()
    }

    /// A copy of this URL pointing at another database name (PG/MySQL only; SQLite returns an error). Used by the test kit to create per-test databases.
    ///
    /// The name must be 1 to 63 ASCII letters, digits, `_`, `$` or `-`, so
    /// that it means the same to every backend and needs no escaping.
    pub fn with_database(&self, name: &str) -> Result<Self, UrlError> {
        let Some(server) = &self.server else {
            return Err(UrlError::Unsupported {
                backend: self.backend,
                operation: "changing the database name".to_owned(),
            });
        };
        server::validate_database_name(name)?;
        let mut parts = server.clone();
        parts.path = format!("/{name}");
        Ok(Self::from_server(
            self.backend,
            parts,
            Some(name.to_owned()),
        ))
    }
}

impl fmt::Debug for ConnectionUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ConnectionUrl")
            .field("backend", &self.backend)
            .field("url", &self.redacted)
            .finish()
    }
}

impl fmt::Display for ConnectionUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.redacted)
    }
}

impl FromStr for ConnectionUrl {
    type Err = UrlError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}
