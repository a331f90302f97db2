//! Timestamps written exactly as Nova (SQLAlchemy) writes them.
//!
//! SQLite has no date type: SQLAlchemy stores `YYYY-MM-DD HH:MM:SS.ffffff`
//! text with exactly six fraction digits, while diesel's own encoding drops or
//! varies the fraction. [`NovaTimestamp`] writes the SQLAlchemy form on SQLite
//! and the native type elsewhere; [`now`] truncates the clock to what each
//! backend stores (whole seconds for MySQL `DATETIME`, microseconds otherwise),
//! so an object returned by the API equals the row read back.

use chrono::{NaiveDateTime, SubsecRound, Utc};
use diesel::serialize::{self, Output, ToSql};
use diesel::sql_types::Timestamp;
use diesel::sqlite::Sqlite;

use crate::connection::MultiBackend;
use crate::url::BackendKind;

/// The text format SQLAlchemy uses for SQLite `DATETIME` columns.
pub const SQLITE_FORMAT: &str = "%Y-%m-%d %H:%M:%S%.6f";

/// A naive-UTC timestamp bound the way Nova writes it on each backend.
#[derive(Debug, Clone, Copy, PartialEq, Eq, diesel::expression::AsExpression)]
#[diesel(sql_type = Timestamp)]
pub struct NovaTimestamp(pub NaiveDateTime);

/// The current time, truncated to the precision `backend` stores.
pub fn now(backend: BackendKind) -> NaiveDateTime {
    truncate(Utc::now().naive_utc(), backend)
}

/// Truncates a time to the precision `backend` stores.
pub fn truncate(t: NaiveDateTime, backend: BackendKind) -> NaiveDateTime {
    match backend {
        BackendKind::Mysql => t.trunc_subsecs(0),
        BackendKind::Sqlite | BackendKind::Postgres => t.trunc_subsecs(6),
    }
}

impl ToSql<Timestamp, Sqlite> for NovaTimestamp {
    fn to_sql<'b>(&'b self, out: &mut Output<'b, '_, Sqlite>) -> serialize::Result {
        out.set_value(self.0.format(SQLITE_FORMAT).to_string());
        Ok(serialize::IsNull::No)
    }
}

#[cfg(feature = "postgres")]
impl ToSql<Timestamp, diesel::pg::Pg> for NovaTimestamp {
    fn to_sql<'b>(&'b self, out: &mut Output<'b, '_, diesel::pg::Pg>) -> serialize::Result {
        <NaiveDateTime as ToSql<Timestamp, diesel::pg::Pg>>::to_sql(&self.0, out)
    }
}

#[cfg(feature = "mysql")]
impl ToSql<Timestamp, diesel::mysql::Mysql> for NovaTimestamp {
    fn to_sql<'b>(&'b self, out: &mut Output<'b, '_, diesel::mysql::Mysql>) -> serialize::Result {
        <NaiveDateTime as ToSql<Timestamp, diesel::mysql::Mysql>>::to_sql(&self.0, out)
    }
}

impl ToSql<Timestamp, MultiBackend> for NovaTimestamp {
    fn to_sql<'b>(&'b self, out: &mut Output<'b, '_, MultiBackend>) -> serialize::Result {
        out.set_value((Timestamp, self));
        Ok(serialize::IsNull::No)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::NaiveDate;

    #[test]
    fn sqlite_text_has_six_fraction_digits() {
        let t = NaiveDate::from_ymd_opt(2026, 11, 30)
            .unwrap()
            .and_hms_opt(10, 13, 7)
            .unwrap();
        assert_eq!(
            t.format(SQLITE_FORMAT).to_string(),
            "2026-11-30 10:13:07.000000"
        );
    }

    #[test]
    fn clock_precision_per_backend() {
        let t = NaiveDate::from_ymd_opt(2026, 1, 2)
            .unwrap()
            .and_hms_nano_opt(3, 4, 5, 123_456_789)
            .unwrap();
        assert_eq!(
            truncate(t, BackendKind::Mysql)
                .and_utc()
                .timestamp_subsec_nanos(),
            0
        );
        assert_eq!(
            truncate(t, BackendKind::Postgres)
                .and_utc()
                .timestamp_subsec_nanos(),
            123_456_000
        );
        assert_eq!(
            truncate(t, BackendKind::Sqlite)
                .and_utc()
                .timestamp_subsec_nanos(),
            123_456_000
        );
    }
}
