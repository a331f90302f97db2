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

/// Where an instance stands (nova-manage `verify_instance`, docs/cellv2.md).
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
/// A `uuid` that is not a UUID is [`VerifyOutcome::NotMapped`], as
/// nova-manage finds no mapping for it.
pub fn verify_instance(
    api: &Database,
    cells: &impl CellConnections,
    uuid: &str,
) -> Result<VerifyOutcome> {
    let mapping = match api.instance_mappings().get_by_instance_uuid(uuid) {
        Ok(m) => m,
        Err(ModelError::InstanceMappingNotFound { .. } | ModelError::InvalidInput { .. }) => {
            return Ok(VerifyOutcome::NotMapped)
        }
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
    /// What it means and what to do: the command that fixes it when there
    /// is one (naming the cell when it is per cell).
    pub hint: String,
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
    /// Instances of the cells checked for a mapping.
    pub instances_checked: u64,
}

impl CheckReport {
    /// Whether nothing is wrong.
    pub fn is_ok(&self) -> bool {
        self.problems.is_empty()
    }

    /// Adds `items` to the problem `kind` with this `hint` (one entry per
    /// kind and hint: a hint naming a cell makes one entry per cell).
    fn add(&mut self, kind: &'static str, hint: impl Into<String>, mut items: Vec<String>) {
        let count = items.len() as u64;
        if count == 0 {
            return;
        }
        let hint = hint.into();
        items.truncate(SAMPLE);
        match self
            .problems
            .iter_mut()
            .find(|p| p.kind == kind && p.hint == hint)
        {
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
/// cell, or deleted there but not queued for delete; instances without a
/// mapping, and those that cannot have one (no project or user id, with the
/// reason); compute hosts mapped to no cell; a leftover `map_instances`
/// marker; cells that cannot be read.
/// Reads mappings in pages and looks their instances up in bulk.
pub fn check(api: &Database, cells: &impl CellConnections) -> Result<CheckReport> {
    let mut report = CheckReport::default();
    if let Err(e) = api.check_schema() {
        report.add(
            "schema",
            "nova_api does not have the schema Nova makes (docs/schema.md)",
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

/// An error with its causes, on one line (`outer: cause: root cause`),
/// each message once: see [`messages`].
pub fn chain(e: &dyn std::error::Error) -> String {
    messages(e).join(": ")
}

/// The message of an error and of each of its causes, outermost first,
/// each flattened to one line (line breaks and the indentation after them
/// become one space). A cause whose text an earlier message already holds
/// is left out: many driver and library errors write their source's text
/// into their own message, and printing it again would repeat it.
pub fn messages(e: &dyn std::error::Error) -> Vec<String> {
    let mut out = vec![one_line(&e.to_string())];
    let mut cur = e.source();
    while let Some(c) = cur {
        let text = one_line(&c.to_string());
        if !text.is_empty() && !out.iter().any(|m| m.contains(&text)) {
            out.push(text);
        }
        cur = c.source();
    }
    out
}

/// `text` on one line: its lines trimmed and joined with a space.
pub fn one_line(text: &str) -> String {
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect::<Vec<_>>()
        .join(" ")
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
        let mut queued_live = Vec::new();
        for (_, uuid, queued) in &page {
            match rows.get(uuid) {
                None => missing.push(uuid.clone()),
                Some(true) if *queued != Some(true) => not_queued.push(uuid.clone()),
                Some(false) if *queued == Some(true) => queued_live.push(uuid.clone()),
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
            "instances deleted or soft-deleted in their cell whose mapping is not \
             queued_for_delete (the online data migrations do not change this: they \
             only fill NULLs). Deleted ones: `nova-manage db archive_deleted_rows \
             --all-cells --until-complete` archives them and removes their mappings. \
             Soft-deleted ones: set queued_for_delete = true on their mappings in \
             nova_api (as Nova's soft delete does)",
            not_queued,
        );
        report.add(
            "queued_for_delete_not_deleted",
            "instances live in their cell (neither deleted nor soft-deleted) whose mapping \
             is queued_for_delete, so Nova's API lists them as deleted: set \
             queued_for_delete = false on their mappings in nova_api (as Nova's restore does)",
            queued_live,
        );
        if page.len() < IN_CHUNK {
            break;
        }
    }
    check_unmapped(api, cells, cell, report)?;
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

/// Why an instance cannot get a mapping, if it cannot: `instance_mappings`
/// needs a uuid, a project and a user.
fn unmappable_reason(uuid: &str, project: Option<&str>, user: Option<&str>) -> Option<String> {
    let mut why = Vec::new();
    if mapping_model::validate::uuid("instance_uuid", uuid).is_err() {
        why.push("not a UUID");
    }
    if project.is_none_or(str::is_empty) {
        why.push("no project_id");
    }
    if user.is_none_or(str::is_empty) {
        why.push("no user_id");
    }
    (!why.is_empty()).then(|| why.join(", "))
}

/// The cell's instances (deleted ones included, as `map_instances` maps
/// them) that have no mapping: those `map_instances` maps, and those it
/// cannot (with the reason). Pages through the cell by id, looking each
/// page's mappings up in one query.
fn check_unmapped(
    api: &Database,
    cells: &impl CellConnections,
    cell: &CellMapping,
    report: &mut CheckReport,
) -> Result<()> {
    let fix = format!("run `cellmap map_instances --cell_uuid {}`", cell.uuid);
    let unmapped_hint = format!(
        "instances of cell {} without a mapping: {fix}",
        cell.identity()
    );
    let unmappable_hint = format!(
        "instances of cell {} that cannot be mapped (nova_api needs a project_id and a \
         user_id): set the missing values on the instance in the cell database, then {fix}; \
         or archive the instance if it is deleted",
        cell.identity()
    );
    let mut after = 0i32;
    loop {
        let page: Vec<(i32, String, Option<String>, Option<String>)> =
            cells.with_cell(cell, &mut |c| {
                instances::table
                    .filter(instances::id.gt(after))
                    .order(instances::id.asc())
                    .select((
                        instances::id,
                        instances::uuid,
                        instances::project_id,
                        instances::user_id,
                    ))
                    .limit(IN_CHUNK as i64)
                    .load(c)
                    .map_err(|source| Error::CellQuery {
                        cell: cell.identity(),
                        operation: "reading instances",
                        source,
                    })
            })?;
        let Some(last) = page.last() else { break };
        after = last.0;
        report.instances_checked += page.len() as u64;
        let uuids: Vec<&str> = page.iter().map(|r| r.1.as_str()).collect();
        let mapped: HashSet<String> = api_query(api, "reading instance mappings", |c| {
            instance_mappings::table
                .filter(instance_mappings::instance_uuid.eq_any(&uuids))
                .select(instance_mappings::instance_uuid)
                .load::<String>(c)
        })?
        .into_iter()
        .collect();
        let mut unmapped = Vec::new();
        let mut unmappable = Vec::new();
        for (_, uuid, project, user) in &page {
            if mapped.contains(uuid) {
                continue;
            }
            match unmappable_reason(uuid, project.as_deref(), user.as_deref()) {
                Some(why) => unmappable.push(format!("{uuid} ({why})")),
                None => unmapped.push(uuid.clone()),
            }
        }
        report.add("instance_not_mapped", unmapped_hint.as_str(), unmapped);
        report.add("instance_unmappable", unmappable_hint.as_str(), unmappable);
        if page.len() < IN_CHUNK {
            break;
        }
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
    /// Mappings whose `cell_id` names no cell (counted in `total`, in no
    /// entry of `cells`; `check` lists them).
    pub in_missing_cells: u64,
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
    let all_cells = api.cells().get_all()?;
    let known: HashSet<i32> = all_cells.iter().map(|c| c.id).collect();
    out.in_missing_cells = counts
        .iter()
        .filter(|(id, _)| id.is_some_and(|id| !known.contains(&id)))
        .map(|(_, n)| as_u64(*n))
        .sum();
    for cell in all_cells {
        out.cells.push(CellStats {
            instances: as_u64(counts.get(&Some(cell.id)).copied().unwrap_or(0)),
            hosts: as_u64(hosts_by_cell.get(&cell.id).copied().unwrap_or(0)),
            uuid: cell.uuid,
            name: cell.name,
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An error whose message may embed its source's text, as driver
    /// errors often do.
    #[derive(Debug)]
    struct E(&'static str, Option<Box<E>>);

    impl std::fmt::Display for E {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str(self.0)
        }
    }

    impl std::error::Error for E {
        fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
            self.1.as_deref().map(|e| e as _)
        }
    }

    #[test]
    fn each_cause_once_on_one_line() {
        let root = "connection refused\n\tIs the server running?\n";
        let e = E(
            "cannot connect to db: connection refused\n\tIs the server running?\n",
            Some(Box::new(E(root, Some(Box::new(E(root, None)))))),
        );
        assert_eq!(
            chain(&e),
            "cannot connect to db: connection refused Is the server running?"
        );
        let e = E("reading cells", Some(Box::new(E("timed out", None))));
        assert_eq!(messages(&e), vec!["reading cells", "timed out"]);
        assert_eq!(chain(&e), "reading cells: timed out");
    }
}
