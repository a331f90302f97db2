//! Nova's two online data migrations of `instance_mappings`.
//!
//! They write many mappings in a few statements, outside the object API's
//! per-row writes; a migration that changed any row then invalidates the
//! mapping cache of every process (`Database::clear_cache`), so that no
//! cached copy of a migrated mapping is served after it returns. (They are
//! run rarely, by an operator.)

use std::collections::{BTreeMap, HashMap, HashSet};

use diesel::prelude::*;
use mapping_diesel::__private::timestamp::{now, NovaTimestamp};
use mapping_diesel::Database;
use mapping_model::cell_schema::instances;
use mapping_model::schema::instance_mappings;
use mapping_model::CellMapping;

use crate::cells::CellConnections;
use crate::sql::{api_query, read_cell_by_uuids, IN_CHUNK};
use crate::{Error, Result, FAKE_PROJECT_ID};

/// What one pass of an online data migration did, as Nova reports it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct MigrationCount {
    /// Rows that needed the migration (at most `max_count`).
    pub found: u64,
    /// Rows migrated.
    pub done: u64,
}

fn check_max(max_count: i64) -> Result<u64> {
    if max_count < 1 {
        return Err(Error::InvalidMaxCount(max_count));
    }
    Ok(u64::try_from(max_count).unwrap_or(0))
}

/// `populate_queued_for_delete`: per cell, up to `max_count` mappings (in
/// all) whose `queued_for_delete` is NULL; those whose instance is deleted
/// (`deleted = id`) or soft-deleted become true, the rest false (docs/cellv2.md).
/// Returns `(found, done)`, equal as in Nova. Per cell: one read of the
/// mappings, one of the instances, two updates.
pub fn populate_queued_for_delete(
    api: &Database,
    cells: &impl CellConnections,
    max_count: i64,
) -> Result<MigrationCount> {
    let mut left = check_max(max_count)?;
    let mut processed = 0u64;
    for cell in api.cells().get_all()? {
        let limit = i64::try_from(left).unwrap_or(i64::MAX);
        let uuids: Vec<String> = api_query(api, "reading mappings to migrate", |c| {
            instance_mappings::table
                .filter(instance_mappings::queued_for_delete.is_null())
                .filter(instance_mappings::cell_id.eq(cell.id))
                .select(instance_mappings::instance_uuid)
                .limit(limit)
                .load(c)
        })?;
        if uuids.is_empty() {
            continue;
        }
        let deleted: HashSet<String> = read_cell_by_uuids(
            cells,
            &cell,
            &uuids,
            "reading deleted instances",
            |c, chunk| {
                instances::table
                    .filter(instances::uuid.eq_any(chunk))
                    .filter(
                        instances::deleted
                            .eq(instances::id.nullable())
                            .or(instances::vm_state.eq("soft-delete")),
                    )
                    .select(instances::uuid)
                    .load::<String>(c)
            },
        )?
        .into_iter()
        .collect();
        let (gone, live): (Vec<&str>, Vec<&str>) = uuids
            .iter()
            .map(String::as_str)
            .partition(|u| deleted.contains(*u));
        let ts = NovaTimestamp(now(api.backend()));
        api_query(api, "setting queued_for_delete", |c| {
            c.transaction(|c| {
                for (set, value) in [(&gone, true), (&live, false)] {
                    for chunk in set.chunks(IN_CHUNK) {
                        diesel::update(
                            instance_mappings::table
                                .filter(instance_mappings::instance_uuid.eq_any(chunk))
                                .filter(instance_mappings::queued_for_delete.is_null()),
                        )
                        .set((
                            instance_mappings::queued_for_delete.eq(Some(value)),
                            instance_mappings::updated_at.eq(Some(ts)),
                        ))
                        .execute(c)?;
                    }
                }
                Ok(())
            })
        })?;
        let n = uuids.len() as u64;
        api.clear_cache();
        processed += n;
        tracing::info!(cell = %cell.identity(), migrated = n, queued = gone.len(), "populated queued_for_delete");
        left = left.saturating_sub(n);
        if left == 0 {
            break;
        }
    }
    Ok(MigrationCount {
        found: processed,
        done: processed,
    })
}

