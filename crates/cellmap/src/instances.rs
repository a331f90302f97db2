//! The instance commands: `verify_instance`, `map_instances` (with its
//! progress line), `discover_hosts` and `online_data_migrations`.

use std::io::{IsTerminal, Write};
use std::time::Instant;

use mapping_cellv2::{
    chain, MapInstancesOptions, MapProgress, Router, VerifyOutcome, DEFAULT_BATCH_SIZE,
};
use mapping_diesel::Database;
use serde_json::json;

use crate::output::{outln, summary, Format, Listing};
use crate::{exit, fail, report, Ctx, Failure};

/// `verify_instance`: whether an instance is mapped, and to which cell.
pub(crate) fn verify_instance(ctx: &Ctx, uuid: &str, quiet: bool) -> Result<u8, Failure> {
    let api = ctx.api()?;
    let router = ctx.router(&api)?;
    let outcome =
        mapping_cellv2::verify_instance(&api, &router, uuid).map_err(fail("verify_instance"))?;
    let (status, cell, text) = match &outcome {
        VerifyOutcome::Alive(c) => (
            "alive",
            Some(c),
            format!(
                "Instance {uuid} is in cell: {} ({})",
                c.name.as_deref().unwrap_or(""),
                c.uuid
            ),
        ),
        VerifyOutcome::NotMapped => (
            "not_mapped",
            None,
            format!("Instance {uuid} is not mapped to a cell (upgrade is incomplete) or instance does not exist"),
        ),
        VerifyOutcome::NoCell => (
            "no_cell",
            None,
            format!("Instance {uuid} is not mapped to a cell"),
        ),
        VerifyOutcome::Deleted(c) => (
            "deleted",
            Some(c),
            format!("The instance with uuid {uuid} has been deleted.\nExecute `nova-manage db archive_deleted_rows` command to archive this deleted instance and remove its instance_mapping."),
        ),
        VerifyOutcome::Archived(c) => (
            "archived",
            Some(c),
            format!("The instance with uuid {uuid} has been archived.\nHowever its instance_mapping remains."),
        ),
    };
    if !quiet {
        match ctx.format {
            Format::Table => outln!("{text}")?,
            Format::Json => outln!(
                "{}",
                json!({"uuid": uuid, "status": status, "cell_uuid": cell.map(|c| c.uuid.to_string())})
            )?,
        }
    }
    Ok(exit(outcome.exit_code()))
}

/// A progress line on stderr, only when stdout and stderr are terminals.
pub(crate) struct Progress {
    on: bool,
    start: Instant,
}

impl Progress {
    fn new() -> Self {
        Self {
            on: std::io::stdout().is_terminal() && std::io::stderr().is_terminal(),
            start: Instant::now(),
        }
    }

    fn update(&mut self, p: MapProgress) {
        if !self.on {
            return;
        }
        let secs = self.start.elapsed().as_secs_f64().max(0.001);
        let width = 30usize;
        let frac = if p.total == 0 {
            1.0
        } else {
            (p.processed as f64 / p.total as f64).min(1.0)
        };
        let filled = (frac * width as f64) as usize;
        eprint!(
            "\r[{}{}] {}/{} instances, {:.0}/s ",
            "#".repeat(filled),
            "-".repeat(width - filled),
            p.processed,
            p.total,
            p.processed as f64 / secs
        );
        let _ = std::io::stderr().flush();
    }

    fn finish(&self) {
        if self.on {
            eprintln!();
        }
    }
}

/// Exit code of a `map_instances` run that reached the end but skipped
/// instances that cannot be mapped (nova-manage has none: it stops with
/// 255 at the first such instance).
const EXIT_SKIPPED: u8 = 2;

/// `map_instances`: maps a cell's instances in batches, resumable.
pub(crate) fn map_instances(
    ctx: &Ctx,
    cell_uuid: &str,
    max_count: Option<i64>,
    reset: bool,
    batch_size: usize,
) -> Result<u8, Failure> {
    let api = ctx.api()?;
    let router = ctx.router(&api)?;
    let mut progress = Progress::new();
    let start = Instant::now();
    let report = mapping_cellv2::map_instances(
        &api,
        &router,
        cell_uuid,
        MapInstancesOptions {
            max_count,
            reset,
            batch_size,
        },
        &mut |p| progress.update(p),
    );
    progress.finish();
    let report = report.map_err(fail("map_instances"))?;
    let secs = start.elapsed().as_secs_f64();
    let mut l = Listing::new(vec![
        ("Processed", "processed"),
        ("Mapped", "mapped"),
        ("Already Mapped", "already_mapped"),
        ("Unmappable", "unmappable"),
        ("Complete", "complete"),
        ("Seconds", "seconds"),
    ]);
    l.push(vec![
        json!(report.processed),
        json!(report.mapped),
        json!(report.already_mapped),
        json!(report.unmappable),
        json!(report.complete),
        json!((secs * 1000.0).round() / 1000.0),
    ]);
    l.print(ctx.format)?;
    if !report.unmappable.is_empty() {
        eprintln!(
            "cellmap: {} instances of cell {cell_uuid} could not be mapped (no project_id or \
             user_id, or not a UUID): {}; `cellmap check` gives the reason for each",
            report.unmappable.len(),
            summary(&report.unmappable)
        );
    }
    // 1: more to map (run again); 2: done, but instances were skipped
    // (running again does not help: see `cellmap check`).
    Ok(if !report.complete {
        1
    } else if !report.unmappable.is_empty() {
        EXIT_SKIPPED
    } else {
        0
    })
}

