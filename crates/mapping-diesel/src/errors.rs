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

/// The code of a database failure, as its engine defines it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorCode {
    /// A PostgreSQL SQLSTATE (libpq's own failures: class 08).
    SqlState(&'static str),
    /// A MySQL/MariaDB error number (server, or client library for 2xxx).
    MysqlErrno(u16),
    /// A SQLite primary result code.
    Sqlite(i32),
}

impl ErrorCode {
    /// What the code means for retrying.
    pub fn transience(self) -> Transience {
        use ErrorCode::*;
        match self {
            // serialization_failure, deadlock_detected, lock_not_available
            SqlState("40001" | "40P01" | "55P03") => Transience::RolledBack,
            // connection exceptions; admin_shutdown, crash_shutdown,
            // cannot_connect_now; idle_in_transaction_session_timeout
            SqlState(s) if s.starts_with("08") => Transience::ConnectionLost,
            SqlState("57P01" | "57P02" | "57P03" | "25P03") => Transience::ConnectionLost,
            // ER_LOCK_DEADLOCK (also Galera's certification failures),
            // ER_LOCK_WAIT_TIMEOUT, ER_CHECKREAD, ER_UNKNOWN_COM_ERROR as
            // Galera answers on a node that is not ready: nothing applied
            MysqlErrno(1213 | 1205 | 1020 | 1047) => Transience::RolledBack,
            // CR_SERVER_GONE_ERROR, CR_SERVER_LOST, CR_SERVER_LOST_EXTENDED,
            // ER_CONNECTION_KILLED, ER_SERVER_SHUTDOWN
            MysqlErrno(2006 | 2013 | 2055 | 1927 | 1053) => Transience::ConnectionLost,
            // SQLITE_BUSY, SQLITE_LOCKED
            Sqlite(5 | 6) => Transience::RolledBack,
            _ => Transience::Permanent,
        }
    }
}

/// True for MariaDB Galera's error 1047 "WSREP has not yet prepared node for
/// application use": the node is not in the cluster's primary component
/// (`wsrep_ready = OFF`, e.g. cut off from the majority) and refuses every
/// statement before running it.
pub fn is_wsrep_not_ready(e: &Error) -> bool {
    matches!(e, Error::Database { source, .. } if is_wsrep_not_ready_source(source))
}

/// [`is_wsrep_not_ready`] for a driver error.
pub fn is_wsrep_not_ready_source(e: &DieselError) -> bool {
    error_code(e) == Some(ErrorCode::MysqlErrno(1047))
}

/// Classifies an error of the library.
///
/// [`Error::PoolTimeout`] is permanent here: the pool has already waited
/// `connection_timeout` for a connection, and waiting again would multiply
/// the caller's wait without telling it anything new.
/// [`Error::OutcomeUnknown`] is a lost connection (never retried for a write).
pub fn transience(e: &Error) -> Transience {
    match e {
        Error::Database { source, .. } => diesel_transience(source),
        Error::Connection { .. } | Error::OutcomeUnknown { .. } => Transience::ConnectionLost,
        _ => Transience::Permanent,
    }
}

/// The untranslated texts of the failures that matter for retrying, each
/// with its code, lower-cased: how the code is recovered where the driver
/// does not hand it over. PostgreSQL server errors carry their SQLSTATE
/// (read first, in [`error_code`]); the PostgreSQL texts here serve errors
/// without one. MySQL/MariaDB sessions pin their message language when they
/// open (`connection::session_setup`: `lc_messages = 'en_US'`, which any
/// user may set), so these texts are what the server sends whatever its own
/// locale; diesel hands over neither MySQL's error number nor, for these
/// failures, a precise SQLSTATE. The client libraries (libpq,
/// libmysqlclient/libmariadb) and SQLite are not translated.
const CATALOGUE: [(&str, ErrorCode); 25] = {
    use ErrorCode::*;
    [
        // PostgreSQL server (msgids)
        ("deadlock detected", SqlState("40P01")),
        ("could not serialize access", SqlState("40001")),
        ("canceling statement due to lock timeout", SqlState("55P03")),
        ("could not obtain lock on", SqlState("55P03")),
        (
            "terminating connection due to administrator command",
            SqlState("57P01"),
        ),
        (
            "terminating connection due to idle-in-transaction timeout",
            SqlState("25P03"),
        ),
        ("the database system is shutting down", SqlState("57P03")),
        ("the database system is starting up", SqlState("57P03")),
        // libpq
        (
            "server closed the connection unexpectedly",
            SqlState("08006"),
        ),
        ("could not receive data from server", SqlState("08006")),
        ("could not send data to server", SqlState("08006")),
        ("no connection to the server", SqlState("08003")),
        // MySQL/MariaDB server (en_US)
        ("deadlock found when trying to get lock", MysqlErrno(1213)),
        ("wsrep detected deadlock/conflict", MysqlErrno(1213)),
        ("lock wait timeout exceeded", MysqlErrno(1205)),
        ("record has changed since last read", MysqlErrno(1020)),
        ("wsrep has not yet prepared node", MysqlErrno(1047)),
        ("connection was killed", MysqlErrno(1927)),
        ("server shutdown in progress", MysqlErrno(1053)),
        // ER_PARSE_ERROR: a server without `INSERT … RETURNING` (MySQL)
        ("you have an error in your sql syntax", MysqlErrno(1064)),
        // MySQL/MariaDB client libraries
        ("server has gone away", MysqlErrno(2006)),
        ("lost connection to mysql server", MysqlErrno(2013)),
        ("lost connection to server", MysqlErrno(2013)),
        // SQLite
        ("database is locked", Sqlite(5)),
        ("database table is locked", Sqlite(6)),
    ]
};