/// `populate_user_id`: up to `max_count` mappings with `user_id` NULL
/// (except those of project [`FAKE_PROJECT_ID`]) take the `user_id` of their
/// live (or soft-deleted) instance, as Nova reads it. An unscheduled
/// mapping, or one whose instance is not found (deleted, archived, or in a
/// cell that cannot be read), stays NULL and is counted as found but not
/// done (docs/cellv2.md). Per cell: one read of the instances and one update per
/// distinct user.
pub fn populate_user_id(
    api: &Database,
    cells: &impl CellConnections,
    max_count: i64,
) -> Result<MigrationCount> {
    let max = check_max(max_count)?;
    let limit = i64::try_from(max).unwrap_or(i64::MAX);
    let rows: Vec<(String, Option<i32>)> = api_query(api, "reading mappings to migrate", |c| {
        instance_mappings::table
            .filter(instance_mappings::user_id.is_null())
            .filter(instance_mappings::project_id.ne(FAKE_PROJECT_ID))
            .select((instance_mappings::instance_uuid, instance_mappings::cell_id))
            .limit(limit)
            .load(c)
    })?;
    let found = rows.len() as u64;
    let mut by_cell: BTreeMap<Option<i32>, Vec<String>> = BTreeMap::new();
    for (uuid, cell_id) in rows {
        by_cell.entry(cell_id).or_default().push(uuid);
    }
    let cells_by_id: HashMap<i32, CellMapping> = api
        .cells()
        .get_all()?
        .into_iter()
        .map(|c| (c.id, c))
        .collect();
    let mut done = 0u64;
    let mut unmigratable = false;
    for (cell_id, uuids) in by_cell {
        let Some(cell) = cell_id.and_then(|id| cells_by_id.get(&id)) else {
            // Unscheduled (or a cell that is gone): nothing to read from.
            unmigratable = true;
            continue;
        };
        let users =
            read_cell_by_uuids(cells, cell, &uuids, "reading instance users", |c, chunk| {
                instances::table
                    .filter(instances::uuid.eq_any(chunk))
                    .filter(instances::deleted.eq(0))
                    .select((instances::uuid, instances::user_id))
                    .load::<(String, Option<String>)>(c)
            });
        let users = match users {
            Ok(u) => u,
            Err(e) => {
                // Nova goes on with the next cell.
                tracing::warn!(cell = %cell.identity(), error = %e, "cannot read the cell; its mappings stay unmigrated");
                unmigratable = true;
                continue;
            }
        };
        let mut by_user: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for (uuid, user) in users {
            if let Some(user) = user {
                by_user.entry(user).or_default().push(uuid);
            }
        }
        let filled: usize = by_user.values().map(Vec::len).sum();
        if filled < uuids.len() {
            unmigratable = true;
        }
        let ts = NovaTimestamp(now(api.backend()));
        let n = api_query(api, "setting user_id", |c| {
            c.transaction(|c| {
                let mut n = 0;
                for (user, uuids) in &by_user {
                    for chunk in uuids.chunks(IN_CHUNK) {
                        n += diesel::update(
                            instance_mappings::table
                                .filter(instance_mappings::instance_uuid.eq_any(chunk))
                                .filter(instance_mappings::user_id.is_null()),
                        )
                        .set((
                            instance_mappings::user_id.eq(Some(user.as_str())),
                            instance_mappings::updated_at.eq(Some(ts)),
                        ))
                        .execute(c)?;
                    }
                }
                Ok(n)
            })
        })?;
        if n > 0 {
            api.clear_cache();
        }
        done += n as u64;
    }
    if unmigratable {
        tracing::warn!(
            "some instance mappings were not migratable: unscheduled (in-flight builds) \
             or their instance is gone from its cell (archive_deleted_rows --purge cleans them)"
        );
    }
    Ok(MigrationCount { found, done })
}
