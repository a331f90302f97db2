//! `map_instances`: an instance mapping for every instance of a cell.

use std::collections::HashSet;

use chrono::NaiveDateTime;
use diesel::prelude::*;
use mapping_diesel::__private::timestamp::{MaybeTimestamp, NovaTimestamp};
use mapping_diesel::Database;
use mapping_model::cell_schema::instances;
use mapping_model::{validate, CellMapping, InstanceUuid, NewInstanceMapping, ToUuid, Uuid};

use crate::cells::CellConnections;
use crate::{Error, Result, MAP_INSTANCES_BATCH_SIZE};

/// How [`map_instances`] runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MapInstancesOptions {
    /// Map at most this many instances, then record where the run stopped
    /// (nova-manage's `--max-count`); `None` maps to the end.
    pub max_count: Option<i64>,
    /// Ignore (and remove) the marker of an earlier run and start from the
    /// oldest instance (nova-manage's `--reset`).
    pub reset: bool,
    /// Instances read and mapped per batch (at least 1).
    pub batch_size: usize,
}

impl Default for MapInstancesOptions {
    fn default() -> Self {
        Self {
            max_count: None,
            reset: false,
            batch_size: MAP_INSTANCES_BATCH_SIZE,
        }
    }
}

/// What a [`map_instances`] run did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MapInstancesReport {
    /// Instances of the cell looked at.
    pub processed: u64,
    /// Mappings created.
    pub mapped: u64,
    /// Instances that already had a mapping (left as they were).
    pub already_mapped: u64,
    /// Instances that cannot be mapped (no project or user id, or a uuid
    /// that is not one), left alone and logged.
    pub unmappable: Vec<String>,
    /// True when the run reached the last instance; false when it stopped at
    /// `max_count` and left a marker (nova-manage exits with 1 then).
    pub complete: bool,
}

/// Progress of a [`map_instances`] run, reported after every batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MapProgress {
    /// Instances looked at so far in this run.
    pub processed: u64,
    /// Instances in the cell (deleted ones included) when the run started.
    pub total: u64,
}

#[derive(Queryable)]
struct InstanceRow {
    id: i32,
    uuid: String,
    project_id: Option<String>,
    user_id: Option<String>,
    #[diesel(deserialize_as = MaybeTimestamp)]
    created_at: Option<NaiveDateTime>,
    deleted: Option<i32>,
    vm_state: Option<String>,
}

/// Where the next batch starts: after this `(created_at, id)`.
type Position = (Option<NaiveDateTime>, i32);

/// Maps every instance of the cell `cell_uuid` (deleted ones included),
/// oldest first (`created_at`, then `id`), to that cell with its project and
/// user; instances that already have a mapping are skipped (docs/cellv2.md).
///
/// Compatible with `nova-manage cell_v2 map_instances`: the run starts after
/// the instance named by the marker row (unless `reset`), and when it stops
/// at `max_count` it leaves a marker naming the last instance it looked at,
/// in Nova's format (through `mapping-diesel`'s `InstanceMappings::marker`
/// and `set_marker`). Should the last instances of a batch have no valid
/// uuid, the marker names the last one that has: the next run looks at
/// the few after it again, which changes nothing. Unlike nova-manage, the marker is also moved forward
/// after every batch of a run to the end, so an interrupted run resumes
/// where it stopped, and deleted or soft-deleted instances are mapped with
/// `queued_for_delete` true (nova-manage writes false, which
/// `populate_queued_for_delete` cannot correct later).
///
/// `progress` is called after every batch.
pub fn map_instances(
    api: &Database,
    cells: &impl CellConnections,
    cell_uuid: impl ToUuid,
    options: MapInstancesOptions,
    progress: &mut dyn FnMut(MapProgress),
) -> Result<MapInstancesReport> {
    if let Some(n) = options.max_count {
        if n < 1 {
            return Err(Error::InvalidMaxCount(n));
        }
    }
    let cell = api.cells().get_by_uuid(cell_uuid)?;
    let batch_size = options.batch_size.max(1);
    let marker = if options.reset {
        api.instance_mappings().delete_marker()?;
        None
    } else {
        api.instance_mappings().marker()?
    };
    let mut position = match &marker {
        None => None,
        Some(uuid) => Some(marker_position(cells, &cell, uuid)?),
    };
    let total = count_instances(cells, &cell)?;
    let mut report = MapInstancesReport::default();
    let mut last_uuid: Option<Uuid> = None;
    tracing::info!(cell = %cell.identity(), ?marker, total, "mapping instances");
    loop {
        let limit = match options.max_count {
            Some(max) => {
                let left = u64::try_from(max)
                    .unwrap_or(0)
                    .saturating_sub(report.processed);
                usize::try_from(left).unwrap_or(usize::MAX).min(batch_size)
            }
            None => batch_size,
        };
        let rows = read_batch(cells, &cell, position, limit)?;
        let got = rows.len();
        if let Some(last) = rows.last() {
            position = Some((last.created_at, last.id));
        }
        if let Some(u) = rows
            .iter()
            .rev()
            .find_map(|r| Uuid::parse_str(&r.uuid).ok())
        {
            last_uuid = Some(u);
        }
        map_batch(api, &cell, rows, &mut report)?;
        progress(MapProgress {
            processed: report.processed,
            total,
        });
        let reached_max = options
            .max_count
            .is_some_and(|max| report.processed >= u64::try_from(max).unwrap_or(0));
        if got < limit || got == 0 {
            // The end of the instances table.
            api.instance_mappings().delete_marker()?;
            report.complete = true;
            break;
        }
        // A checkpoint (and, at max_count, the resume point for the next run).
        match last_uuid {
            Some(last) => api.instance_mappings().set_marker(last)?,
            None => {
                api.instance_mappings().delete_marker()?;
            }
        }
        if reached_max {
            report.complete = false;
            break;
        }
    }
    tracing::info!(
        cell = %cell.identity(),
        processed = report.processed,
        mapped = report.mapped,
        complete = report.complete,
        "mapped instances"
    );
    Ok(report)
}

