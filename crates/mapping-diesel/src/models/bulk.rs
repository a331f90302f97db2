//! Batch writes of instance mappings: many rows per statement, one
//! transaction for the whole batch.
//!
//! [`InstanceMappings::create_bulk`](crate::InstanceMappings::create_bulk) is
//! the entry point. Rows go in multi-row `INSERT ... VALUES (..), (..)`
//! statements through diesel's shared query builder (the same code path on
//! every backend); each statement holds as many rows as the backend's
//! bind-parameter limit allows ([`rows_per_statement`]). No `RETURNING` is
//! used, so MySQL/MariaDB need nothing special.

use std::collections::{HashMap, HashSet};

use diesel::prelude::*;
use mapping_model::schema::{cell_mappings, instance_mappings};
use mapping_model::{CellMapping, Error, NewInstanceMapping, Result};

use super::{InstanceInsert, UUID_CHUNK};
use crate::connection::DbConnection;
use crate::db::Tx;
use crate::errors::{db_err, is_fk_violation, is_unique_violation};
use crate::timestamp::NovaTimestamp;
use crate::url::BackendKind;

/// Columns bound per row of a bulk insert.
const COLUMNS_PER_ROW: usize = 6;

/// Most rows in one insert statement, whatever the backend allows: larger
/// statements are no faster (measured, see docs/benchmarks.md) and cost more
/// memory on client and server.
const MAX_ROWS_PER_STATEMENT: usize = 2_000;

/// Most bind parameters one statement may carry on `backend`: SQLite's
/// `SQLITE_MAX_VARIABLE_NUMBER` (32,766 since 3.32, the bundled library's
/// default), and the 16-bit parameter count of the PostgreSQL and MySQL
/// wire protocols (65,535).
pub const fn max_bind_params(backend: BackendKind) -> usize {
    match backend {
        BackendKind::Sqlite => 32_766,
        BackendKind::Postgres | BackendKind::Mysql => 65_535,
    }
}

/// Rows per multi-row insert statement on `backend`.
pub const fn rows_per_statement(backend: BackendKind) -> usize {
    let by_limit = max_bind_params(backend) / COLUMNS_PER_ROW;
    if by_limit < MAX_ROWS_PER_STATEMENT {
        by_limit
    } else {
        MAX_ROWS_PER_STATEMENT
    }
}

/// The validated input of a bulk create: canonical uuids, no duplicates.
pub(crate) struct BulkCreate {
    rows: Vec<NewInstanceMapping>,
}

impl BulkCreate {
    /// Validates every mapping (nothing is written when one is invalid) and
    /// refuses a batch that names one instance twice.
    pub(crate) fn prepare(news: Vec<NewInstanceMapping>) -> Result<Self> {
        let rows = news
            .into_iter()
            .map(NewInstanceMapping::validated)
            .collect::<Result<Vec<_>>>()?;
        let mut seen = HashSet::with_capacity(rows.len());
        for r in &rows {
            if !seen.insert(r.instance_uuid.as_str()) {
                return Err(Error::InstanceMappingExists {
                    instance_uuid: r.instance_uuid.clone(),
                });
            }
        }
        Ok(Self { rows })
    }

    /// The instance uuids of the batch (canonical), for the cache.
    pub(crate) fn uuids(&self) -> impl Iterator<Item = &str> {
        self.rows.iter().map(|r| r.instance_uuid.as_str())
    }
}

/// Inserts every row of `batch` atomically (a transaction, or a savepoint
/// inside the caller's); returns the number of rows written.
pub(crate) fn create_bulk(tx: &mut Tx<'_>, batch: &BulkCreate) -> Result<usize> {
    if batch.rows.is_empty() {
        return Ok(0);
    }
    let now = NovaTimestamp(tx.now());
    let per_statement = rows_per_statement(tx.backend());
    let outcome = tx.atomic(|tx| {
        let mut written = 0;
        let mut values = Vec::with_capacity(per_statement.min(batch.rows.len()));
        for chunk in batch.rows.chunks(per_statement) {
            values.clear();
            values.extend(chunk.iter().map(|n| InstanceInsert {
                created_at: now,
                instance_uuid: &n.instance_uuid,
                cell_id: n.cell_mapping.as_ref().map(|c| c.id),
                project_id: &n.project_id,
                user_id: &n.user_id,
                queued_for_delete: n.queued_for_delete.unwrap_or(false),
            }));
            written += insert_rows(tx.conn, &values)
                .map_err(db_err("instance_mapping_list.create_bulk"))?;
        }
        verify_cells(tx, batch)?;
        Ok(written)
    });
    match outcome {
        Err(Error::Database { source, .. }) if is_unique_violation(&source) => {
            Err(Error::InstanceMappingExists {
                instance_uuid: existing_uuid(tx, batch)?,
            })
        }
        Err(Error::Database { source, .. }) if is_fk_violation(&source) => {
            Err(Error::CellMappingNotFound {
                uuid: missing_cell(tx, batch)?,
            })
        }
        other => other,
    }
}

