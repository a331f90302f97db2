//! The few statements that need the inner connection of each backend
//! (diesel's `MultiConnection` cannot build multi-row inserts).

use diesel::prelude::*;
use mapping_diesel::timestamp::NovaTimestamp;
use mapping_diesel::DbConnection;
use mapping_model::schema::host_mappings;

/// Inserts host mappings `(host, cell_id)` in one multi-row statement;
/// returns the rows written. A backend compiled into `mapping-diesel` but
/// not enabled in this crate's features is an error, not a build failure.
pub(crate) fn insert_host_mappings(
    conn: &mut DbConnection,
    rows: &[(&str, i32)],
    now: NovaTimestamp,
) -> QueryResult<usize> {
    let values: Vec<_> = rows
        .iter()
        .map(|(host, cell_id)| {
            (
                host_mappings::created_at.eq(Some(now)),
                host_mappings::host.eq(*host),
                host_mappings::cell_id.eq(*cell_id),
            )
        })
        .collect();
    let insert = diesel::insert_into(host_mappings::table).values(values);
    match conn {
        DbConnection::Sqlite(c) => insert.execute(c),
        #[cfg(feature = "postgres")]
        DbConnection::Postgres(c) => insert.execute(c),
        #[cfg(feature = "mysql")]
        DbConnection::Mysql(c) => insert.execute(c),
        #[allow(unreachable_patterns)]
        _ => Err(diesel::result::Error::QueryBuilderError(
            "this backend is not enabled in mapping-cellv2's features".into(),
        )),
    }
}

/// Whether a driver error is a unique-constraint violation.
pub(crate) fn is_unique_violation(e: &diesel::result::Error) -> bool {
    matches!(
        e,
        diesel::result::Error::DatabaseError(diesel::result::DatabaseErrorKind::UniqueViolation, _)
    )
}

/// Most values in one `IN (...)` list.
pub(crate) const IN_CHUNK: usize = 5_000;
