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

/// A timestamp read from the database; on SQLite the text Nova writes
/// (`YYYY-MM-DD HH:MM:SS[.ffffff]`) is parsed directly, anything else by
/// diesel's own parser. Used through [`MaybeTimestamp`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReadTimestamp(pub NaiveDateTime);

/// A nullable timestamp column read as [`ReadTimestamp`]: the row structs
/// declare `#[diesel(deserialize_as = MaybeTimestamp)]` on their
/// `Option<NaiveDateTime>` fields. chrono's format-string parser, which
/// diesel uses on SQLite, cost a quarter of a 1,000-row listing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MaybeTimestamp(pub Option<NaiveDateTime>);

impl From<MaybeTimestamp> for Option<NaiveDateTime> {
    fn from(t: MaybeTimestamp) -> Self {
        t.0
    }
}

impl<DB> diesel::Queryable<diesel::sql_types::Nullable<Timestamp>, DB> for MaybeTimestamp
where
    DB: diesel::backend::Backend,
    ReadTimestamp: diesel::deserialize::FromSql<Timestamp, DB>,
{
    type Row = Option<ReadTimestamp>;

    fn build(row: Option<ReadTimestamp>) -> diesel::deserialize::Result<Self> {
        Ok(MaybeTimestamp(row.map(|t| t.0)))
    }
}

/// Parses exactly `YYYY-MM-DD HH:MM:SS` with an optional `.` and 1 to 9
/// fraction digits; `None` for anything else (left to diesel's parser).
pub(crate) fn parse_nova_text(text: &str) -> Option<NaiveDateTime> {
    let b = text.as_bytes();
    let num = |range: std::ops::Range<usize>| -> Option<u32> {
        let digits = b.get(range)?;
        let mut v = 0u32;
        for d in digits {
            if !d.is_ascii_digit() {
                return None;
            }
            v = v * 10 + u32::from(d - b'0');
        }
        Some(v)
    };
    let seps = [(4, b'-'), (7, b'-'), (10, b' '), (13, b':'), (16, b':')];
    if seps.iter().any(|(i, c)| b.get(*i) != Some(c)) {
        return None;
    }
    let (year, month, day) = (num(0..4)?, num(5..7)?, num(8..10)?);
    let (hour, minute, second) = (num(11..13)?, num(14..16)?, num(17..19)?);
    let nanos = match b.len() {
        19 => 0,
        n if (21..=29).contains(&n) && b.get(19) == Some(&b'.') => {
            let digits = n - 20;
            num(20..n)? * 10u32.pow(9 - digits as u32)
        }
        _ => return None,
    };
    chrono::NaiveDate::from_ymd_opt(i32::try_from(year).ok()?, month, day)?
        .and_hms_nano_opt(hour, minute, second, nanos)
}

impl diesel::deserialize::FromSql<Timestamp, Sqlite> for ReadTimestamp {
    fn from_sql(
        mut value: <Sqlite as diesel::backend::Backend>::RawValue<'_>,
    ) -> diesel::deserialize::Result<Self> {
        if value.value_type() == Some(diesel::sqlite::SqliteType::Text) {
            if let Some(t) = parse_nova_text(value.read_text()) {
                return Ok(ReadTimestamp(t));
            }
        }
        <NaiveDateTime as diesel::deserialize::FromSql<Timestamp, Sqlite>>::from_sql(value)
            .map(ReadTimestamp)
    }
}

#[cfg(feature = "postgres")]
impl diesel::deserialize::FromSql<Timestamp, diesel::pg::Pg> for ReadTimestamp {
    fn from_sql(value: diesel::pg::PgValue<'_>) -> diesel::deserialize::Result<Self> {
        <NaiveDateTime as diesel::deserialize::FromSql<Timestamp, diesel::pg::Pg>>::from_sql(value)
            .map(ReadTimestamp)
    }
}

#[cfg(feature = "mysql")]
impl diesel::deserialize::FromSql<Timestamp, diesel::mysql::Mysql> for ReadTimestamp {
    fn from_sql(value: diesel::mysql::MysqlValue<'_>) -> diesel::deserialize::Result<Self> {
        <NaiveDateTime as diesel::deserialize::FromSql<Timestamp, diesel::mysql::Mysql>>::from_sql(
            value,
        )
        .map(ReadTimestamp)
    }
}

impl diesel::deserialize::FromSql<Timestamp, MultiBackend> for ReadTimestamp {
    fn from_sql(
        value: <MultiBackend as diesel::backend::Backend>::RawValue<'_>,
    ) -> diesel::deserialize::Result<Self> {
        value.from_sql::<ReadTimestamp, Timestamp>()
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
    fn nova_text_parses_like_chrono() {
        for text in [
            "2026-11-30 10:13:07.000000",
            "2026-11-30 10:13:07.123456",
            "2026-11-30 10:13:07",
            "1999-01-02 03:04:05.1",
            "2024-02-29 23:59:59.999999999",
        ] {
            let want = NaiveDateTime::parse_from_str(text, "%F %T%.f").unwrap();
            assert_eq!(parse_nova_text(text), Some(want), "{text}");
        }
        for text in [
            "2026-11-30T10:13:07",
            "2026-11-30 10:13:07.",
            "2026-11-30 10:13:07.1234567890",
            "2026-02-30 10:13:07",
            "2026-11-30 24:00:00",
            "2026-11-30 10:13:07+01:00",
            "20261130 10:13:07",
            "2026-1a-30 10:13:07",
            "",
        ] {
            assert_eq!(parse_nova_text(text), None, "{text}");
        }
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
