//! The cache tiers (`mapping-bench --tiers`): per backend, one lookup
//! uncached, a first-tier hit, a memcached hit and a memcached miss (cold
//! key: lease, database read, fill); then the many-process scenario: N
//! processes looking up random instances, with database reads per lookup
//! at steady state for each tier configuration.
//!
//! memcached: `MAPPING_BENCH_MEMCACHED` (default `127.0.0.1:11311`, from
//! `scripts/memcached.sh start`).
//!
//! ```text
//! scripts/bench.sh --tiers [--backends sqlite,postgres,mysql] [--processes 8]
//! ```

use std::fmt::Write as _;
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use mapping_diesel::{BackendKind, CacheOptions, Database, MemcachedOptions, Options};
use mapping_model::NewInstanceMapping;
use mapping_testkit::{new_cell, uuid, TestDb};

use crate::harness::{fmt_ns, single, Plan};

/// Mappings in the table.
const ROWS: usize = 10_000;
/// First-tier capacity in the many-process scenario: a small first tier,
/// a tenth of the working set.
const SMALL_FIRST_TIER: usize = 1_000;
/// Lookups per worker process: warm-up, then measured.
const WARM: usize = 20_000;
const MEASURED: usize = 10_000;

/// Runs the tier bench if the arguments ask for it (`--tiers`, or the
/// worker mode); returns whether it did.
pub fn run_if_asked() -> bool {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().map(String::as_str) == Some("--tiers-worker") {
        worker(&args[1..]);
        return true;
    }
    if !args.iter().any(|a| a == "--tiers") {
        return false;
    }
    let mut backends = mapping_diesel::compiled_backends().to_vec();
    let mut processes = 8usize;
    let mut quick = false;
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--tiers" => {}
            "--quick" => quick = true,
            "--processes" => {
                processes = it
                    .next()
                    .and_then(|n| n.parse().ok())
                    .expect("--processes N")
            }
            "--backends" => {
                backends = it
                    .next()
                    .expect("--backends list")
                    .split(',')
                    .map(|b| match b {
                        "sqlite" => BackendKind::Sqlite,
                        "postgres" => BackendKind::Postgres,
                        "mysql" => BackendKind::Mysql,
                        other => panic!("unknown backend {other}"),
                    })
                    .collect();
            }
            other => panic!("unknown argument {other}"),
        }
    }
    let mut md = String::new();
    let _ = writeln!(
        md,
        "## Cache tiers ({ROWS} mappings, load average {})\n",
        loadavg()
    );
    let _ = writeln!(md, "| backend | uncached lookup | first-tier hit | memcached hit | memcached miss (cold) | memcached hit / uncached |");
    let _ = writeln!(md, "|---|---|---|---|---|---|");
    let mut many = String::new();
    let _ = writeln!(
        many,
        "\n## {processes} processes, random lookups over {ROWS} instances\n"
    );
    let _ = writeln!(
        many,
        "| backend | tiers | DB reads per lookup (steady state) | lookups/s (all processes) |"
    );
    let _ = writeln!(many, "|---|---|---|---|");
    for b in backends {
        eprintln!("== tiers: {b:?}");
        run_backend(b, quick, processes, &mut md, &mut many);
    }
    md.push_str(&many);
    let _ = std::fs::create_dir_all("target/bench");
    let _ = std::fs::write("target/bench/tiers.md", &md);
    println!("{md}");
    true
}

fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_default()
}

fn memcached(prefix: &str) -> MemcachedOptions {
    MemcachedOptions {
        servers: std::env::var("MAPPING_BENCH_MEMCACHED")
            .unwrap_or_else(|_| "127.0.0.1:11311".into())
            .split(',')
            .map(str::to_owned)
            .collect(),
        key_prefix: prefix.to_owned(),
        ..MemcachedOptions::default()
    }
}

fn fresh_prefix() -> String {
    format!("b{}:", uuid::Uuid::new_v4().simple())
}