/// `discover_hosts`: maps the compute hosts the cells know of, cell by
/// cell. A cell that cannot be read does not stop the others: each is
/// reported (with `--verbose` or in JSON; a failure always on stderr), and
/// the exit code is nova-manage's at the end: 255 when a cell failed (its
/// "unexpected error", where nova-manage stops at that cell), else 1 with
/// `--strict` and no host mapped, else 0.
pub(crate) fn discover_hosts(
    ctx: &Ctx,
    cell_uuid: Option<&str>,
    verbose: bool,
    strict: bool,
    by_service: bool,
) -> Result<u8, Failure> {
    let api = ctx.api()?;
    let router = ctx.router(&api)?;
    let done = mapping_cellv2::discover_hosts_per_cell(&api, &router, cell_uuid, by_service)
        .map_err(fail("discover_hosts"))?;
    let mut failed = false;
    let mut mapped = 0usize;
    let mut cells = Listing::new(vec![
        ("Cell Name", "name"),
        ("Cell UUID", "uuid"),
        ("Result", "status"),
        ("Hosts Mapped", "hosts"),
        ("Error", "error"),
    ]);
    let mut hosts = Vec::new();
    for d in &done {
        let (status, found, error) = match &d.outcome {
            Ok(found) => ("ok", found.as_slice(), None),
            Err(e) => {
                failed = true;
                let f = Failure::of(&format!("discover_hosts: cell {}", d.cell.identity()))(e);
                report(f, ctx.debug);
                ("error", &[][..], Some(chain(e)))
            }
        };
        mapped += found.len();
        cells.push(vec![
            json!(d.cell.name),
            json!(d.cell.uuid.to_string()),
            json!(status),
            json!(found.iter().map(|h| h.host.as_str()).collect::<Vec<_>>()),
            json!(error),
        ]);
        hosts.extend(
            found
                .iter()
                .map(|h| json!({"host": h.host, "cell_uuid": h.cell_uuid.to_string()})),
        );
    }
    match ctx.format {
        Format::Json => outln!("{}", json!({"cells": cells.to_json(), "hosts": hosts}))?,
        Format::Table if verbose => cells.print(ctx.format)?,
        Format::Table => {}
    }
    Ok(if failed {
        crate::EXIT_ERROR
    } else if strict && mapped == 0 {
        1
    } else {
        0
    })
}

/// `online_data_migrations`: the API database's two online migrations.
pub(crate) fn online_data_migrations(ctx: &Ctx, max_count: Option<i64>) -> Result<u8, Failure> {
    let api = ctx.api()?;
    let router = ctx.router(&api)?;
    let per_pass = max_count.unwrap_or(DEFAULT_BATCH_SIZE as i64);
    type Migration =
        fn(&Database, &Router, i64) -> mapping_cellv2::Result<mapping_cellv2::MigrationCount>;
    let migrations: [(&str, Migration); 2] = [
        ("populate_queued_for_delete", |a, r, n| {
            mapping_cellv2::populate_queued_for_delete(a, r, n)
        }),
        ("populate_user_id", |a, r, n| {
            mapping_cellv2::populate_user_id(a, r, n)
        }),
    ];
    let mut totals = [(0u64, 0u64); 2];
    let mut failed = false;
    loop {
        let mut ran = 0;
        for (i, (name, f)) in migrations.iter().enumerate() {
            match f(&api, &router, per_pass) {
                Ok(c) => {
                    totals[i].0 += c.found;
                    totals[i].1 += c.done;
                    ran += c.done;
                }
                Err(e) => {
                    eprintln!("cellmap: error: {name}: {}", chain(&e));
                    failed = true;
                }
            }
        }
        if failed || max_count.is_some() || ran == 0 {
            let mut l = Listing::new(vec![
                ("Migration", "migration"),
                ("Total Needed", "total_needed"),
                ("Completed", "completed"),
            ]);
            for (i, (name, _)) in migrations.iter().enumerate() {
                l.push(vec![json!(name), json!(totals[i].0), json!(totals[i].1)]);
            }
            l.print(ctx.format)?;
            return Ok(if failed {
                2
            } else if ran > 0 {
                1
            } else {
                0
            });
        }
    }
}