/// `(created_at, id)` of the instance the marker names.
fn marker_position(
    cells: &impl CellConnections,
    cell: &CellMapping,
    uuid: &Uuid,
) -> Result<Position> {
    let text = uuid.hyphenated().to_string();
    let found = cells.with_cell(cell, &mut |c| {
        instances::table
            .filter(instances::uuid.eq(&text))
            .select((instances::created_at, instances::id))
            .first::<(MaybeTimestamp, i32)>(c)
            .optional()
            .map_err(|source| Error::CellQuery {
                cell: cell.identity(),
                operation: "looking up the marker's instance",
                source,
            })
    })?;
    match found {
        Some((created_at, id)) => Ok((created_at.0, id)),
        None => Err(Error::MarkerNotFound {
            instance_uuid: text,
            cell: cell.identity(),
        }),
    }
}

fn count_instances(cells: &impl CellConnections, cell: &CellMapping) -> Result<u64> {
    let n = cells.with_cell(cell, &mut |c| {
        instances::table
            .count()
            .get_result::<i64>(c)
            .map_err(|source| Error::CellQuery {
                cell: cell.identity(),
                operation: "counting instances",
                source,
            })
    })?;
    Ok(u64::try_from(n).unwrap_or(0))
}

/// The next `limit` instances after `after`, in `(created_at, id)` order.
fn read_batch(
    cells: &impl CellConnections,
    cell: &CellMapping,
    after: Option<Position>,
    limit: usize,
) -> Result<Vec<InstanceRow>> {
    let limit_i64 = i64::try_from(limit).unwrap_or(i64::MAX);
    cells.with_cell(cell, &mut |c| {
        let mut q = instances::table
            .select((
                instances::id,
                instances::uuid,
                instances::project_id,
                instances::user_id,
                instances::created_at,
                instances::deleted,
                instances::vm_state,
            ))
            .order((instances::created_at.asc(), instances::id.asc()))
            .limit(limit_i64)
            .into_boxed();
        // NULL created_at (never written by Nova) sorts first on SQLite and
        // MySQL and last on PostgreSQL, as in Nova's own query; the keyset
        // follows the backend's order.
        let nulls_last = c.backend() == mapping_diesel::BackendKind::Postgres;
        let null = instances::created_at.is_null();
        let not_null = instances::created_at.is_not_null();
        match after {
            None => {}
            Some((Some(at), id)) => {
                let at = NovaTimestamp(at);
                let later = instances::created_at
                    .gt(at)
                    .or(instances::created_at.eq(at).and(instances::id.gt(id)));
                q = if nulls_last {
                    q.filter(later.or(null))
                } else {
                    q.filter(later)
                };
            }
            Some((None, id)) => {
                let same = null.and(instances::id.gt(id));
                q = if nulls_last {
                    q.filter(same)
                } else {
                    q.filter(same.or(not_null))
                };
            }
        }
        q.load::<InstanceRow>(c).map_err(|source| Error::CellQuery {
            cell: cell.identity(),
            operation: "reading instances",
            source,
        })
    })
}

/// Creates the mappings missing for `rows`, in bulk; a batch that collides
/// with a concurrent writer (nova-manage, another run) is read again and
/// retried.
fn map_batch(
    api: &Database,
    cell: &CellMapping,
    rows: Vec<InstanceRow>,
    report: &mut MapInstancesReport,
) -> Result<()> {
    report.processed += rows.len() as u64;
    let mut candidates = Vec::with_capacity(rows.len());
    for row in rows {
        let deleted =
            row.deleted.is_some_and(|d| d != 0) || row.vm_state.as_deref() == Some("soft-delete");
        match (
            validate::uuid("instance_uuid", &row.uuid),
            row.project_id,
            row.user_id,
        ) {
            (Ok(uuid), Some(project), Some(user)) if !project.is_empty() && !user.is_empty() => {
                candidates.push(
                    NewInstanceMapping::new(uuid, project, user)
                        .cell(cell)
                        .queued_for_delete(deleted),
                );
            }
            _ => {
                tracing::warn!(
                    cell = %cell.identity(),
                    instance = %row.uuid,
                    "instance has no valid uuid, project_id or user_id; not mapped"
                );
                report.unmappable.push(row.uuid);
            }
        }
    }
    const ATTEMPTS: u32 = 5;
    for _ in 0..ATTEMPTS {
        let uuids: Vec<&str> = candidates
            .iter()
            .map(|n| n.instance_uuid.as_str())
            .collect();
        let existing: HashSet<InstanceUuid> = api
            .instance_mappings()
            .get_by_instance_uuids(&uuids)?
            .into_iter()
            .map(|m| m.instance_uuid)
            .collect();
        let news: Vec<NewInstanceMapping> = candidates
            .iter()
            .filter(|n| !existing.contains(n.instance_uuid.as_str()))
            .cloned()
            .collect();
        let skipped = (candidates.len() - news.len()) as u64;
        match api.instance_mappings().create_bulk(news) {
            Ok(written) => {
                report.mapped += written as u64;
                report.already_mapped += skipped;
                return Ok(());
            }
            Err(mapping_model::Error::InstanceMappingExists { instance_uuid }) => {
                tracing::info!(%instance_uuid, "batch collided with a concurrent writer, retrying");
            }
            Err(e) => return Err(e.into()),
        }
    }
    Err(Error::Contended {
        what: "instance mappings",
        attempts: ATTEMPTS,
    })
}
