//! The few statements that need the inner connection of each backend
//! (diesel's `MultiConnection` cannot build multi-row inserts).

use diesel::prelude::*;
use mapping_diesel::__private::timestamp::NovaTimestamp;
use mapping_diesel::{Database, DbConnection};
use mapping_model::schema::host_mappings;
use mapping_model::CellMapping;

use crate::cells::CellConnections;
use crate::{Error, Result};

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

/// Runs a `nova_api` query on a pooled connection.
pub(crate) fn api_query<T>(
    api: &Database,
    operation: &'static str,
    f: impl FnOnce(&mut DbConnection) -> QueryResult<T>,
) -> Result<T> {
    api.with_connection(|c| Ok(f(c)))?
        .map_err(Error::api(operation))
}

/// The per-cell batch read: runs `query` on `cell`'s database for each
/// chunk of at most [`IN_CHUNK`] instance uuids (one connection, one
/// statement per chunk) and collects the rows; a failure is
/// [`Error::CellQuery`] naming the cell and `operation`.
pub(crate) fn read_cell_by_uuids<U: AsRef<str>, T>(
    cells: &impl CellConnections,
    cell: &CellMapping,
    uuids: &[U],
    operation: &'static str,
    query: impl Fn(&mut DbConnection, &[&str]) -> QueryResult<Vec<T>>,
) -> Result<Vec<T>> {
    let uuids: Vec<&str> = uuids.iter().map(AsRef::as_ref).collect();
    cells.with_cell(cell, &mut |c| {
        let mut out = Vec::new();
        for chunk in uuids.chunks(IN_CHUNK) {
            out.extend(query(c, chunk).map_err(|source| Error::CellQuery {
                cell: cell.identity(),
                operation,
                source,
            })?);
        }
        Ok(out)
    })
}
