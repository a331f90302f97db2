//! `discover_hosts`: host mappings for the compute hosts of the cells.

use std::collections::{BTreeMap, HashSet};

use diesel::prelude::*;
use mapping_diesel::__private::timestamp::{now, NovaTimestamp};
use mapping_diesel::Database;
use mapping_model::cell_schema::{compute_nodes, services};
use mapping_model::schema::host_mappings;
use mapping_model::CellMapping;

use crate::cells::CellConnections;
use crate::sql::{insert_host_mappings, is_unique_violation, IN_CHUNK};
use crate::{Error, Result};

/// A host mapping created by [`discover_hosts`].
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct DiscoveredHost {
    /// The compute host.
    pub host: String,
    /// The uuid of the cell it was mapped to.
    pub cell_uuid: mapping_model::Uuid,
}

/// What [`discover_hosts_per_cell`] did in one cell.
#[derive(Debug)]
pub struct CellDiscovery {
    /// The cell.
    pub cell: CellMapping,
    /// The host mappings created in it, by host, or why its hosts could
    /// not be discovered (its database did not answer, a statement failed).
    pub outcome: Result<Vec<DiscoveredHost>>,
}

/// Maps the compute hosts of every cell but cell0 (or of the cell
/// `cell_uuid`) that have no host mapping yet (docs/cellv2.md): hosts of live
/// compute nodes not yet marked `mapped`, or with `by_service`, hosts of
/// live `nova-compute` services (disabled ones included). Returns the
/// mappings created by this run, by host; when a cell failed, the first
/// cell's error, after every other cell was done (see
/// [`discover_hosts_per_cell`] for each cell's outcome).
///
/// Each cell's new mappings go in one multi-row insert. Two runs at once
/// (or a run and Nova's scheduler) create each mapping once: a run whose
/// insert collides reads the mappings again and inserts only what is still
/// missing, without an error (nova-manage exits with 2 there). Compute
/// nodes whose host is mapped to their cell get `mapped = 1`, also when
/// the mapping came from elsewhere (nova-manage only marks the nodes whose
/// mapping it created itself).
pub fn discover_hosts(
    api: &Database,
    cells: &impl CellConnections,
    cell_uuid: Option<&str>,
    by_service: bool,
) -> Result<Vec<DiscoveredHost>> {
    let mut created = Vec::new();
    for d in discover_hosts_per_cell(api, cells, cell_uuid, by_service)? {
        created.extend(d.outcome?);
    }
    created.sort();
    Ok(created)
}

/// [`discover_hosts`] cell by cell: a cell that fails (its database does
/// not answer, a statement fails) does not stop the others. Returns each
/// cell's outcome, in the order of the cells (cell0 left out). Fails as a
/// whole only when the cells cannot be listed (or `cell_uuid` names none).
pub fn discover_hosts_per_cell(
    api: &Database,
    cells: &impl CellConnections,
    cell_uuid: Option<&str>,
    by_service: bool,
) -> Result<Vec<CellDiscovery>> {
    let targets = match cell_uuid {
        Some(u) => vec![api.cells().get_by_uuid(u)?],
        None => api.cells().get_all()?,
    };
    Ok(targets
        .into_iter()
        .filter(|c| !c.is_cell0())
        .map(|cell| {
            let outcome = discover_in_cell(api, cells, &cell, by_service).map(|mut hosts| {
                hosts.sort();
                hosts
            });
            if let Err(e) = &outcome {
                tracing::warn!(cell = %cell.identity(), error = %crate::chain(e), "could not discover the cell's hosts");
            }
            CellDiscovery { cell, outcome }
        })
        .collect())
}