fn run_backend(b: BackendKind, quick: bool, processes: usize, md: &mut String, many: &mut String) {
    let t = TestDb::new(b);
    let cells: Vec<_> = (0..8)
        .map(|_| t.cells().create(new_cell()).expect("cell"))
        .collect();
    let uuids: Vec<String> = (0..ROWS).map(|_| uuid()).collect();
    let news = uuids
        .iter()
        .enumerate()
        .map(|(i, u)| {
            NewInstanceMapping::new(u.clone(), format!("p{}", i % 100), "u")
                .cell(&cells[i % cells.len()])
        })
        .collect();
    t.instance_mappings().create_bulk(news).expect("load");
    let plan = Plan::standard(quick);
    let mut k = 0usize;
    let mut next = || {
        k = (k + 7919) % ROWS;
        uuids[k].as_str()
    };

    pin_servers(&[&t.db]);
    let uncached = single(plan, || {
        t.instance_mappings()
            .get_by_instance_uuid(next())
            .expect("lookup")
    });
    let first = t.reopen(Options::default().cache(Some(CacheOptions {
        capacity: ROWS,
        ttl: Duration::from_secs(3600),
    })));
    let mc = t.reopen(Options::default().memcached(Some(memcached(&fresh_prefix()))));
    for u in &uuids {
        first
            .instance_mappings()
            .get_by_instance_uuid(u)
            .expect("warm");
        mc.instance_mappings()
            .get_by_instance_uuid(u)
            .expect("warm");
    }
    // Every server this comparison talks to on the bench's CPU, as the main
    // bench does (see `setup::pin_server`): on this 2-vCPU machine an idle
    // vCPU woken for each round trip costs up to ~100 µs, whichever server
    // it hosts.
    pin_servers(&[&t.db, &first, &mc]);
    let first_hit = single(plan, || {
        first
            .instance_mappings()
            .get_by_instance_uuid(next())
            .expect("hit")
    });
    let mc_hit = single(plan, || {
        mc.instance_mappings()
            .get_by_instance_uuid(next())
            .expect("hit")
    });
    let s = mc.cache_stats().and_then(|s| s.memcached).expect("on");
    assert_eq!(
        s.misses, ROWS as u64,
        "every measured memcached lookup hit: {s:?}"
    );
    // Cold keys: a handle with a key prefix of its own, renewed whenever
    // its keys are used up.
    let mut cold = mc.clone();
    let mut used = ROWS;
    let mut j = 0usize;
    let miss = single(plan, || {
        if used == ROWS {
            cold = t.reopen(Options::default().memcached(Some(memcached(&fresh_prefix()))));
            used = 0;
        }
        used += 1;
        j = (j + 7919) % ROWS;
        cold.instance_mappings()
            .get_by_instance_uuid(&uuids[j])
            .expect("miss")
    });
    let _ = writeln!(
        md,
        "| {b:?} | {} | {} | {} | {} | {:.2} |",
        fmt_ns(uncached.median()),
        fmt_ns(first_hit.median()),
        fmt_ns(mc_hit.median()),
        fmt_ns(miss.median()),
        mc_hit.median() / uncached.median()
    );
    eprintln!(
        "   uncached {} first-tier {} memcached hit {} miss {}",
        fmt_ns(uncached.median()),
        fmt_ns(first_hit.median()),
        fmt_ns(mc_hit.median()),
        fmt_ns(miss.median())
    );

    let list = std::env::temp_dir().join(format!("tiers-{}.txt", uuid()));
    std::fs::write(&list, uuids.join("\n")).expect("uuid list");
    for tiers in ["none", "first", "memcached", "both"] {
        let prefix = fresh_prefix();
        let start = Instant::now();
        let children: Vec<_> = (0..processes)
            .map(|i| {
                Command::new(std::env::current_exe().expect("exe"))
                    .args([
                        "--tiers-worker",
                        t.url(),
                        tiers,
                        &prefix,
                        &list.display().to_string(),
                        &i.to_string(),
                    ])
                    .stdout(Stdio::piped())
                    .spawn()
                    .expect("worker")
            })
            .collect();
        let (mut lookups, mut reads, mut busy) = (0u64, 0u64, Duration::ZERO);
        for c in children {
            let out = c.wait_with_output().expect("worker ends");
            assert!(out.status.success(), "worker failed");
            let line = BufReader::new(&out.stdout[..])
                .lines()
                .map_while(Result::ok)
                .last()
                .unwrap_or_default();
            let f: Vec<u64> = line
                .split_whitespace()
                .filter_map(|x| x.parse().ok())
                .collect();
            assert_eq!(f.len(), 3, "worker said {line:?}");
            lookups += f[0];
            reads += f[1];
            busy = busy.max(Duration::from_nanos(f[2]));
        }
        let _ = start;
        let _ = writeln!(
            many,
            "| {b:?} | {tiers} | {:.3} | {:.0} |",
            reads as f64 / lookups as f64,
            lookups as f64 / busy.as_secs_f64()
        );
        eprintln!(
            "   {processes} processes, {tiers}: {:.3} DB reads per lookup",
            reads as f64 / lookups as f64
        );
    }
    let _ = std::fs::remove_file(list);
}

