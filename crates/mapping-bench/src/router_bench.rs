//! Benchmarks of `mapping-router` (`mapping-bench --router`):
//!
//! - `route()` against the lookup it is built on
//!   (`instance_mappings().get_by_instance_uuid`), on each API backend;
//! - scatter-gather over 3 and 10 cells against querying the same cells one
//!   after another, on each cell backend.
//!
//! ```text
//! cargo run --release -p mapping-bench --features all-backends -- --router [--quick] [--backends sqlite,postgres,mysql]
//! ```
//!
//! Not pinned to one CPU (unlike the main run of `scripts/bench.sh`): the
//! point of scatter-gather is to use several. Writes `target/bench/router.md`.

use std::fmt::Write as _;
use std::time::Duration;

use diesel::connection::SimpleConnection;
use diesel::prelude::*;
use mapping_diesel::{BackendKind, DbConnection};
use mapping_model::{CellMapping, NewCellMapping, NewInstanceMapping};
use mapping_router::{Route, Router, RouterOptions};
use mapping_testkit::{uuid, TestDb};

use crate::harness::{fmt_ns, pair, Plan, Stats};

diesel::table! {
    /// The cells' stand-in `instances` table.
    instances (uuid) {
        uuid -> Text,
        project_id -> Text,
        hostname -> Text,
    }
}

/// Mappings in the API database for the route case.
const MAPPINGS: usize = 10_000;
/// Rows per cell database; a listing returns `PER_PROJECT` of them.
const CELL_ROWS: usize = 1_000;
/// Rows of one project per cell (what a listing returns).
const PER_PROJECT: usize = 50;

/// True when the command line asks for the router benchmarks.
pub fn requested() -> bool {
    std::env::args().any(|a| a == "--router")
}

struct Row {
    backend: BackendKind,
    case: String,
    a: Stats,
    b: Stats,
    a_name: &'static str,
    b_name: &'static str,
}

/// Runs the router benchmarks and writes the report.
pub fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let quick = args.iter().any(|a| a == "--quick");
    let backends: Vec<BackendKind> = match args.iter().position(|a| a == "--backends") {
        Some(i) => args
            .get(i + 1)
            .map(|s| s.as_str())
            .unwrap_or("")
            .split(',')
            .map(|b| match b.trim() {
                "sqlite" => BackendKind::Sqlite,
                "postgres" => BackendKind::Postgres,
                "mysql" => BackendKind::Mysql,
                other => panic!("unknown backend {other}"),
            })
            .collect(),
        None => mapping_diesel::compiled_backends().to_vec(),
    };
    let plan = Plan::standard(quick);
    let mut rows = Vec::new();
    for &backend in &backends {
        eprintln!("== router, {backend:?}");
        route_case(backend, plan, &mut rows);
        for cells in [3, 10] {
            scatter_case(backend, cells, plan, &mut rows);
        }
    }
    let md = render(&rows, quick);
    std::fs::create_dir_all("target/bench").expect("output directory");
    std::fs::write("target/bench/router.md", &md).expect("write report");
    println!("{md}");
    eprintln!("report written to target/bench/router.md");
}

fn route_case(backend: BackendKind, plan: Plan, rows: &mut Vec<Row>) {
    let api = TestDb::new(backend);
    let cells: Vec<CellMapping> = (0..4)
        .map(|i| {
            api.cells()
                .create(
                    NewCellMapping::new(uuid(), "rabbit://", format!("sqlite:///unused-{i}"))
                        .name(format!("cell{i}")),
                )
                .expect("cell")
        })
        .collect();
    let uuids: Vec<String> = (0..MAPPINGS).map(|_| uuid()).collect();
    api.instance_mappings()
        .create_bulk(
            uuids
                .iter()
                .enumerate()
                .map(|(i, u)| NewInstanceMapping::new(u, "p", "u").cell(&cells[i % cells.len()]))
                .collect(),
        )
        .expect("load mappings");
    let router = Router::new(api.db.clone(), RouterOptions::default()).expect("router");
    let parsed: Vec<uuid::Uuid> = uuids.iter().map(|u| u.parse().expect("uuid")).collect();
    let (mut i, mut j) = (0usize, 7usize);
    let (a, b) = pair(
        plan,
        || {
            i = (i + 7919) % MAPPINGS;
            match router.route(parsed[i]).expect("route") {
                Route::Cell(t) => t.cell().id,
                Route::NotScheduled(_) => unreachable!("every mapping has a cell"),
            }
        },
        || {
            j = (j + 7919) % MAPPINGS;
            api.instance_mappings()
                .get_by_instance_uuid(&uuids[j])
                .expect("lookup")
                .id
        },
    );
    report_line(backend, "route vs lookup", &a, &b);
    rows.push(Row {
        backend,
        case: "route() vs get_by_instance_uuid".into(),
        a,
        b,
        a_name: "route",
        b_name: "lookup",
    });
}

