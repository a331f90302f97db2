//! `check` (is the deployment's mapping sound) and `stats` (mappings per
//! cell, per project and unscheduled).

use serde_json::json;

use crate::output::{outln, summary_of, write_out, Format, Listing};
use crate::{fail, Ctx, Failure};

/// `check`: reports what is unsound in the mappings (exit 1 if anything).
pub(crate) fn check(ctx: &Ctx) -> Result<u8, Failure> {
    let api = ctx.api()?;
    let router = ctx.router(&api)?;
    let report = mapping_cellv2::check(&api, &router).map_err(fail("check"))?;
    // One listing of the problems for both formats.
    let mut problems = Listing::new(vec![
        ("Problem", "kind"),
        ("Count", "count"),
        ("Examples", "sample"),
        ("What to do", "hint"),
    ]);
    for p in &report.problems {
        // A table shows the first few examples and how many more there are.
        let sample = match ctx.format {
            Format::Json => json!(p.sample),
            Format::Table => json!(summary_of(
                &p.sample,
                usize::try_from(p.count).unwrap_or(usize::MAX)
            )),
        };
        problems.push(vec![json!(p.kind), json!(p.count), sample, json!(p.hint)]);
    }
    match ctx.format {
        Format::Json => outln!(
            "{}",
            json!({
                "ok": report.is_ok(),
                "cells_checked": report.cells_checked,
                "mappings_checked": report.mappings_checked,
                "instances_checked": report.instances_checked,
                "problems": problems.to_json(),
            })
        )?,
        Format::Table if report.is_ok() => outln!(
            "No problems found ({} cells, {} instance mappings and {} instances checked).",
            report.cells_checked,
            report.mappings_checked,
            report.instances_checked
        )?,
        Format::Table => problems.print(ctx.format)?,
    }
    Ok(if report.is_ok() { 0 } else { 1 })
}

/// `stats`: mappings per cell, per project and unscheduled.
pub(crate) fn stats(ctx: &Ctx) -> Result<u8, Failure> {
    let api = ctx.api()?;
    let s = mapping_cellv2::stats(&api).map_err(fail("stats"))?;
    let mut cells = Listing::new(vec![
        ("Cell Name", "name"),
        ("Cell UUID", "uuid"),
        ("Instances", "instances"),
        ("Hosts", "hosts"),
    ]);
    for c in &s.cells {
        cells.push(vec![
            json!(c.name),
            json!(c.uuid.to_string()),
            json!(c.instances),
            json!(c.hosts),
        ]);
    }
    let mut projects = Listing::new(vec![("Project", "project_id"), ("Instances", "instances")]);
    for (p, n) in &s.projects {
        projects.push(vec![json!(p), json!(n)]);
    }
    match ctx.format {
        Format::Json => outln!(
            "{}",
            json!({
                "total": s.total,
                "unscheduled": s.unscheduled,
                "in_missing_cells": s.in_missing_cells,
                "cells": cells.to_json(),
                "projects": projects.to_json(),
            })
        )?,
        Format::Table => {
            write_out(&cells.to_table())?;
            if s.in_missing_cells > 0 {
                outln!(
                    "Unscheduled: {}   In missing cells: {} (see `cellmap check`)   Total: {}",
                    s.unscheduled,
                    s.in_missing_cells,
                    s.total
                )?;
            } else {
                outln!("Unscheduled: {}   Total: {}", s.unscheduled, s.total)?;
            }
            write_out(&projects.to_table())?;
        }
    }
    Ok(0)
}