/// One worker: random lookups; prints "lookups db_reads measured_ns" of the
/// measured phase. Database reads are the lookups no tier answered.
fn worker(args: &[String]) {
    let [url, tiers, prefix, list, seed] = args else {
        panic!("worker arguments: url tiers prefix list seed");
    };
    let uuids: Vec<String> = std::fs::read_to_string(list)
        .expect("list")
        .lines()
        .map(str::to_owned)
        .collect();
    let first = Some(CacheOptions {
        capacity: SMALL_FIRST_TIER,
        ttl: Duration::from_secs(3600),
    });
    let options = match tiers.as_str() {
        "none" => Options::default(),
        "first" => Options::default().cache(first),
        "memcached" => Options::default().memcached(Some(memcached(prefix))),
        _ => Options::default()
            .cache(first)
            .memcached(Some(memcached(prefix))),
    };
    let db = Database::open_with(url, options).expect("open");
    let mut rng = seed
        .parse::<u64>()
        .unwrap_or(1)
        .wrapping_mul(0x9e37_79b9_7f4a_7c15)
        | 1;
    let mut pick = || {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        uuids[(rng % uuids.len() as u64) as usize].as_str()
    };
    let reads = |db: &Database| -> u64 {
        match db.cache_stats() {
            None => 0,
            Some(s) => match (s.memcached, s.first_tier) {
                (Some(m), _) => m.misses,
                (None, Some(f)) => f.misses,
                (None, None) => 0,
            },
        }
    };
    for _ in 0..WARM {
        db.instance_mappings()
            .get_by_instance_uuid(pick())
            .expect("lookup");
    }
    let before = reads(&db);
    let start = Instant::now();
    for _ in 0..MEASURED {
        db.instance_mappings()
            .get_by_instance_uuid(pick())
            .expect("lookup");
    }
    let ns = start.elapsed().as_nanos();
    let db_reads = if tiers == "none" {
        MEASURED as u64
    } else {
        reads(&db) - before
    };
    println!("{MEASURED} {db_reads} {ns}");
}

/// Pins the server side of these handles' connections (see
/// `setup::pin_server`) and every memcached process to the bench's CPU
/// (`MAPPING_BENCH_CPU`, set by scripts/bench.sh); nothing without it.
fn pin_servers(dbs: &[&Database]) {
    use diesel::RunQueryDsl;
    if crate::setup::bench_cpu().is_none() {
        return;
    }
    #[derive(diesel::QueryableByName)]
    struct Pid {
        #[diesel(sql_type = diesel::sql_types::Text)]
        pid: String,
    }
    for db in dbs {
        let Some(sql) = crate::setup::server_tasks_sql(db.backend()) else {
            continue;
        };
        if let Ok(rows) = db.with_connection(|c| {
            diesel::sql_query(sql)
                .load::<Pid>(c)
                .map_err(mapping_model::Error::from)
        }) {
            for r in rows {
                crate::setup::pin_task(false, &r.pid);
            }
        }
    }
    if let Ok(out) = Command::new("pgrep").args(["-x", "memcached"]).output() {
        for pid in String::from_utf8_lossy(&out.stdout).split_whitespace() {
            crate::setup::pin_task(true, pid);
        }
    }
}