fn list(conn: &mut DbConnection) -> QueryResult<Vec<(String, String)>> {
    instances::table
        .filter(instances::project_id.eq("p0"))
        .select((instances::uuid, instances::hostname))
        .load(conn)
}

fn scatter_case(backend: BackendKind, n: usize, plan: Plan, rows: &mut Vec<Row>) {
    let api = TestDb::new(BackendKind::Sqlite);
    let mut dbs = Vec::new();
    let mut cells = Vec::new();
    for i in 0..n {
        let cell = TestDb::empty(backend);
        let mut sql = String::from(
            "CREATE TABLE instances (uuid VARCHAR(36) NOT NULL PRIMARY KEY, \
             project_id VARCHAR(255) NOT NULL, hostname VARCHAR(255) NOT NULL); \
             CREATE INDEX instances_project ON instances (project_id);",
        );
        for k in 0..CELL_ROWS {
            let project = k % (CELL_ROWS / PER_PROJECT);
            write!(
                sql,
                "INSERT INTO instances VALUES ('{}', 'p{project}', 'compute-{i}-{k}');",
                uuid()
            )
            .expect("write to String");
        }
        cell.with_connection(|c| c.batch_execute(&sql).map_err(mapping_model::Error::from))
            .expect("fill cell");
        cells.push(
            api.cells()
                .create(NewCellMapping::new(uuid(), "rabbit://", cell.url()).name(format!("c{i}")))
                .expect("cell"),
        );
        dbs.push(cell);
    }
    let router =
        Router::new(api.db.clone(), RouterOptions::default().worker_pool_size(n)).expect("router");
    let timeout = Duration::from_secs(60);
    let (a, b) = pair(
        plan,
        || {
            let r = router.scatter_gather(&cells, timeout, |_, conn| list(conn));
            assert!(r.values().all(|r| r.is_ok()), "{r:?}");
            r.len()
        },
        || {
            cells
                .iter()
                .map(|c| router.target_cell(c, list).expect("list").len())
                .sum::<usize>()
        },
    );
    report_line(backend, &format!("{n} cells"), &a, &b);
    rows.push(Row {
        backend,
        case: format!("list over {n} cells ({PER_PROJECT} rows each)"),
        a,
        b,
        a_name: "scatter-gather",
        b_name: "sequential",
    });
    drop(dbs);
}

fn report_line(backend: BackendKind, case: &str, a: &Stats, b: &Stats) {
    eprintln!(
        "   {backend:?} {case:<16} {:>10}  vs {:>10}  ratio {:.2}",
        fmt_ns(a.median()),
        fmt_ns(b.median()),
        a.median() / b.median()
    );
}

fn render(rows: &[Row], quick: bool) -> String {
    let mut md = String::new();
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    let _ = writeln!(
        md,
        "Router benchmarks ({}; load average at the end: {}).\n",
        if quick { "quick run" } else { "full run" },
        load.split_whitespace()
            .take(3)
            .collect::<Vec<_>>()
            .join(" ")
    );
    md.push_str("| backend | case | measured | median | IQR | baseline | median | IQR | difference | ratio |\n");
    md.push_str("|---|---|---|---:|---:|---|---:|---:|---:|---:|\n");
    for r in rows {
        let _ = writeln!(
            md,
            "| {:?} | {} | {} | {} | {}–{} | {} | {} | {}–{} | {} | {:.2} |",
            r.backend,
            r.case,
            r.a_name,
            fmt_ns(r.a.median()),
            fmt_ns(r.a.q1()),
            fmt_ns(r.a.q3()),
            r.b_name,
            fmt_ns(r.b.median()),
            fmt_ns(r.b.q1()),
            fmt_ns(r.b.q3()),
            signed(r.a.median() - r.b.median()),
            r.a.median() / r.b.median()
        );
    }
    md
}

/// A time difference with its sign.
fn signed(ns: f64) -> String {
    if ns < 0.0 {
        format!("−{}", fmt_ns(-ns))
    } else {
        format!("+{}", fmt_ns(ns))
    }
}
