//! Benchmarks of the object API against the raw drivers, on every backend
//! compiled in, at several table sizes. Run through `scripts/bench.sh`
//! (a release build with every backend); writes `target/bench/report.md`.
//!
//! ```text
//! mapping-bench [--quick] [--sizes 10000,1000000] [--backends sqlite,postgres,mysql] [--out DIR]
//! mapping-bench --profile CASE [--iters N] [--sizes 10000] [--backends sqlite]   # for callgrind
//! ```
//!
//! Never part of `cargo test`: a binary, not a test or a bench target.

mod cases;
mod harness;
mod memory;
mod profile;
mod raw;
mod report;
mod router_bench;
mod setup;
mod tiers;

use std::path::PathBuf;
use std::time::Duration;

use harness::Stats;
use mapping_diesel::BackendKind;
use report::render;
use setup::run_backend;

/// Counts heap bytes while a memory case runs (see `memory.rs`).
#[global_allocator]
static ALLOC: memory::Counting = memory::Counting;

/// Cells the mappings are spread over.
const CELLS: usize = 8;
/// Mappings per project (so a project listing returns this many).
const PER_PROJECT: usize = 1_000;
/// Users per project.
const USERS: usize = 10;
/// Rows per bulk create in the bulk case.
const BULK: usize = 10_000;
/// Rows per create_bulk call when loading the table.
const LOAD_BATCH: usize = 50_000;

struct Args {
    quick: bool,
    sizes: Vec<usize>,
    backends: Vec<BackendKind>,
    out: PathBuf,
    /// `--profile CASE`: iterations of one case per side, untimed (see
    /// `profile.rs`).
    profile: Option<String>,
    /// `--iters N`: iterations per side in profiling mode.
    iters: usize,
}

fn parse_args() -> Args {
    let mut args = Args {
        quick: false,
        sizes: vec![10_000, 1_000_000],
        backends: mapping_diesel::compiled_backends().to_vec(),
        out: PathBuf::from("target/bench"),
        profile: None,
        iters: 1000,
    };
    let mut it = std::env::args().skip(1);
    while let Some(a) = it.next() {
        let mut value = |name: &str| it.next().unwrap_or_else(|| panic!("{name} needs a value"));
        match a.as_str() {
            "--quick" => args.quick = true,
            "--sizes" => {
                args.sizes = value("--sizes")
                    .split(',')
                    .map(|s| s.trim().replace('_', "").parse().expect("a size"))
                    .collect();
            }
            "--backends" => {
                args.backends = value("--backends")
                    .split(',')
                    .map(|b| match b.trim() {
                        "sqlite" => BackendKind::Sqlite,
                        "postgres" => BackendKind::Postgres,
                        "mysql" => BackendKind::Mysql,
                        other => panic!("unknown backend {other}"),
                    })
                    .collect();
            }
            "--out" => args.out = PathBuf::from(value("--out")),
            "--profile" => args.profile = Some(value("--profile")),
            "--iters" => args.iters = value("--iters").parse().expect("--iters N"),
            other => panic!("unknown argument {other}"),
        }
    }
    args.sizes.sort_unstable();
    args
}

/// One measured case.
struct Measured {
    backend: BackendKind,
    size: usize,
    case: &'static str,
    object: Stats,
    raw: Option<Stats>,
    /// Rows handled per iteration (for throughput figures).
    rows: usize,
}

impl Measured {
    fn ratio(&self) -> Option<f64> {
        self.raw.as_ref().map(|r| self.object.median() / r.median())
    }
}

#[derive(Default)]
struct Report {
    results: Vec<Measured>,
    loads: Vec<(BackendKind, usize, Duration)>,
    explains: Vec<(BackendKind, &'static str, String, Vec<Vec<String>>)>,
    versions: Vec<(BackendKind, String)>,
    /// Peak heap of listing one cell, per backend and table size.
    memory: Vec<(BackendKind, usize, memory::CellListing)>,
}

fn name(b: BackendKind) -> &'static str {
    match b {
        BackendKind::Sqlite => "sqlite",
        BackendKind::Postgres => "postgres",
        BackendKind::Mysql => "mysql",
    }
}

fn main() {
    if router_bench::requested() {
        return router_bench::main();
    }
    if tiers::run_if_asked() {
        return;
    }
    let args = parse_args();
    std::fs::create_dir_all(&args.out).expect("output directory");
    let mut report = Report::default();
    for &backend in &args.backends {
        eprintln!("== {}", name(backend));
        run_backend(backend, &args, &mut report);
    }
    if args.profile.is_some() {
        return;
    }
    let md = render(&report, &args);
    let path = args.out.join("report.md");
    std::fs::write(&path, &md).expect("write report");
    println!("{md}");
    eprintln!("report written to {}", path.display());
}
