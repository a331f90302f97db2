//! Setting a backend up for the bench: the loaded table, the raw driver,
//! planner statistics, CPU pinning, and the run of every size.

use std::time::{Duration, Instant};

use mapping_diesel::{BackendKind, CacheOptions, Database, Options};
use mapping_model::{CellMapping, NewInstanceMapping};
use mapping_testkit::{new_cell, uuid, TestDb};

use crate::cases::{explain, run_cases};
use crate::raw::{self, Raw};
use crate::{Args, Report, CELLS, LOAD_BATCH, PER_PROJECT, USERS};

/// A tiny xorshift generator: reproducible picks without a crate.
pub(crate) struct Rng(pub(crate) u64);

impl Rng {
    pub(crate) fn below(&mut self, n: usize) -> usize {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 % n.max(1) as u64) as usize
    }
}

pub(crate) fn now_text(backend: BackendKind) -> String {
    timestamp_text(backend, chrono::Utc::now().naive_utc())
}

/// A timestamp as the raw side sends it for `backend` (whole seconds on
/// MySQL/MariaDB, whose `DATETIME` columns keep no fraction).
pub(crate) fn timestamp_text(backend: BackendKind, t: chrono::NaiveDateTime) -> String {
    match backend {
        BackendKind::Mysql => t.format("%Y-%m-%d %H:%M:%S").to_string(),
        _ => t.format("%Y-%m-%d %H:%M:%S%.6f").to_string(),
    }
}

pub(crate) fn open_raw(t: &TestDb) -> Box<dyn Raw> {
    match t.backend() {
        BackendKind::Sqlite => {
            let path = t.url().trim_start_matches("sqlite://");
            Box::new(raw::sqlite::SqliteRaw::open(path))
        }
        #[cfg(feature = "postgres")]
        BackendKind::Postgres => Box::new(raw::pg::PgRaw::open(t.url())),
        #[cfg(feature = "mysql")]
        BackendKind::Mysql => Box::new(raw::mysql::MysqlRaw::open(t.url())),
        #[allow(unreachable_patterns)]
        other => panic!("{other:?} is not compiled in"),
    }
}

/// The loaded table: every uuid, in load order.
pub(crate) struct Data {
    pub(crate) cells: Vec<CellMapping>,
    pub(crate) uuids: Vec<String>,
}

impl Data {
    pub(crate) fn project(i: usize) -> String {
        format!("project-{:05}", i / PER_PROJECT)
    }

    pub(crate) fn user(i: usize) -> String {
        format!("user-{}", i % USERS)
    }

    /// 16 sets of 1,000 uuids drawn from the table (the `lookup_1000` inputs).
    pub(crate) fn uuid_sets(&self, pick: &mut Rng) -> Vec<Vec<String>> {
        let n = self.uuids.len();
        (0..16)
            .map(|_| {
                (0..1000)
                    .map(|_| self.uuids[pick.below(n)].clone())
                    .collect()
            })
            .collect()
    }

    pub(crate) fn projects(&self) -> usize {
        (self.uuids.len() / PER_PROJECT).max(1)
    }

    /// Grows the table to `size` mappings through `create_bulk`.
    pub(crate) fn load(&mut self, db: &Database, size: usize) -> Duration {
        let start = Instant::now();
        while self.uuids.len() < size {
            let from = self.uuids.len();
            let to = (from + LOAD_BATCH).min(size);
            let batch: Vec<NewInstanceMapping> = (from..to)
                .map(|i| {
                    let mut n = NewInstanceMapping::new(uuid(), Self::project(i), Self::user(i));
                    n.cell_mapping = self.cells.get(i % CELLS).cloned();
                    n.queued_for_delete = Some(i % 50 == 0);
                    n
                })
                .collect();
            let uuids: Vec<String> = batch.iter().map(|n| n.instance_uuid.clone()).collect();
            db.instance_mappings().create_bulk(batch).expect("load");
            self.uuids.extend(uuids);
        }
        start.elapsed()
    }
}

/// Refreshes the planner statistics after a load, as autovacuum (PostgreSQL)
/// and InnoDB's persistent statistics would. Not on SQLite: nothing runs
/// ANALYZE there on its own (Nova does not), and with `sqlite_stat4` present
/// (the bundled library is built with STAT4) every lookup through any
/// client is re-prepared on each new binding, about 4× slower (see
/// docs/benchmarks.md).
pub(crate) fn analyze(t: &TestDb) {
    match t.backend() {
        BackendKind::Mysql => t.exec("ANALYZE TABLE instance_mappings, cell_mappings"),
        BackendKind::Postgres => t.exec("ANALYZE"),
        BackendKind::Sqlite => {}
    }
}

