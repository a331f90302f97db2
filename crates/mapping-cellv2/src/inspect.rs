//! `verify_instance`, `check` and `stats`: read-only views for operators.

use std::collections::{BTreeMap, HashMap, HashSet};

use diesel::prelude::*;
use mapping_diesel::Database;
use mapping_model::cell_schema::{compute_nodes, instances, services};
use mapping_model::schema::{cell_mappings, host_mappings, instance_mappings};
use mapping_model::{CellMapping, Error as ModelError, INSTANCE_MIGRATION_MARKER};

use crate::cells::CellConnections;
use crate::sql::{api_query, read_cell_by_uuids, IN_CHUNK};
use crate::{Error, Result};

/// Where an instance stands (nova-manage `verify_instance`, SPEC §8).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VerifyOutcome {
    /// Alive in its mapped cell (exit code 0).
    Alive(CellMapping),
    /// No mapping (1).
    NotMapped,
    /// A mapping with no cell yet (2).
    NoCell,
    /// Deleted in its cell but still mapped (3).
    Deleted(CellMapping),
    /// Gone from its cell (archived) but still mapped (4).
    Archived(CellMapping),
}

impl VerifyOutcome {
    /// nova-manage's exit code for the outcome.
    pub fn exit_code(&self) -> i32 {
        match self {
            VerifyOutcome::Alive(_) => 0,
            VerifyOutcome::NotMapped => 1,
            VerifyOutcome::NoCell => 2,
            VerifyOutcome::Deleted(_) => 3,
            VerifyOutcome::Archived(_) => 4,
        }
    }
}

/// Where the instance `uuid` stands: its mapping, and its row in the cell.
pub fn verify_instance(
    api: &Database,
    cells: &impl CellConnections,
    uuid: &str,
) -> Result<VerifyOutcome> {
    let mapping = match api.instance_mappings().get_by_instance_uuid(uuid) {
        Ok(m) => m,
        Err(ModelError::InstanceMappingNotFound { .. }) => return Ok(VerifyOutcome::NotMapped),
        Err(e) => return Err(e.into()),
    };
    let Some(cell) = mapping.cell_mapping else {
        return Ok(VerifyOutcome::NoCell);
    };
    let row = cells.with_cell(&cell, &mut |c| {
        instances::table
            .filter(instances::uuid.eq(mapping.instance_uuid.as_str()))
            .select((instances::id, instances::deleted))
            .first::<(i32, Option<i32>)>(c)
            .optional()
            .map_err(|source| Error::CellQuery {
                cell: cell.identity(),
                operation: "reading the instance",
                source,
            })
    })?;
    Ok(match row {
        None => VerifyOutcome::Archived(cell),
        Some((_, Some(d))) if d != 0 => VerifyOutcome::Deleted(cell),
        Some(_) => VerifyOutcome::Alive(cell),
    })
}

/// One kind of inconsistency found by [`check`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// A stable identifier, e.g. `instance_missing_in_cell`.
    pub kind: &'static str,
    /// How many rows have it.
    pub count: u64,
    /// Up to `SAMPLE` (10) of them (instance uuids, hosts, cells).
    pub sample: Vec<String>,
    /// What it means and what to do.
    pub hint: &'static str,
}

/// How many offending rows a [`Problem`] lists.
pub const SAMPLE: usize = 10;

/// What [`check`] found; empty `problems` means all is well.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CheckReport {
    /// The inconsistencies, one entry per kind found.
    pub problems: Vec<Problem>,
    /// Cells checked.
    pub cells_checked: usize,
    /// Instance mappings checked against their cells.
    pub mappings_checked: u64,
}

impl CheckReport {
    /// Whether nothing is wrong.
    pub fn is_ok(&self) -> bool {
        self.problems.is_empty()
    }

    fn add(&mut self, kind: &'static str, hint: &'static str, items: Vec<String>) {
        self.add_counted(kind, hint, items.len() as u64, items);
    }

    fn add_counted(
        &mut self,
        kind: &'static str,
        hint: &'static str,
        count: u64,
        mut items: Vec<String>,
    ) {
        if count == 0 {
            return;
        }
        items.truncate(SAMPLE);
        match self.problems.iter_mut().find(|p| p.kind == kind) {
            Some(p) => {
                p.count += count;
                let room = SAMPLE.saturating_sub(p.sample.len());
                p.sample.extend(items.into_iter().take(room));
            }
            None => self.problems.push(Problem {
                kind,
                count,
                sample: items,
                hint,
            }),
        }
    }
}

