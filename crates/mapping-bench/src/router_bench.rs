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
    let mut sick = Vec::new();
    for &backend in &backends {
        eprintln!("== router, {backend:?}");
        route_case(backend, plan, &mut rows);
        for cells in [3, 10] {
            scatter_case(backend, cells, plan, &mut rows);
        }
        sick.push(sick_case(backend));
    }
    let mut md = render(&rows, quick);
    md.push_str(&render_sick(&sick));
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

/// A cell database of `backend` with `CELL_ROWS` instances over
/// `CELL_ROWS / PER_PROJECT` projects (host names carry `i`).
fn list_cell(backend: BackendKind, i: usize) -> TestDb {
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
    cell
}

fn scatter_case(backend: BackendKind, n: usize, plan: Plan, rows: &mut Vec<Row>) {
    let api = TestDb::new(BackendKind::Sqlite);
    let mut dbs = Vec::new();
    let mut cells = Vec::new();
    for i in 0..n {
        let cell = list_cell(backend, i);
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

/// Latencies of 100 scatter-gather calls over healthy cells, alone and
/// with one more cell whose closure hangs.
struct Sick {
    backend: BackendKind,
    alone: Vec<f64>,
    beside_hung: Vec<f64>,
    first_call: f64,
}

/// The quantile `q` (0..=1) of sorted `v`.
fn quantile(v: &[f64], q: f64) -> f64 {
    let i = ((v.len() as f64 - 1.0) * q).round() as usize;
    v.get(i).copied().unwrap_or(f64::NAN)
}

/// Three healthy cells of `backend` (the list case's tables and rows), and a
/// SQLite cell whose closure blocks until the case ends: 100 calls with a
/// 1 s timeout, after the one call that meets the hang and times out, against
/// 100 calls over the healthy cells alone.
fn sick_case(backend: BackendKind) -> Sick {
    let api = TestDb::new(BackendKind::Sqlite);
    let mut dbs = Vec::new();
    let mut cells = Vec::new();
    for i in 0..4 {
        let cell = list_cell(if i < 3 { backend } else { BackendKind::Sqlite }, i);
        cells.push(
            api.cells()
                .create(NewCellMapping::new(uuid(), "rabbit://", cell.url()).name(format!("c{i}")))
                .expect("cell"),
        );
        dbs.push(cell);
    }
    let router = Router::new(api.db.clone(), RouterOptions::default()).expect("router");
    let hung = cells[3].uuid;
    let gate = std::sync::Arc::new((std::sync::Mutex::new(false), std::sync::Condvar::new()));
    let timeout = Duration::from_secs(1);
    let run = |cells: &[CellMapping]| {
        let g = std::sync::Arc::clone(&gate);
        let start = std::time::Instant::now();
        let r = router.scatter_gather(cells, timeout, move |cell, conn| {
            if cell.uuid == hung {
                let (open, cv) = &*g;
                let mut o = open
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner);
                while !*o {
                    o = cv
                        .wait(o)
                        .unwrap_or_else(std::sync::PoisonError::into_inner);
                }
            }
            list(conn)
        });
        let ns = start.elapsed().as_nanos() as f64;
        for c in &cells[..3] {
            assert!(r[&c.uuid].is_ok(), "healthy cell: {r:?}");
        }
        ns
    };
    let mut alone: Vec<f64> = (0..100).map(|_| run(&cells[..3])).collect();
    let first_call = run(&cells);
    let mut beside_hung: Vec<f64> = (0..100).map(|_| run(&cells)).collect();
    {
        let (open, cv) = &*gate;
        *open
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = true;
        cv.notify_all();
    }
    alone.sort_by(f64::total_cmp);
    beside_hung.sort_by(f64::total_cmp);
    eprintln!(
        "   {backend:?} beside a hung cell: p50 {} p99 {} (alone p50 {} p99 {}); the call that met the hang {}",
        fmt_ns(quantile(&beside_hung, 0.5)),
        fmt_ns(quantile(&beside_hung, 0.99)),
        fmt_ns(quantile(&alone, 0.5)),
        fmt_ns(quantile(&alone, 0.99)),
        fmt_ns(first_call)
    );
    drop(dbs);
    Sick {
        backend,
        alone,
        beside_hung,
        first_call,
    }
}

fn render_sick(rows: &[Sick]) -> String {
    let mut md = String::from(
        "\nA healthy cell's answer while another cell hangs: 100 scatter-gather calls over \
         three healthy cells (timeout 1 s) beside a SQLite cell whose closure never returns, \
         after the one call that met the hang, against 100 calls over the three alone.\n\n\
         | backend | beside the hung cell p50 | p99 | max | alone p50 | p99 | the call that met the hang |\n\
         |---|---:|---:|---:|---:|---:|---:|\n",
    );
    for r in rows {
        let _ = writeln!(
            md,
            "| {:?} | {} | {} | {} | {} | {} | {} |",
            r.backend,
            fmt_ns(quantile(&r.beside_hung, 0.5)),
            fmt_ns(quantile(&r.beside_hung, 0.99)),
            fmt_ns(quantile(&r.beside_hung, 1.0)),
            fmt_ns(quantile(&r.alone, 0.5)),
            fmt_ns(quantile(&r.alone, 0.99)),
            fmt_ns(r.first_call)
        );
    }
    md
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