/// The SQLSTATEs the retry and connection logic acts on, as the static
/// strings [`ErrorCode::SqlState`] holds.
const SQLSTATES: [&str; 15] = [
    "40001", "40P01", "55P03", "57P01", "57P02", "57P03", "25P03", "08000", "08001", "08003",
    "08004", "08006", "08007", "08P01", "08S01",
];

/// The code of a diesel error, where one can be told: the SQLSTATE the
/// driver hands over (PostgreSQL: every server error, in any language), else
/// diesel's `DatabaseErrorKind` when it mapped the code, else the
/// untranslated catalogue text (see [`CATALOGUE`]).
pub fn error_code(e: &DieselError) -> Option<ErrorCode> {
    let DieselError::DatabaseError(kind, info) = e else {
        return None;
    };
    // PostgreSQL's SQLSTATEs are precise. MySQL-like servers report one
    // too, but mostly the generic HY000 (a lock-wait timeout) or a shared
    // one (08S01: Galera's "not ready" and a server shutdown, which are
    // handled differently): for them only 40001 (a deadlock, as on
    // PostgreSQL) is taken from the code, and the rest from the error's
    // text below (diesel does not hand over MySQL's error number).
    if let Some(state) = info.sqlstate() {
        let precise = SQLSTATES
            .iter()
            .find(|c| **c == state.as_str() && **c != "08S01");
        if let Some(&code) = precise {
            return Some(ErrorCode::SqlState(code));
        }
    }
    match kind {
        // PostgreSQL 40001 or MySQL 1213: the same meaning for retrying.
        DatabaseErrorKind::SerializationFailure => return Some(ErrorCode::SqlState("40001")),
        // libpq's connection is bad, or an 08xxx SQLSTATE.
        DatabaseErrorKind::ClosedConnection => return Some(ErrorCode::SqlState("08006")),
        DatabaseErrorKind::UnableToSendCommand => return Some(ErrorCode::SqlState("08006")),
        _ => {}
    }
    let m = info.message().to_lowercase();
    CATALOGUE
        .iter()
        .find(|(text, _)| m.contains(text))
        .map(|&(_, code)| code)
}

/// Classifies a diesel error.
pub fn diesel_transience(e: &DieselError) -> Transience {
    match e {
        DieselError::DatabaseError(..) => {
            error_code(e).map_or(Transience::Permanent, ErrorCode::transience)
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

    #[test]
    fn codes_decide_transience() {
        use ErrorCode::*;
        for (code, want) in [
            (SqlState("40001"), Transience::RolledBack),
            (SqlState("40P01"), Transience::RolledBack),
            (SqlState("55P03"), Transience::RolledBack),
            (SqlState("57P01"), Transience::ConnectionLost),
            (SqlState("08006"), Transience::ConnectionLost),
            (SqlState("08003"), Transience::ConnectionLost),
            (SqlState("23505"), Transience::Permanent),
            (SqlState("57014"), Transience::Permanent),
            (MysqlErrno(1213), Transience::RolledBack),
            (MysqlErrno(1205), Transience::RolledBack),
            (MysqlErrno(1020), Transience::RolledBack),
            (MysqlErrno(2006), Transience::ConnectionLost),
            (MysqlErrno(2013), Transience::ConnectionLost),
            (MysqlErrno(1927), Transience::ConnectionLost),
            (MysqlErrno(1062), Transience::Permanent),
            (Sqlite(5), Transience::RolledBack),
            (Sqlite(6), Transience::RolledBack),
            (Sqlite(19), Transience::Permanent),
        ] {
            assert_eq!(code.transience(), want, "{code:?}");
        }
        assert_eq!(
            error_code(&db(DatabaseErrorKind::Unknown, "deadlock detected")),
            Some(SqlState("40P01"))
        );
        assert_eq!(
            error_code(&db(
                DatabaseErrorKind::Unknown,
                "Lock wait timeout exceeded; try restarting transaction"
            )),
            Some(MysqlErrno(1205))
        );
        assert_eq!(
            error_code(&db(
                DatabaseErrorKind::Unknown,
                "You have an error in your SQL syntax; check the manual that corresponds \
                 to your MySQL server version for the right syntax to use near 'RETURNING id'"
            )),
            Some(MysqlErrno(1064))
        );
        assert_eq!(MysqlErrno(1064).transience(), Transience::Permanent);
        assert_eq!(error_code(&DieselError::NotFound), None);
    }

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
        // German texts are not recognised: the sessions pin English (and the
        // kinds diesel maps from codes work in any language).
        assert_eq!(
            diesel_transience(&db(Unknown, "Verklemmung (Deadlock) entdeckt")),
            Transience::Permanent
        );
        assert_eq!(
            diesel_transience(&db(SerializationFailure, "Deadlock beim Sperren gefunden")),
            Transience::RolledBack
        );
        assert_eq!(
            diesel_transience(&db(ClosedConnection, "Verbindung wurde beendet")),
            Transience::ConnectionLost
        );
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
