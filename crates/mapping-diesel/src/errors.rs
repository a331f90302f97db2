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
pub fn transience(e: &Error) -> Transience {
    match e {
        Error::Database { source, .. } => diesel_transience(source),
        Error::PoolTimeout { .. } | Error::Connection { .. } => Transience::ConnectionLost,
        _ => Transience::Permanent,
    }
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
            let m = info.message();
            // PostgreSQL 40P01, MySQL/MariaDB 1213/1205, Galera certification
            // conflicts, SQLite SQLITE_BUSY / SQLITE_LOCKED.
            const ROLLED_BACK: [&str; 7] = [
                "deadlock detected",
                "Deadlock found",
                "Lock wait timeout exceeded",
                "WSREP detected deadlock",
                "database is locked",
                "database table is locked",
                "could not serialize access",
            ];
            if ROLLED_BACK.iter().any(|p| m.contains(p)) {
                return Transience::RolledBack;
            }
            const LOST: [&str; 7] = [
                "server closed the connection",
                "terminating connection",
                "MySQL server has gone away",
                // MariaDB Connector/C's wording.
                "Server has gone away",
                "Lost connection to MySQL server",
                "Lost connection to server",
                "no connection to the server",
            ];
            if LOST.iter().any(|p| m.contains(p)) {
                return Transience::ConnectionLost;
            }
            Transience::Permanent
        }
        DieselError::BrokenTransactionManager => Transience::ConnectionLost,
        _ => Transience::Permanent,
    }
}
