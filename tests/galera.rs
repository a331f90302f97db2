//! The library on a real 3-node MariaDB Galera cluster with HAProxy in front
//! (`scripts/galera.sh`): multi-writer conflicts, a node killed mid-load
//! (clients connected directly, then through HAProxy), the killed node's
//! rejoin through IST, and a minority partition.
//!
//! The cluster is found through `MAPPING_TEST_GALERA`, which
//! `scripts/galera.sh env` prints and `scripts/test-all.sh` sets:
//! `<node1 url>,<node2 url>,<node3 url>;<haproxy url>`. Without it the test
//! says so loudly, and under CI (`CI=true`) it fails instead of passing.
//!
//! The steps kill, restart, stop and resume nodes, so they run one after
//! another in the single test of this binary: nothing else uses the cluster
//! meanwhile.

use std::collections::HashMap;
use std::io::Write;
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use cell_mappings::{
    model::ConnectionFailure, BackendKind, ConnectionUrl, Database, Error, InstanceMappingUpdate,
    NewCellMapping, NewInstanceMapping, Options, RetryPolicy,
};
use diesel::connection::SimpleConnection;
use diesel::sql_types::Text;
use diesel::{QueryableByName, RunQueryDsl};
use mapping_testkit::new_instance;

/// The connect timeout the tests run with.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
/// What a call may take beyond the connect timeout while a node dies: the
/// survivors stall until Galera evicts the dead node (`evs.inactive_timeout`
/// of 6 s in scripts/galera.sh), plus slack for a loaded machine.
const EVICTION_MARGIN: Duration = Duration::from_secs(9);
/// Margin for calls on the dead node itself, or on a node outside the
/// primary component: they never wait for Galera, only for the connect timeout.
const MARGIN: Duration = Duration::from_secs(2);

struct Cluster {
    nodes: Vec<String>,
    proxy: String,
}