/// One multi-row insert. diesel's `MultiConnection` cannot build batch
/// inserts (its backend lacks the per-backend insert dialects), so this is
/// the per-backend escape hatch: the same diesel statement, run on the inner
/// connection of each backend (inside the transaction already open on it).
fn insert_rows(conn: &mut DbConnection, values: &Vec<InstanceInsert<'_>>) -> QueryResult<usize> {
    match conn {
        // PostgreSQL: COPY (binary) instead of a multi-row INSERT: the server
        // need not parse and plan a statement with thousands of parameters
        // for every chunk. Same constraints, triggers and errors.
        #[cfg(feature = "postgres")]
        DbConnection::Postgres(c) => diesel::copy_from(instance_mappings::table)
            .from_insertable(values)
            .execute(c),
        other => {
            let insert = diesel::insert_into(instance_mappings::table).values(values);
            super::on_inner!(other, |c| insert.execute(c))
        }
    }
}

/// After a unique violation (the batch rolled back): one uuid of the batch
/// that already has a mapping. The first uuid of the batch if the row has
/// gone again meanwhile.
fn existing_uuid(tx: &mut Tx<'_>, batch: &BulkCreate) -> Result<String> {
    let uuids: Vec<&str> = batch
        .rows
        .iter()
        .map(|r| r.instance_uuid.as_str())
        .collect();
    for chunk in uuids.chunks(UUID_CHUNK) {
        let found = instance_mappings::table
            .filter(instance_mappings::instance_uuid.eq_any(chunk))
            .select(instance_mappings::instance_uuid)
            .first::<String>(tx.conn)
            .optional()
            .map_err(db_err("instance_mapping_list.create_bulk"))?;
        if let Some(u) = found {
            return Ok(u);
        }
    }
    Ok(uuids.first().map(|u| (*u).to_owned()).unwrap_or_default())
}

/// Checks every cell the batch names against its stored row, by id and
/// uuid together (after the insert, which locked the rows it references):
/// a stale or hand-built cell object is [`Error::CellMappingNotFound`].
fn verify_cells(tx: &mut Tx<'_>, batch: &BulkCreate) -> Result<()> {
    let mut named: HashMap<i32, &CellMapping> = HashMap::new();
    for c in batch.rows.iter().filter_map(|r| r.cell_mapping.as_ref()) {
        if let Some(other) = named.insert(c.id, c) {
            if other.uuid != c.uuid {
                return Err(Error::CellMappingNotFound {
                    uuid: other.uuid.to_string(),
                });
            }
        }
    }
    let ids: Vec<i32> = named.keys().copied().collect();
    let mut stored: HashMap<i32, String> = HashMap::new();
    for chunk in ids.chunks(UUID_CHUNK) {
        stored.extend(
            cell_mappings::table
                .filter(cell_mappings::id.eq_any(chunk))
                .select((cell_mappings::id, cell_mappings::uuid))
                .load::<(i32, String)>(tx.conn)
                .map_err(db_err("instance_mapping_list.create_bulk"))?,
        );
    }
    for (id, cell) in named {
        // Compared as UUIDs, as `verified` does for a single create.
        let matches = stored
            .get(&id)
            .and_then(|s| mapping_model::Uuid::parse_str(s).ok())
            .is_some_and(|s| s == cell.uuid);
        if !matches {
            return Err(Error::CellMappingNotFound {
                uuid: cell.uuid.to_string(),
            });
        }
    }
    Ok(())
}

/// After a foreign-key violation (the batch rolled back): the uuid of a cell
/// named by the batch that does not exist.
fn missing_cell(tx: &mut Tx<'_>, batch: &BulkCreate) -> Result<String> {
    let mut cells: HashMap<i32, &CellMapping> = HashMap::new();
    for c in batch.rows.iter().filter_map(|r| r.cell_mapping.as_ref()) {
        cells.entry(c.id).or_insert(c);
    }
    let ids: Vec<i32> = cells.keys().copied().collect();
    let mut present = HashSet::new();
    for chunk in ids.chunks(UUID_CHUNK) {
        present.extend(
            cell_mappings::table
                .filter(cell_mappings::id.eq_any(chunk))
                .select(cell_mappings::id)
                .load::<i32>(tx.conn)
                .map_err(db_err("instance_mapping_list.create_bulk"))?,
        );
    }
    Ok(batch
        .rows
        .iter()
        .filter_map(|r| r.cell_mapping.as_ref())
        .find(|c| !present.contains(&c.id))
        .map(|c| c.uuid.to_string())
        .unwrap_or_default())
}