pub(crate) fn run_backend(backend: BackendKind, args: &Args, report: &mut Report) {
    let t = TestDb::new(backend);
    // `MAPPING_BENCH_TEMPLATES=1`: cells whose transport URL is a template,
    // expanded on every read against a default (as a deployment with
    // `[DEFAULT]/transport_url` and templated cells has it).
    let templates = std::env::var_os("MAPPING_BENCH_TEMPLATES").is_some();
    let db = if templates {
        t.reopen(Options::default().default_transport_url("rabbit://nova:secret@mq.example:5672/"))
    } else {
        t.db.clone()
    };
    let cached = t.reopen(Options::default().cache(Some(CacheOptions {
        capacity: 100_000,
        ttl: Duration::from_secs(3600),
    })));
    let mut raw = open_raw(&t);
    let version_sql = match backend {
        BackendKind::Sqlite => "SELECT 'SQLite ' || sqlite_version()",
        BackendKind::Postgres => "SELECT version()",
        BackendKind::Mysql => "SELECT CONCAT('MySQL/MariaDB ', VERSION())",
    };
    let version = raw
        .text_query(version_sql)
        .first()
        .and_then(|r| r.first().cloned())
        .unwrap_or_default();
    report.versions.push((backend, version));
    // Warm both handles so that their pooled connections exist, then pin
    // every server process/thread of this database to the bench's CPU.
    db.instance_mappings()
        .get_counts("warm", None)
        .expect("warm");
    cached
        .instance_mappings()
        .get_counts("warm", None)
        .expect("warm");
    pin_server(&t, raw.as_mut());
    let mut data = Data {
        cells: (0..CELLS)
            .map(|i| {
                let mut new = new_cell();
                if templates {
                    new.transport_url =
                        format!("rabbit://{{username}}:{{password}}@{{hostname}}:{{port}}/cell{i}");
                }
                db.cells().create(new).expect("cell")
            })
            .collect(),
        uuids: Vec::new(),
    };
    let largest = args.sizes.last().copied().unwrap_or(0);
    for &size in &args.sizes {
        eprintln!("   loading to {size} rows");
        let took = data.load(&db, size);
        report
            .loads
            .push((backend, size - report_loaded(report, backend), took));
        analyze(&t);
        if let Some(case) = &args.profile {
            crate::profile::run(case, args.iters, &db, raw.as_mut(), &data);
            continue;
        }
        run_cases(
            backend,
            size,
            args.quick,
            &db,
            &cached,
            raw.as_mut(),
            &data,
            report,
        );
        if size == largest {
            explain(backend, raw.as_mut(), &data, report);
        }
    }
}

/// The CPU the bench runs on (scripts/bench.sh pins it with taskset).
pub(crate) fn bench_cpu() -> Option<String> {
    std::env::var("MAPPING_BENCH_CPU").ok()
}

/// Pins the server side of this database's connections (PostgreSQL backend
/// processes, MariaDB connection threads) to the bench's CPU. On this 2-vCPU
/// virtual machine a client and a server on different vCPUs pay a cross-CPU
/// wake-up on every round trip that varies from run to run (a lookup took
/// 40 or 120 µs depending on where the scheduler put the backend), so both
/// sides of a comparison could differ by 3× for no reason of their own.
pub(crate) fn pin_server(t: &TestDb, raw: &mut dyn Raw) {
    let Some(sql) = server_tasks_sql(t.backend()) else {
        return;
    };
    for row in raw.text_query(sql) {
        if let Some(pid) = row.first() {
            pin_task(false, pid);
        }
    }
}

/// The query listing the server tasks of the current database's
/// connections (PostgreSQL backend pids, MariaDB connection thread ids), as
/// one text column `pid`; `None` on SQLite (no server).
pub(crate) fn server_tasks_sql(backend: BackendKind) -> Option<&'static str> {
    match backend {
        BackendKind::Sqlite => None,
        BackendKind::Postgres => Some(
            "SELECT CAST(pid AS TEXT) AS pid FROM pg_stat_activity WHERE datname = current_database()",
        ),
        BackendKind::Mysql => Some(
            "SELECT CAST(TID AS CHAR) AS pid FROM information_schema.PROCESSLIST WHERE DB = DATABASE()",
        ),
    }
}

/// Pins one task (`all_threads`: every thread of the process) to the
/// bench's CPU, if one is set; says so when it cannot.
pub(crate) fn pin_task(all_threads: bool, pid: &str) {
    let Some(cpu) = bench_cpu() else { return };
    let flag = if all_threads { "-ap" } else { "-p" };
    let ok = std::process::Command::new("taskset")
        .args([flag, "-c", &cpu, pid])
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false);
    if !ok {
        eprintln!("   could not pin pid/tid {pid} to CPU {cpu}");
    }
}

/// Rows loaded so far on `backend` (the sizes grow one table).
pub(crate) fn report_loaded(report: &Report, backend: BackendKind) -> usize {
    report
        .loads
        .iter()
        .filter(|(b, _, _)| *b == backend)
        .map(|(_, n, _)| n)
        .sum()
}
