//! Benchmark of `mapping_cellv2::map_instances`: many instances in a Nova
//! cell database mapped into `nova_api`, per backend. Reports rows/s, the
//! peak resident memory of the run (VmHWM, reset before it), the time a
//! resumed run takes to map its first batch, and a nova-manage-like
//! baseline (batches of 50, one insert per instance) on a smaller sample.
//!
//!   scripts/bench-cellv2.sh --size 1000000
//!
//! Never part of `cargo test`.

use std::time::{Duration, Instant};

use mapping_cellv2::{map_instances, MapInstancesOptions, Router, RouterOptions};
use mapping_diesel::BackendKind;
use mapping_model::NewInstanceMapping;
use mapping_testkit::{at, CellDb, NewCellInstance, TestDb};

struct Args {
    size: usize,
    baseline: usize,
    batch_size: usize,
    backends: Vec<BackendKind>,
}

fn args() -> Args {
    let mut a = Args {
        size: 1_000_000,
        baseline: 5_000,
        batch_size: mapping_cellv2::MAP_INSTANCES_BATCH_SIZE,
        backends: mapping_diesel::compiled_backends().to_vec(),
    };
    let argv: Vec<String> = std::env::args().skip(1).collect();
    let mut it = argv.iter();
    while let Some(flag) = it.next() {
        let value = it.next().map(String::as_str).unwrap_or_default();
        let num = || value.parse::<usize>().unwrap_or_else(|_| usage(flag));
        match flag.as_str() {
            "--size" => a.size = num(),
            "--baseline" => a.baseline = num(),
            "--batch-size" => a.batch_size = num(),
            "--backends" => {
                a.backends = value
                    .split(',')
                    .map(|b| match b {
                        "sqlite" => BackendKind::Sqlite,
                        "postgres" => BackendKind::Postgres,
                        "mysql" => BackendKind::Mysql,
                        _ => usage(flag),
                    })
                    .collect()
            }
            _ => usage(flag),
        }
    }
    a
}

fn usage(flag: &str) -> ! {
    eprintln!("bad argument {flag}; use --size N --baseline N --batch-size N --backends sqlite,postgres,mysql");
    std::process::exit(2);
}

/// Peak resident set size of this process in KiB (VmHWM).
fn peak_rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|n| n.parse().ok())
        })
        .unwrap_or(0)
}

/// Resets VmHWM to the current RSS (Linux `clear_refs` value 5).
fn reset_peak() {
    let _ = std::fs::write("/proc/self/clear_refs", "5");
}

fn fill(cdb: &CellDb, n: usize) -> Duration {
    let start = Instant::now();
    let mut i = 0;
    while i < n {
        let chunk = (n - i).min(50_000);
        // Three instances per second: ties on created_at throughout.
        let news: Vec<NewCellInstance> = (i..i + chunk)
            .map(|k| {
                NewCellInstance::new(&format!("project-{}", k % 100), "user", at((k / 3) as i64))
            })
            .collect();
        cdb.add_instances(&news);
        i += chunk;
    }
    start.elapsed()
}

fn rate(rows: u64, d: Duration) -> f64 {
    rows as f64 / d.as_secs_f64().max(1e-9)
}

fn main() {
    let a = args();
    println!(
        "| backend | instances | fill (s) | first half (rows/s) | resume: first batch (ms) | second half (rows/s) | overall (rows/s) | peak RSS (MiB) | nova-like baseline (rows/s) | ratio |"
    );
    println!("|---|---|---|---|---|---|---|---|---|---|");
    for backend in &a.backends {
        let api = TestDb::new(*backend);
        let cdb = CellDb::new(*backend);
        let cell = cdb.map_in(&api);
        let fill_time = fill(&cdb, a.size);
        let router = Router::new(api.db.clone(), RouterOptions::default()).expect("router");
        reset_peak();
        let half = (a.size / 2).max(1) as i64;
        let t0 = Instant::now();
        let r1 = map_instances(
            &api,
            &router,
            cell.uuid,
            MapInstancesOptions {
                max_count: Some(half),
                reset: false,
                batch_size: a.batch_size,
            },
            &mut |_| {},
        )
        .expect("first half");
        let first = t0.elapsed();
        let t1 = Instant::now();
        let mut first_batch: Option<Duration> = None;
        let r2 = map_instances(
            &api,
            &router,
            cell.uuid,
            MapInstancesOptions {
                max_count: None,
                reset: false,
                batch_size: a.batch_size,
            },
            &mut |_| {
                first_batch.get_or_insert_with(|| t1.elapsed());
            },
        )
        .expect("second half");
        let second = t1.elapsed();
        let peak_mib = peak_rss_kib() as f64 / 1024.0;
        assert_eq!(
            r1.mapped + r2.mapped,
            a.size as u64,
            "every instance mapped"
        );
        assert!(r2.complete);

        // The nova-manage way on a sample: read 50, create one by one.
        let base_api = TestDb::new(*backend);
        let base_cell = cdb.map_in(&base_api);
        let sample: Vec<String> = {
            use diesel::prelude::*;
            use mapping_model::cell_schema::instances;
            cdb.db
                .with_connection(|c| {
                    Ok(instances::table
                        .order((instances::created_at.asc(), instances::id.asc()))
                        .select(instances::uuid)
                        .limit(a.baseline as i64)
                        .load::<String>(c)
                        .expect("sample"))
                })
                .expect("connection")
        };
        let tb = Instant::now();
        for chunk in sample.chunks(50) {
            for u in chunk {
                base_api
                    .instance_mappings()
                    .create(NewInstanceMapping::new(u.as_str(), "p", "u").cell(&base_cell))
                    .expect("baseline create");
            }
        }
        let baseline = rate(sample.len() as u64, tb.elapsed());
        let overall = rate(a.size as u64, first + second);
        println!(
            "| {backend:?} | {} | {:.1} | {:.0} | {:.0} | {:.0} | {:.0} | {:.0} | {:.0} | {:.0}× |",
            a.size,
            fill_time.as_secs_f64(),
            rate(r1.processed, first),
            first_batch.unwrap_or_default().as_secs_f64() * 1000.0,
            rate(r2.processed, second),
            overall,
            peak_mib,
            baseline,
            overall / baseline,
        );
    }
}
