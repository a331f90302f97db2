//! Turning driver errors into the library's typed errors, and deciding which
//! failures are transient (safe to retry).

use diesel::result::{DatabaseErrorKind, Error as DieselError};
use mapping_model::Error;

/// Wraps a diesel error with the operation that raised it.
pub(crate) fn db_err(operation: &'static str) -> impl Fn(DieselError) -> Error {
    move |source| Error::Database { operation, source }
}

/// True when the error is a unique-constraint violation.
pub(crate) fn is_unique_violation(e: &DieselError) -> bool {
    matches!(
        e,
        DieselError::DatabaseError(DatabaseErrorKind::UniqueViolation, _)
    )
}

/// True when the error is a foreign-key violation.
pub(crate) fn is_fk_violation(e: &DieselError) -> bool {
    matches!(
        e,
        DieselError::DatabaseError(DatabaseErrorKind::ForeignKeyViolation, _)
    ) || matches!(e, DieselError::DatabaseError(_, info) if info.message().contains("FOREIGN KEY constraint failed"))
}

/// How a failure relates to retrying.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transience {
    /// Not transient: retrying would fail the same way.
    Permanent,
    /// The server rolled the work back (deadlock, serialization failure,
    /// lock-wait timeout, SQLite busy): any operation may be repeated.
    RolledBack,
    /// The connection was lost: the outcome is unknown, so only reads repeat.
    ConnectionLost,
}

/// Classifies an error of the library.
///
/// [`Error::PoolTimeout`] is permanent here: the pool has already waited
/// `connection_timeout` for a connection, and waiting again would multiply
/// the caller's wait without telling it anything new.
pub fn transience(e: &Error) -> Transience {
    match e {
        Error::Database { source, .. } => diesel_transience(source),
        Error::Connection { .. } => Transience::ConnectionLost,
        _ => Transience::Permanent,
    }
}

/// Messages (lower-cased) of failures after which the server has rolled the
/// work back: PostgreSQL 40P01 and 40001 (diesel maps only 40001 to
/// `SerializationFailure`), MySQL/MariaDB 1213 and 1205, MariaDB 1020,
/// Galera certification conflicts, SQLite `SQLITE_BUSY` and `SQLITE_LOCKED`.
/// Matched on the message because diesel exposes neither SQLSTATE nor errno
/// (the servers must therefore report in English, their default).
const ROLLED_BACK: [&str; 8] = [
    "deadlock detected",
    "deadlock found",
    "lock wait timeout exceeded",
    "wsrep detected deadlock",
    "record has changed since last read",
    "could not serialize access",
    "database is locked",
    "database table is locked",
];

/// Messages (lower-cased) of a connection that is gone: PostgreSQL 57P01 and
/// libpq's own, MySQL/MariaDB client errors 2006 and 2013, MariaDB 1927.
const LOST: [&str; 9] = [
    "server closed the connection",
    "terminating connection",
    "no connection to the server",
    "could not receive data from server",
    "server has gone away",
    "lost connection to mysql server",
    "lost connection to server",
    "connection was killed",
    "connection to server was lost",
];

/// True for MariaDB Galera's error 1047 "WSREP has not yet prepared node for
/// application use": the node is not in the cluster's primary component
/// (`wsrep_ready = OFF`, e.g. cut off from the majority) and refuses every
/// statement before running it, so nothing of the statement took effect.
pub fn is_wsrep_not_ready(e: &Error) -> bool {
    matches!(e, Error::Database { source: DieselError::DatabaseError(_, info), .. }
        if info.message().to_lowercase().contains("wsrep has not yet prepared node"))
}

/// Classifies a diesel error.
pub fn diesel_transience(e: &DieselError) -> Transience {
    match e {
        DieselError::DatabaseError(kind, info) => {
            if matches!(kind, DatabaseErrorKind::SerializationFailure) {
                return Transience::RolledBack;
            }
            if matches!(
                kind,
                DatabaseErrorKind::ClosedConnection | DatabaseErrorKind::UnableToSendCommand
            ) {
                return Transience::ConnectionLost;
            }
            let m = info.message().to_lowercase();
            // Galera 1047: refused before running (see `is_wsrep_not_ready`).
            if ROLLED_BACK.iter().any(|p| m.contains(p))
                || m.contains("wsrep has not yet prepared node")
            {
                return Transience::RolledBack;
            }
            if LOST.iter().any(|p| m.contains(p)) {
                return Transience::ConnectionLost;
            }
            Transience::Permanent
        }
        // The commit failed and so did the rollback after it: what the
        // server did is what the commit error says.
        DieselError::RollbackErrorOnCommit { commit_error, .. } => diesel_transience(commit_error),
        DieselError::BrokenTransactionManager => Transience::ConnectionLost,
        _ => Transience::Permanent,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn db(kind: DatabaseErrorKind, message: &str) -> DieselError {
        DieselError::DatabaseError(kind, Box::new(message.to_owned()))
    }

    #[test]
    fn classifies_each_backend_s_transient_failures() {
        use DatabaseErrorKind::*;
        for (err, want) in [
            // PostgreSQL
            (
                db(
                    SerializationFailure,
                    "could not serialize access due to concurrent update",
                ),
                Transience::RolledBack,
            ),
            (db(Unknown, "deadlock detected"), Transience::RolledBack),
            (
                db(
                    ClosedConnection,
                    "terminating connection due to administrator command",
                ),
                Transience::ConnectionLost,
            ),
            (
                db(Unknown, "server closed the connection unexpectedly"),
                Transience::ConnectionLost,
            ),
            // MySQL / MariaDB
            (
                db(
                    SerializationFailure,
                    "Deadlock found when trying to get lock; try restarting transaction",
                ),
                Transience::RolledBack,
            ),
            (
                db(
                    Unknown,
                    "Lock wait timeout exceeded; try restarting transaction",
                ),
                Transience::RolledBack,
            ),
            (
                db(Unknown, "MySQL server has gone away"),
                Transience::ConnectionLost,
            ),
            (
                db(Unknown, "Server has gone away"),
                Transience::ConnectionLost,
            ),
            (
                db(Unknown, "Lost connection to server during query"),
                Transience::ConnectionLost,
            ),
            (
                db(Unknown, "Connection was killed"),
                Transience::ConnectionLost,
            ),
            // SQLite
            (db(Unknown, "database is locked"), Transience::RolledBack),
            // Galera node outside the primary component (1047)
            (
                db(
                    Unknown,
                    "WSREP has not yet prepared node for application use",
                ),
                Transience::RolledBack,
            ),
            (
                db(Unknown, "database table is locked"),
                Transience::RolledBack,
            ),
            // Permanent
            (
                db(
                    UniqueViolation,
                    "UNIQUE constraint failed: cell_mappings.uuid",
                ),
                Transience::Permanent,
            ),
            (
                db(Unknown, "no such table: cell_mappings"),
                Transience::Permanent,
            ),
            (DieselError::NotFound, Transience::Permanent),
            (
                DieselError::RollbackErrorOnCommit {
                    rollback_error: Box::new(DieselError::BrokenTransactionManager),
                    commit_error: Box::new(db(SerializationFailure, "could not serialize access")),
                },
                Transience::RolledBack,
            ),
        ] {
            assert_eq!(diesel_transience(&err), want, "{err}");
        }
        assert_eq!(
            transience(&Error::PoolTimeout { waited_ms: 1 }),
            Transience::Permanent
        );
        assert_eq!(
            transience(&Error::Database {
                operation: "x",
                source: db(Unknown, "database is locked")
            }),
            Transience::RolledBack
        );
    }
}