fn script(args: &str) {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/galera.sh");
    let out = Command::new("bash")
        .arg("-c")
        .arg(format!("{path} {args}"))
        .output()
        .unwrap_or_else(|e| panic!("running galera.sh {args}: {e}"));
    assert!(
        out.status.success(),
        "galera.sh {args} failed:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

fn options() -> Options {
    Options::default()
        .max_connections(4)
        // Far longer than the connect timeout: the bound under test is the
        // connect timeout, not the pool's wait.
        .connection_timeout(Duration::from_secs(30))
        .connect_timeout(CONNECT_TIMEOUT)
        .ping_idle_after(Duration::ZERO)
        .retry(RetryPolicy {
            max_attempts: 20,
            base_delay: Duration::from_millis(5),
            max_delay: Duration::from_millis(200),
        })
}

fn open(url: &str, options: Options) -> Database {
    Database::open_with(url, options).unwrap_or_else(|e| panic!("opening {url}: {e}"))
}

/// Makes a fresh database on the cluster (through node 1) and returns its
/// URL on each node and through the proxy.
fn fresh_database(c: &Cluster, tag: &str) -> (Vec<String>, String) {
    let name = format!(
        "galera_{tag}_{}",
        &uuid::Uuid::new_v4().simple().to_string()[..8]
    );
    open(&c.nodes[0], options())
        .with_connection(|conn| {
            conn.batch_execute(&format!("CREATE DATABASE {name}"))
                .map_err(Error::from)
        })
        .unwrap();
    let on = |url: &str| {
        ConnectionUrl::parse(url)
            .and_then(|u| u.with_database(&name))
            .unwrap()
            .diesel_url()
            .to_owned()
    };
    (c.nodes.iter().map(|u| on(u)).collect(), on(&c.proxy))
}

#[derive(QueryableByName)]
struct V {
    #[diesel(sql_type = Text)]
    v: String,
}

fn text(db: &Database, sql: &str) -> String {
    db.with_connection(|c| {
        diesel::sql_query(sql)
            .get_result::<V>(c)
            .map_err(Error::from)
    })
    .unwrap_or_else(|e| panic!("{sql}: {e}"))
    .v
}

/// A checksum of every row of the three tables, read on `url` under
/// `wsrep_sync_wait = 1` (the option under test), so that the node has
/// applied everything the cluster committed before the read.
fn checksum(url: &str) -> String {
    let db = open(url, options().wsrep_sync_wait(Some(1)));
    assert_eq!(
        text(&db, "SELECT CAST(@@SESSION.wsrep_sync_wait AS CHAR) AS v"),
        "1"
    );
    let row = |cols: &str| format!("CRC32(CONCAT_WS('|', {cols}))");
    let mut out = Vec::new();
    for (table, cols) in [
        (
            "cell_mappings",
            "id, uuid, COALESCE(name, '~'), COALESCE(transport_url, '~'), \
             COALESCE(database_connection, '~'), COALESCE(disabled, '~'), \
             COALESCE(created_at, '~'), COALESCE(updated_at, '~')",
        ),
        (
            "instance_mappings",
            "id, instance_uuid, COALESCE(cell_id, '~'), project_id, COALESCE(user_id, '~'), \
             COALESCE(queued_for_delete, '~'), COALESCE(created_at, '~'), COALESCE(updated_at, '~')",
        ),
        (
            "host_mappings",
            "id, cell_id, host, COALESCE(created_at, '~'), COALESCE(updated_at, '~')",
        ),
    ] {
        out.push(text(
            &db,
            &format!(
                "SELECT CONCAT('{table}:', COUNT(*), ':', COALESCE(SUM({}), 0)) AS v FROM {table}",
                row(cols)
            ),
        ));
    }
    out.join(" ")
}

fn assert_converged(urls: &[String]) -> String {
    let sums: Vec<String> = urls.iter().map(|u| checksum(u)).collect();
    assert!(
        sums.iter().all(|s| *s == sums[0]),
        "nodes differ: {sums:#?}"
    );
    sums[0].clone()
}

fn new_cell() -> NewCellMapping {
    let u = uuid::Uuid::new_v4().to_string();
    NewCellMapping::new(
        &u,
        "rabbit://nova:pw@mq/",
        "mysql+pymysql://nova:pw@db/nova_cell",
    )
}

/// Creates a fresh mapping in `project` through `db` and checks that it
/// reads back as the create returned it.
fn create_and_read_back(db: &Database, project: &str) {
    let im = db
        .instance_mappings()
        .create(new_instance(project, "u"))
        .unwrap();
    assert_eq!(
        db.instance_mappings()
            .get_by_instance_uuid(&im.instance_uuid)
            .unwrap(),
        im
    );
}

/// 1. Writers on all three nodes update the same rows and create new ones:
///    certification conflicts are retried, every call ends Ok, and the
///    nodes end identical.
fn multi_writer_conflicts(c: &Cluster) {
    let (urls, _) = fresh_database(c, "conflicts");
    let dbs: Vec<Database> = urls.iter().map(|u| open(u, options())).collect();
    dbs[0].migrate().unwrap();
    // The schema reached every node.
    for db in &dbs {
        db.check_schema().unwrap();
    }
    let cells: Vec<_> = (0..3)
        .map(|_| dbs[0].cells().create(new_cell()).unwrap())
        .collect();
    let shared = dbs[0]
        .instance_mappings()
        .create(new_instance("p", "u"))
        .unwrap();
    std::thread::scope(|s| {
        for (n, db) in dbs.iter().enumerate() {
            for w in 0..2 {
                let (cells, shared) = (&cells, &shared);
                s.spawn(move || {
                    for i in 0..25 {
                        let im = db
                            .instance_mappings()
                            .get_by_instance_uuid(&shared.instance_uuid)
                            .unwrap();
                        let cell = &cells[(n + w + i) % cells.len()];
                        db.instance_mappings()
                            .save(&im, &InstanceMappingUpdate::new().cell(Some(cell)))
                            .unwrap_or_else(|e| panic!("save on node {}: {e}", n + 1));
                        db.instance_mappings()
                            .create(new_instance("p", "u"))
                            .unwrap_or_else(|e| panic!("create on node {}: {e}", n + 1));
                    }
                });
            }
        }
    });
    let retries: u64 = dbs.iter().map(|d| d.stats().retries).sum();
    assert!(
        retries > 0,
        "no certification conflict happened: nothing was proven"
    );
    let sum = assert_converged(&urls);
    assert!(sum.contains("instance_mappings:151:"), "{sum}");
    eprintln!("galera: conflicts retried {retries} times, nodes identical: {sum}");
}

/// What one call did.
struct Call {
    create: Option<String>,
    result: Result<(), Error>,
    took: Duration,
}

/// An error a caller may get during an outage: the connection error, or
/// (for a write whose connection died under it) "outcome unknown".
fn is_outage(e: &Error) -> bool {
    matches!(e, Error::Connection { .. } | Error::OutcomeUnknown { .. })
}

/// Runs `threads` callers on each database until `stop`, alternating
/// creates and lookups; returns what every call did, per database.
fn load(
    dbs: &[Database],
    threads: usize,
    stop: &AtomicBool,
    calls_done: &AtomicUsize,
) -> Vec<Vec<Call>> {
    std::thread::scope(|s| {
        let handles: Vec<_> = dbs
            .iter()
            .flat_map(|db| {
                (0..threads).map(move |_| {
                    s.spawn(move || {
                        let mut calls = Vec::new();
                        let mut last: Option<String> = None;
                        while !stop.load(Ordering::Relaxed) {
                            let start = Instant::now();
                            let call = match last.take() {
                                Some(uuid) => Call {
                                    create: None,
                                    result: db
                                        .instance_mappings()
                                        .get_by_instance_uuid(&uuid)
                                        .map(|_| ()),
                                    took: start.elapsed(),
                                },
                                None => {
                                    let uuid = uuid::Uuid::new_v4().to_string();
                                    let r = db
                                        .instance_mappings()
                                        .create(NewInstanceMapping::new(&uuid, "load", "u"))
                                        .map(|_| ());
                                    if r.is_ok() {
                                        last = Some(uuid.clone());
                                    }
                                    Call {
                                        create: Some(uuid),
                                        result: r,
                                        took: start.elapsed(),
                                    }
                                }
                            };
                            calls.push(call);
                            calls_done.fetch_add(1, Ordering::Relaxed);
                        }
                        (db.redacted_url(), calls)
                    })
                })
            })
            .collect();
        let mut by_db: HashMap<String, Vec<Call>> = HashMap::new();
        for h in handles {
            let (url, calls) = h.join().expect("load thread panicked");
            by_db.entry(url).or_default().extend(calls);
        }
        dbs.iter()
            .map(|d| by_db.remove(&d.redacted_url()).unwrap_or_default())
            .collect()
    })
}

fn wait_for(what: &str, mut ok: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(120);
    while !ok() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn ist_count(node: usize) -> usize {
    // scripts/test-all.sh says where the nodes live (`galera.sh dir`).
    let dir = std::env::var("MAPPING_TEST_GALERA_DIR")
        .unwrap_or_else(|_| format!("{}/target/galera", env!("CARGO_MANIFEST_DIR")));
    let log = format!("{dir}/node{node}/error.log");
    std::fs::read_to_string(&log)
        .map(|s| s.matches("IST received").count())
        .unwrap_or(0)
}

/// 2 and 3. Kills node `victim` with `kill -9` while callers work on `dbs`
/// (`doomed` are those whose every connection goes to the victim), checks
/// the calls, restarts the victim, checks it rejoined through IST and
/// converged, and that every `Database` works again.
fn node_loss(how: &str, dbs: &[Database], victim: usize, survivors: &[String], all: &[String]) {
    let stop = AtomicBool::new(false);
    let done = AtomicUsize::new(0);
    let mut killed_at = None;
    let calls = std::thread::scope(|s| {
        let loader = s.spawn(|| load(dbs, 2, &stop, &done));
        wait_for("calls before the kill", || {
            done.load(Ordering::Relaxed) >= 60
        });
        script(&format!("kill {victim}"));
        killed_at = Some(Instant::now());
        let at_kill = done.load(Ordering::Relaxed);
        // Go on until the callers made plenty of calls after the kill.
        wait_for("calls after the kill", || {
            done.load(Ordering::Relaxed) >= at_kill + 150
        });
        stop.store(true, Ordering::Relaxed);
        loader.join().expect("loader panicked")
    });
    let ist_before = ist_count(victim);

    let check = survivors[0].clone();
    let reader = open(&check, options().wsrep_sync_wait(Some(1)));
    let mut errors = 0;
    let mut ok_creates = 0;
    let mut longest = Duration::ZERO;
    for (i, per_db) in calls.iter().enumerate() {
        for call in per_db {
            longest = longest.max(call.took);
            if let Err(e) = &call.result {
                errors += 1;
                assert!(is_outage(e), "{how}: unexpected error kind: {e:?}");
                assert!(
                    call.took <= CONNECT_TIMEOUT + EVICTION_MARGIN,
                    "{how}: a failing call took {:?}",
                    call.took
                );
            }
            assert!(
                call.took <= CONNECT_TIMEOUT + EVICTION_MARGIN,
                "{how}: a call on database {i} took {:?}",
                call.took
            );
            if let (Some(uuid), Ok(())) = (&call.create, &call.result) {
                ok_creates += 1;
                let n = text(
                    &reader,
                    &format!(
                        "SELECT CAST(COUNT(*) AS CHAR) AS v FROM instance_mappings \
                         WHERE instance_uuid = '{uuid}'"
                    ),
                );
                assert_eq!(n, "1", "{how}: created {uuid} is not on a survivor once");
            }
        }
    }
    eprintln!(
        "galera: {how}: {} calls, {ok_creates} creates Ok and present once, {errors} outage errors, \
         longest call {longest:?}",
        calls.iter().map(Vec::len).sum::<usize>()
    );

    // 3. Rejoin through IST, and convergence.
    let restarted = Instant::now();
    script(&format!("restart {victim}"));
    eprintln!(
        "galera: node {victim} rejoined in {:?} (killed {:?} ago)",
        restarted.elapsed(),
        killed_at.map(|t| t.elapsed())
    );
    assert!(
        ist_count(victim) > ist_before,
        "node {victim} did not rejoin through IST"
    );
    assert_converged(all);

    // The same handles go on working.
    for db in dbs {
        wait_for("the database to answer again", || {
            db.instance_mappings()
                .create(new_instance("after", "u"))
                .is_ok()
        });
        create_and_read_back(db, "after");
    }
    assert_converged(all);
}

fn status(db: &Database, var: &str) -> String {
    db.with_connection(|c| {
        #[derive(QueryableByName)]
        struct S {
            #[diesel(sql_type = Text)]
            #[diesel(column_name = Value)]
            value: String,
        }
        diesel::sql_query(format!("SHOW STATUS LIKE '{var}'"))
            .get_result::<S>(c)
            .map(|s| s.value)
            .map_err(Error::from)
    })
    .unwrap_or_default()
}

/// 4. Nodes 2 and 3 stop (SIGSTOP: they hang, as if cut off): node 1 is left
///    alone outside the primary component and refuses reads and writes at
///    once with a clear connection error; it serves again once they resume.
fn partition(urls: &[String]) {
    let db = open(&urls[0], options());
    let im = db
        .instance_mappings()
        .create(new_instance("part", "u"))
        .unwrap();
    script("pause 2");
    script("pause 3");
    // Resume them whatever happens below.
    struct Resume;
    impl Drop for Resume {
        fn drop(&mut self) {
            script("resume 2");
            script("resume 3");
        }
    }
    let resume = Resume;
    let admin = open(&urls[0], options());
    wait_for("node 1 to leave the primary component", || {
        status(&admin, "wsrep_ready") == "OFF"
    });
    let start = Instant::now();
    let write = db.instance_mappings().create(new_instance("part", "u"));
    let write_took = start.elapsed();
    let start = Instant::now();
    let read = db
        .instance_mappings()
        .get_by_instance_uuid(&im.instance_uuid);
    let read_took = start.elapsed();
    for (what, r, took) in [
        ("write", write.map(|_| ()), write_took),
        ("read", read.map(|_| ()), read_took),
    ] {
        match r {
            Err(Error::Connection { source, .. }) => {
                assert!(
                    matches!(*source, ConnectionFailure::NotPrimary(_)),
                    "{what}: {source:?}"
                );
                assert!(
                    source.to_string().contains("primary component"),
                    "{what}: {source}"
                );
            }
            other => panic!("{what} on a node outside the primary component: {other:?}"),
        }
        assert!(took <= CONNECT_TIMEOUT + MARGIN, "{what} took {took:?}");
        eprintln!("galera: partition: {what} refused in {took:?}");
    }
    drop(resume);
    wait_for("the cluster to re-form", || {
        status(&admin, "wsrep_ready") == "ON" && status(&admin, "wsrep_cluster_size") == "3"
    });
    // The same handle works again.
    create_and_read_back(&db, "part");
    assert_converged(urls);
}

#[test]
fn galera_cluster_survives_conflicts_node_loss_and_partition() {
    let Ok(spec) = std::env::var("MAPPING_TEST_GALERA") else {
        let _ = writeln!(
            std::io::stderr().lock(),
            "\n*** GALERA TESTS NOT RUN: start the cluster with scripts/galera.sh start and set \
             MAPPING_TEST_GALERA to what `scripts/galera.sh env` prints (scripts/test-all.sh does) ***\n"
        );
        assert!(
            std::env::var("CI").is_err(),
            "CI must run the Galera tests (MAPPING_TEST_GALERA)"
        );
        return;
    };
    assert!(
        cell_mappings::compiled_backends().contains(&BackendKind::Mysql),
        "the Galera tests need the `mysql` feature"
    );
    let (nodes, proxy) = spec
        .split_once(';')
        .expect("MAPPING_TEST_GALERA: <node1>,<node2>,<node3>;<haproxy>");
    let c = Cluster {
        nodes: nodes.split(',').map(str::to_owned).collect(),
        proxy: proxy.to_owned(),
    };
    assert_eq!(c.nodes.len(), 3, "MAPPING_TEST_GALERA names three nodes");

    multi_writer_conflicts(&c);

    // 2. Node loss with clients connected directly to each node: node 3 dies.
    let (urls, proxy_url) = fresh_database(&c, "loss");
    let dbs: Vec<Database> = urls.iter().map(|u| open(u, options())).collect();
    dbs[0].migrate().unwrap();
    node_loss("direct", &dbs, 3, &urls[..2], &urls);

    // ... and through HAProxy: the active node (1) dies.
    let via_proxy = vec![open(&proxy_url, options())];
    node_loss("haproxy", &via_proxy, 1, &urls[1..], &urls);

    partition(&urls);
}