/// Checks `nova_api` against itself and the cells: the schema; mappings
/// whose cell id points nowhere; mappings whose instance is missing from its
/// cell, or deleted there but not queued for delete; compute hosts mapped to
/// no cell; a leftover `map_instances` marker; cells that cannot be read.
/// Reads mappings in pages and looks their instances up in bulk.
pub fn check(api: &Database, cells: &impl CellConnections) -> Result<CheckReport> {
    let mut report = CheckReport::default();
    if let Err(e) = api.check_schema() {
        report.add(
            "schema",
            "nova_api does not have the schema Nova makes (SPEC §2)",
            vec![e.to_string()],
        );
    }
    let dangling: Vec<String> = api_query(api, "reading mappings without a cell", |c| {
        instance_mappings::table
            .left_join(cell_mappings::table)
            .filter(instance_mappings::cell_id.is_not_null())
            .filter(cell_mappings::id.nullable().is_null())
            .select(instance_mappings::instance_uuid)
            .load(c)
    })?;
    report.add(
        "instance_mapping_cell_missing",
        "instance mappings whose cell_id names no cell",
        dangling,
    );
    let dangling_hosts: Vec<String> =
        api_query(api, "reading host mappings without a cell", |c| {
            host_mappings::table
                .left_join(cell_mappings::table)
                .filter(cell_mappings::id.nullable().is_null())
                .select(host_mappings::host)
                .load(c)
        })?;
    report.add(
        "host_mapping_cell_missing",
        "host mappings whose cell_id names no cell",
        dangling_hosts,
    );
    let marker = match api.instance_mappings().marker() {
        Ok(marker) => marker.iter().map(ToString::to_string).collect(),
        // A marker row that names no instance is a leftover all the same.
        Err(ModelError::BadRow { reason, .. }) => vec![reason],
        Err(e) => return Err(e.into()),
    };
    report.add(
        "map_instances_marker",
        "a map_instances run stopped early: run map_instances again to finish (or --reset)",
        marker,
    );
    let all_cells = api.cells().get_all()?;
    let mapped_hosts: HashSet<String> = api_query(api, "reading host mappings", |c| {
        host_mappings::table
            .select(host_mappings::host)
            .load::<String>(c)
    })?
    .into_iter()
    .collect();
    for cell in &all_cells {
        report.cells_checked += 1;
        if let Err(e) = check_cell(api, cells, cell, &mapped_hosts, &mut report) {
            report.add(
                "cell_unreachable",
                "a cell database could not be read; its mappings were not checked",
                vec![format!("{}: {}", cell.identity(), chain(&e))],
            );
        }
    }
    Ok(report)
}

/// An error with its causes, on one line (`outer: cause: root cause`).
pub fn chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        s.push_str(": ");
        s.push_str(&c.to_string());
        cur = c.source();
    }
    s
}

fn check_cell(
    api: &Database,
    cells: &impl CellConnections,
    cell: &CellMapping,
    mapped_hosts: &HashSet<String>,
    report: &mut CheckReport,
) -> Result<()> {
    let cell_err = |operation| {
        move |source| Error::CellQuery {
            cell: cell.identity(),
            operation,
            source,
        }
    };
    let mut after = 0i32;
    loop {
        let page: Vec<(i32, String, Option<bool>)> =
            api_query(api, "reading instance mappings", |c| {
                instance_mappings::table
                    .filter(instance_mappings::cell_id.eq(cell.id))
                    .filter(instance_mappings::id.gt(after))
                    .order(instance_mappings::id.asc())
                    .select((
                        instance_mappings::id,
                        instance_mappings::instance_uuid,
                        instance_mappings::queued_for_delete,
                    ))
                    .limit(IN_CHUNK as i64)
                    .load(c)
            })?;
        let Some(last) = page.last() else { break };
        after = last.0;
        report.mappings_checked += page.len() as u64;
        let uuids: Vec<&str> = page.iter().map(|(_, u, _)| u.as_str()).collect();
        let rows: HashMap<String, bool> =
            read_cell_by_uuids(cells, cell, &uuids, "reading instances", |c, chunk| {
                instances::table
                    .filter(instances::uuid.eq_any(chunk))
                    .select((
                        instances::uuid,
                        instances::id,
                        instances::deleted,
                        instances::vm_state,
                    ))
                    .load::<(String, i32, Option<i32>, Option<String>)>(c)
            })?
            .into_iter()
            .map(|(u, id, deleted, vm)| {
                (
                    u,
                    deleted == Some(id) || vm.as_deref() == Some("soft-delete"),
                )
            })
            .collect();
        let mut missing = Vec::new();
        let mut not_queued = Vec::new();
        for (_, uuid, queued) in &page {
            match rows.get(uuid) {
                None => missing.push(uuid.clone()),
                Some(true) if *queued != Some(true) => not_queued.push(uuid.clone()),
                Some(_) => {}
            }
        }
        report.add(
            "instance_missing_in_cell",
            "mapped instances not in their cell (archived): archive_deleted_rows --purge removes the mappings",
            missing,
        );
        report.add(
            "deleted_not_queued_for_delete",
            "instances deleted in their cell whose mapping is not queued_for_delete: run the online data migrations",
            not_queued,
        );
        if page.len() < IN_CHUNK {
            break;
        }
    }
    if !cell.is_cell0() {
        let hosts: Vec<String> = cells.with_cell(cell, &mut |c| {
            let mut hosts: Vec<String> = compute_nodes::table
                .filter(compute_nodes::deleted.eq(0))
                .select(compute_nodes::host)
                .distinct()
                .load::<Option<String>>(c)
                .map_err(cell_err("reading compute nodes"))?
                .into_iter()
                .flatten()
                .collect();
            hosts.extend(
                services::table
                    .filter(services::deleted.eq(0))
                    .filter(services::binary.eq("nova-compute"))
                    .select(services::host)
                    .distinct()
                    .load::<Option<String>>(c)
                    .map_err(cell_err("reading services"))?
                    .into_iter()
                    .flatten(),
            );
            hosts.sort();
            hosts.dedup();
            Ok(hosts)
        })?;
        report.add(
            "host_not_mapped",
            "compute hosts mapped to no cell: run discover_hosts",
            hosts
                .into_iter()
                .filter(|h| !mapped_hosts.contains(h))
                .map(|h| format!("{h} (cell {})", cell.identity()))
                .collect(),
        );
    }
    Ok(())
}

