//! The backend a connection URL names, and why a URL was refused: the typed
//! cause that [`Error::Url`](crate::Error::Url) keeps. Parsing itself lives
//! in `mapping-diesel` (`ConnectionUrl`).

/// Which database engine a URL names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum BackendKind {
    /// SQLite (a file or an in-memory database).
    Sqlite,
    /// PostgreSQL.
    Postgres,
    /// MySQL or MariaDB.
    Mysql,
}

/// Why a connection URL was refused; never contains a password.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
pub enum UrlError {
    /// The URL is empty or only whitespace.
    #[error("the database connection URL is empty")]
    Empty,
    /// The scheme names no supported backend.
    #[error("unsupported database URL scheme `{scheme}` (expected sqlite, postgresql or mysql)")]
    UnknownScheme {
        /// The scheme as written, without anything after it.
        scheme: String,
    },
    /// The URL names a supported backend but cannot be used.
    #[error("malformed database connection URL `{url}`: {reason}")]
    Malformed {
        /// The input with anything that might be a password masked.
        url: String,
        /// What is wrong.
        reason: String,
    },
    /// `ConnectionUrl::with_database` got a name it will not put in a URL.
    #[error("invalid database name `{name}`: {reason}")]
    InvalidDatabaseName {
        /// The refused name.
        name: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The operation does not apply to URLs of this backend.
    #[error("{operation} is not supported for {backend:?} URLs")]
    Unsupported {
        /// The backend of the URL.
        backend: BackendKind,
        /// The refused operation.
        operation: String,
    },
}