fn discover_in_cell(
    api: &Database,
    cells: &impl CellConnections,
    cell: &CellMapping,
    by_service: bool,
) -> Result<Vec<DiscoveredHost>> {
    let cell_err = |operation| {
        move |source| Error::CellQuery {
            cell: cell.identity(),
            operation,
            source,
        }
    };
    // host -> ids of the compute nodes on it (empty by service).
    let candidates: BTreeMap<String, Vec<i32>> = cells.with_cell(cell, &mut |c| {
        let mut by_host: BTreeMap<String, Vec<i32>> = BTreeMap::new();
        if by_service {
            let hosts = services::table
                .filter(services::binary.eq("nova-compute"))
                .filter(services::deleted.eq(0))
                .filter(services::host.is_not_null())
                .select(services::host)
                .distinct()
                .load::<Option<String>>(c)
                .map_err(cell_err("reading nova-compute services"))?;
            for h in hosts.into_iter().flatten() {
                by_host.entry(h).or_default();
            }
        } else {
            let nodes = compute_nodes::table
                .filter(compute_nodes::deleted.eq(0))
                .filter(compute_nodes::mapped.lt(1))
                .filter(compute_nodes::host.is_not_null())
                .select((compute_nodes::id, compute_nodes::host))
                .load::<(i32, Option<String>)>(c)
                .map_err(cell_err("reading unmapped compute nodes"))?;
            for (id, h) in nodes {
                if let Some(h) = h {
                    by_host.entry(h).or_default().push(id);
                }
            }
        }
        Ok(by_host)
    })?;
    tracing::info!(cell = %cell.identity(), hosts = candidates.len(), by_service, "discovering hosts");
    if candidates.is_empty() {
        return Ok(Vec::new());
    }
    let hosts: Vec<&str> = candidates.keys().map(String::as_str).collect();
    let mut created = Vec::new();
    const ATTEMPTS: u32 = 10;
    let mut attempt = 0;
    let mapped_here = loop {
        attempt += 1;
        let existing = existing_host_mappings(api, &hosts)?;
        let known: HashSet<&str> = existing.iter().map(|(h, _)| h.as_str()).collect();
        let missing: Vec<(&str, i32)> = hosts
            .iter()
            .filter(|h| !known.contains(**h))
            .map(|h| (*h, cell.id))
            .collect();
        drop(known);
        if missing.is_empty() {
            break existing
                .into_iter()
                .filter(|(_, cell_id)| *cell_id == cell.id)
                .map(|(h, _)| h)
                .collect::<HashSet<String>>();
        }
        let ts = NovaTimestamp(now(api.backend()));
        let outcome = api.with_connection(|c| {
            Ok(c.transaction::<_, diesel::result::Error, _>(|c| {
                let mut n = 0;
                for chunk in missing.chunks(IN_CHUNK) {
                    n += insert_host_mappings(c, chunk, ts)?;
                }
                Ok(n)
            }))
        })?;
        match outcome {
            Ok(_) => {
                created.extend(missing.iter().map(|(h, _)| DiscoveredHost {
                    host: (*h).to_owned(),
                    cell_uuid: cell.uuid,
                }));
                let mut here: HashSet<String> = existing
                    .into_iter()
                    .filter(|(_, cell_id)| *cell_id == cell.id)
                    .map(|(h, _)| h)
                    .collect();
                here.extend(missing.iter().map(|(h, _)| (*h).to_owned()));
                break here;
            }
            Err(e) if is_unique_violation(&e) && attempt < ATTEMPTS => {
                tracing::info!(cell = %cell.identity(), "host mappings collided with a concurrent run, reading again");
            }
            Err(e) if is_unique_violation(&e) => {
                return Err(Error::Contended {
                    what: "host mappings",
                    attempts: attempt,
                })
            }
            Err(source) => {
                return Err(Error::ApiQuery {
                    operation: "creating host mappings",
                    source,
                })
            }
        }
    };
    if !by_service {
        let node_ids: Vec<i32> = candidates
            .iter()
            .filter(|(h, _)| mapped_here.contains(*h))
            .flat_map(|(_, ids)| ids.iter().copied())
            .collect();
        cells.with_cell(cell, &mut |c| {
            for chunk in node_ids.chunks(IN_CHUNK) {
                diesel::update(compute_nodes::table.filter(compute_nodes::id.eq_any(chunk)))
                    .set(compute_nodes::mapped.eq(Some(1)))
                    .execute(c)
                    .map_err(cell_err("marking compute nodes mapped"))?;
            }
            Ok(())
        })?;
    }
    Ok(created)
}

/// `(host, cell_id)` of the host mappings among `hosts`.
fn existing_host_mappings(api: &Database, hosts: &[&str]) -> Result<Vec<(String, i32)>> {
    let r = api.with_connection(|c| {
        let mut found = Vec::new();
        for chunk in hosts.chunks(IN_CHUNK) {
            match host_mappings::table
                .filter(host_mappings::host.eq_any(chunk))
                .select((host_mappings::host, host_mappings::cell_id))
                .load::<(String, i32)>(c)
            {
                Ok(rows) => found.extend(rows),
                Err(e) => return Ok(Err(e)),
            }
        }
        Ok(Ok(found))
    })?;
    r.map_err(Error::api("reading host mappings"))
}