/// Mapping counts of one cell.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CellStats {
    /// The cell's uuid.
    pub uuid: mapping_model::Uuid,
    /// The cell's name.
    pub name: Option<String>,
    /// Instance mappings in the cell.
    pub instances: u64,
    /// Host mappings in the cell.
    pub hosts: u64,
}

/// What [`stats`] counts.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Stats {
    /// Per cell, by cell id.
    pub cells: Vec<CellStats>,
    /// Mappings per project (the marker row excluded), by project.
    pub projects: BTreeMap<String, u64>,
    /// Mappings with no cell yet (the marker row excluded).
    pub unscheduled: u64,
    /// Mappings in all (the marker row excluded).
    pub total: u64,
}

/// Mapping counts per cell, per project and unscheduled: three grouped
/// queries on `nova_api`, no cell database needed.
pub fn stats(api: &Database) -> Result<Stats> {
    let by_cell: Vec<(Option<i32>, i64)> = api_query(api, "counting mappings per cell", |c| {
        instance_mappings::table
            .filter(instance_mappings::project_id.ne(INSTANCE_MIGRATION_MARKER))
            .group_by(instance_mappings::cell_id)
            .select((instance_mappings::cell_id, diesel::dsl::count_star()))
            .load(c)
    })?;
    let hosts_by_cell: HashMap<i32, i64> = api_query(api, "counting hosts per cell", |c| {
        host_mappings::table
            .group_by(host_mappings::cell_id)
            .select((host_mappings::cell_id, diesel::dsl::count_star()))
            .load::<(i32, i64)>(c)
    })?
    .into_iter()
    .collect();
    let by_project: Vec<(String, i64)> = api_query(api, "counting mappings per project", |c| {
        instance_mappings::table
            .filter(instance_mappings::project_id.ne(INSTANCE_MIGRATION_MARKER))
            .group_by(instance_mappings::project_id)
            .select((instance_mappings::project_id, diesel::dsl::count_star()))
            .load(c)
    })?;
    let counts: HashMap<Option<i32>, i64> = by_cell.into_iter().collect();
    let as_u64 = |n: i64| u64::try_from(n).unwrap_or(0);
    let mut out = Stats {
        unscheduled: as_u64(counts.get(&None).copied().unwrap_or(0)),
        total: counts.values().copied().map(as_u64).sum(),
        projects: by_project
            .into_iter()
            .map(|(p, n)| (p, as_u64(n)))
            .collect(),
        ..Stats::default()
    };
    for cell in api.cells().get_all()? {
        out.cells.push(CellStats {
            instances: as_u64(counts.get(&Some(cell.id)).copied().unwrap_or(0)),
            hosts: as_u64(hosts_by_cell.get(&cell.id).copied().unwrap_or(0)),
            uuid: cell.uuid,
            name: cell.name,
        });
    }
    Ok(out)
}
