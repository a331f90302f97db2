//! Removing cells and hosts with nova-manage's safety checks.

use diesel::prelude::*;
use mapping_diesel::Database;
use mapping_model::cell_schema::{compute_nodes, instances};
use mapping_model::schema::host_mappings;
use mapping_model::{CellMapping, Error as ModelError};

use crate::cells::CellConnections;
use crate::{Error, Result};

/// What [`delete_cell`] did (nova-manage `cell_v2 delete_cell` exit codes).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeleteCellOutcome {
    /// Deleted, with its host and instance mappings when forced (0).
    Deleted,
    /// No cell with this uuid (1).
    NotFound,
    /// Hosts are mapped to the cell and `force` was not given (2).
    HasHosts,
    /// Live instances are in the cell (3).
    HasInstances,
    /// Only mappings of deleted instances remain and `force` was not given (4).
    HasInstanceMappings,
}

impl DeleteCellOutcome {
    /// nova-manage's exit code.
    pub fn exit_code(self) -> i32 {
        match self {
            DeleteCellOutcome::Deleted => 0,
            DeleteCellOutcome::NotFound => 1,
            DeleteCellOutcome::HasHosts => 2,
            DeleteCellOutcome::HasInstances => 3,
            DeleteCellOutcome::HasInstanceMappings => 4,
        }
    }
}

fn cell_err<'a>(
    cell: &'a CellMapping,
    operation: &'static str,
) -> impl Fn(diesel::result::Error) -> Error + 'a {
    move |source| Error::CellQuery {
        cell: cell.identity(),
        operation,
        source,
    }
}

/// Deletes the cell `cell_uuid` as nova-manage does (a `cell_uuid` that is
/// not a UUID is [`DeleteCellOutcome::NotFound`]): refused while hosts
/// are mapped to it (unless `force`), while live instances are in it, or
/// while mappings of deleted instances remain (unless `force`). Forced, it
/// removes the instance mappings (in bulk), marks the cell's compute nodes
/// unmapped (so that they can be discovered again) and removes the host
/// mappings before the cell. The cell database is read only when mappings
/// point to the cell.
pub fn delete_cell(
    api: &Database,
    cells: &impl CellConnections,
    cell_uuid: &str,
    force: bool,
) -> Result<DeleteCellOutcome> {
    let cell = match api.cells().get_by_uuid(cell_uuid) {
        Ok(c) => c,
        // A uuid that is not one names no cell: nova-manage's "not found".
        Err(ModelError::CellMappingNotFound { .. } | ModelError::InvalidInput { .. }) => {
            return Ok(DeleteCellOutcome::NotFound)
        }
        Err(e) => return Err(e.into()),
    };
    let hosts = api.host_mappings().get_by_cell_id(cell.id)?;
    if !hosts.is_empty() && !force {
        return Ok(DeleteCellOutcome::HasHosts);
    }
    let mappings = api.instance_mappings().get_by_cell_id(cell.id)?;
    if !mappings.is_empty() {
        let live: i64 = cells.with_cell(&cell, &mut |c| {
            instances::table
                .filter(instances::deleted.eq(0))
                .count()
                .get_result(c)
                .map_err(cell_err(&cell, "counting live instances"))
        })?;
        if live > 0 {
            return Ok(DeleteCellOutcome::HasInstances);
        }
        if !force {
            return Ok(DeleteCellOutcome::HasInstanceMappings);
        }
        let uuids: Vec<&str> = mappings.iter().map(|m| m.instance_uuid.as_str()).collect();
        api.instance_mappings().destroy_bulk(&uuids)?;
    }
    if !hosts.is_empty() {
        cells.with_cell(&cell, &mut |c| {
            diesel::update(compute_nodes::table.filter(compute_nodes::deleted.eq(0)))
                .set(compute_nodes::mapped.eq(Some(0)))
                .execute(c)
                .map_err(cell_err(&cell, "unmapping compute nodes"))
        })?;
        api.with_connection(|c| {
            Ok(
                diesel::delete(host_mappings::table.filter(host_mappings::cell_id.eq(cell.id)))
                    .execute(c),
            )
        })?
        .map_err(Error::api("deleting the cell's host mappings"))?;
    }
    api.cells().destroy(cell.uuid)?;
    tracing::info!(cell = %cell.identity(), force, "deleted cell");
    Ok(DeleteCellOutcome::Deleted)
}

/// What [`delete_host`] did (nova-manage `cell_v2 delete_host` exit codes).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeleteHostOutcome {
    /// Deleted (0).
    Deleted,
    /// No cell with this uuid (1).
    CellNotFound,
    /// No host mapping for the host (2).
    HostNotFound,
    /// The host is mapped to another cell (3).
    InOtherCell,
    /// Live instances are on the host (4).
    HasInstances,
}

impl DeleteHostOutcome {
    /// nova-manage's exit code.
    pub fn exit_code(self) -> i32 {
        match self {
            DeleteHostOutcome::Deleted => 0,
            DeleteHostOutcome::CellNotFound => 1,
            DeleteHostOutcome::HostNotFound => 2,
            DeleteHostOutcome::InOtherCell => 3,
            DeleteHostOutcome::HasInstances => 4,
        }
    }
}

/// Deletes the host mapping of `host` in the cell `cell_uuid` as nova-manage
/// does: refused while live instances are on the host; the host's compute
/// nodes are marked unmapped first. A `cell_uuid` that is not a UUID is
/// [`DeleteHostOutcome::CellNotFound`].
pub fn delete_host(
    api: &Database,
    cells: &impl CellConnections,
    cell_uuid: &str,
    host: &str,
) -> Result<DeleteHostOutcome> {
    let cell = match api.cells().get_by_uuid(cell_uuid) {
        Ok(c) => c,
        Err(ModelError::CellMappingNotFound { .. } | ModelError::InvalidInput { .. }) => {
            return Ok(DeleteHostOutcome::CellNotFound)
        }
        Err(e) => return Err(e.into()),
    };
    let mapping = match api.host_mappings().get_by_host(host) {
        Ok(m) => m,
        Err(ModelError::HostMappingNotFound { .. }) => return Ok(DeleteHostOutcome::HostNotFound),
        Err(e) => return Err(e.into()),
    };
    if mapping.cell_mapping.uuid != cell.uuid {
        return Ok(DeleteHostOutcome::InOtherCell);
    }
    let busy: i64 = cells.with_cell(&cell, &mut |c| {
        instances::table
            .filter(instances::host.eq(host))
            .filter(instances::deleted.eq(0))
            .count()
            .get_result(c)
            .map_err(cell_err(&cell, "counting instances on the host"))
    })?;
    if busy > 0 {
        return Ok(DeleteHostOutcome::HasInstances);
    }
    cells.with_cell(&cell, &mut |c| {
        diesel::update(
            compute_nodes::table
                .filter(compute_nodes::host.eq(host))
                .filter(compute_nodes::deleted.eq(0)),
        )
        .set(compute_nodes::mapped.eq(Some(0)))
        .execute(c)
        .map_err(cell_err(&cell, "unmapping the host's compute nodes"))
    })?;
    match api.host_mappings().destroy(host) {
        Ok(()) | Err(ModelError::HostMappingNotFound { .. }) => {}
        Err(e) => return Err(e.into()),
    }
    Ok(DeleteHostOutcome::Deleted)
}
