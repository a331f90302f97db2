//! The memcached tier against real memcached servers, on every backend:
//! hits shared by handles, invalidation by every kind of write, planted
//! values, a server killed and restarted mid-run, two servers with one
//! stopped, a server that never answers, and two OS processes sharing one
//! memcached (A writes while B looks up).
//!
//! Needs the shared instances of `scripts/memcached.sh start` (called by
//! `scripts/services.sh`; `MAPPING_TEST_MEMCACHED_SERVERS` overrides them)
//! and the memcached binary for the tests that kill their own instance.
//! Nothing is skipped: a missing memcached fails the tests.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use cell_mappings::{
    BackendKind, CacheOptions, CellMapping, CellMappingUpdate, Database, InstanceMapping,
    InstanceMappingUpdate, MemcachedOptions, MemcachedStats, Options,
};
use mapping_testkit::{backend_tests, TestDb};

// ---------------------------------------------------------------- helpers

/// The shared servers (scripts/memcached.sh), checked to answer.
fn shared_servers() -> Vec<String> {
    let servers: Vec<String> = std::env::var("MAPPING_TEST_MEMCACHED_SERVERS")
        .unwrap_or_else(|_| "127.0.0.1:11311,127.0.0.1:11312".into())
        .split(',')
        .map(str::to_owned)
        .collect();
    for s in &servers {
        if let Err(e) = Raw::connect(s).and_then(|mut r| r.command("version\r\n")) {
            panic!(
                "\n\n*** memcached IS NOT AVAILABLE at {s}: {e}\n*** Run scripts/memcached.sh start \
                 (scripts/services.sh does) or set MAPPING_TEST_MEMCACHED_SERVERS. Tests never skip it.\n"
            );
        }
    }
    servers
}

/// Memcached settings with a key prefix of this test's own.
fn mc(servers: Vec<String>) -> MemcachedOptions {
    MemcachedOptions {
        servers,
        key_prefix: format!("t{}:", uuid::Uuid::new_v4().simple()),
        socket_timeout: Duration::from_secs(2),
        connect_timeout: Duration::from_secs(2),
        ..MemcachedOptions::default()
    }
}

/// A handle with the memcached tier only.
fn with_mc(t: &TestDb, m: &MemcachedOptions) -> Database {
    t.reopen(Options::default().memcached(Some(m.clone())))
}

fn mstats(db: &Database) -> MemcachedStats {
    db.cache_stats()
        .and_then(|s| s.memcached)
        .expect("memcached tier is on")
}

fn lookup(
    db: &Database,
    uuid: &(impl cell_mappings::ToUuid + std::fmt::Display + ?Sized),
) -> Option<InstanceMapping> {
    match db.instance_mappings().get_by_instance_uuid(uuid) {
        Ok(m) => Some(m),
        Err(e) if e.is_not_found() => None,
        Err(e) => panic!("lookup of {uuid} failed: {e}"),
    }
}

/// A raw text-protocol connection, for planting values and reading stats.
struct Raw(BufReader<TcpStream>);

impl Raw {
    fn connect(addr: &str) -> std::io::Result<Self> {
        let s = TcpStream::connect(addr)?;
        s.set_read_timeout(Some(Duration::from_secs(5)))?;
        Ok(Self(BufReader::new(s)))
    }

    fn line(&mut self) -> std::io::Result<String> {
        let mut l = String::new();
        self.0.read_line(&mut l)?;
        Ok(l.trim_end().to_owned())
    }

    fn command(&mut self, cmd: &str) -> std::io::Result<String> {
        self.0.get_mut().write_all(cmd.as_bytes())?;
        self.line()
    }

    fn set(&mut self, key: &str, data: &[u8]) {
        let mut cmd = format!("set {key} 0 0 {}\r\n", data.len()).into_bytes();
        cmd.extend_from_slice(data);
        cmd.extend_from_slice(b"\r\n");
        self.0.get_mut().write_all(&cmd).unwrap();
        assert_eq!(self.line().unwrap(), "STORED");
    }

    fn get(&mut self, key: &str) -> Option<Vec<u8>> {
        let head = self.command(&format!("get {key}\r\n")).unwrap();
        if head == "END" {
            return None;
        }
        let len: usize = head.rsplit(' ').next().unwrap().parse().unwrap();
        let mut data = vec![0; len + 2];
        self.0.read_exact(&mut data).unwrap();
        data.truncate(len);
        assert_eq!(self.line().unwrap(), "END");
        Some(data)
    }

    fn stat(&mut self, name: &str) -> u64 {
        self.0.get_mut().write_all(b"stats\r\n").unwrap();
        let mut found = None;
        loop {
            let l = self.line().unwrap();
            if l == "END" {
                break;
            }
            if let Some(v) = l.strip_prefix(&format!("STAT {name} ")) {
                found = v.parse().ok();
            }
        }
        found.unwrap_or_else(|| panic!("no stat {name}"))
    }
}

/// A memcached of a test's own on a free port, to kill and restart.
struct OwnMemcached {
    port: u16,
    child: Option<Child>,
}

impl OwnMemcached {
    fn start() -> Self {
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        let mut m = Self { port, child: None };
        m.restart();
        m
    }

    fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    fn restart(&mut self) {
        let bin = std::env::var("MAPPING_TEST_MEMCACHED_BIN")
            .unwrap_or_else(|_| "/usr/bin/memcached".into());
        let mut cmd = Command::new(&bin);
        cmd.args([
            "-l",
            "127.0.0.1",
            "-p",
            &self.port.to_string(),
            "-U",
            "0",
            "-m",
            "16",
        ]);
        if unsafe_is_root() {
            cmd.args(["-u", "nobody"]);
        }
        let child = cmd.stdout(Stdio::null()).spawn().unwrap_or_else(|e| {
            panic!("cannot run {bin} (scripts/memcached.sh start installs it): {e}")
        });
        self.child = Some(child);
        // Readiness, not timing: wait until it accepts, for at most 10 s.
        let until = Instant::now() + Duration::from_secs(10);
        while Raw::connect(&self.addr())
            .and_then(|mut r| r.command("version\r\n"))
            .is_err()
        {
            assert!(
                Instant::now() < until,
                "own memcached on {} did not come up",
                self.port
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            c.kill().expect("kill memcached");
            c.wait().expect("reap memcached");
        }
    }
}

impl Drop for OwnMemcached {
    fn drop(&mut self) {
        self.kill();
    }
}

fn unsafe_is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("Uid:"))
                .map(|l| l.split_whitespace().nth(1) == Some("0"))
        })
        .unwrap_or(false)
}

/// What a lookup shows of a mapping: enough to tell any two writes apart.
fn state(m: Option<&InstanceMapping>) -> String {
    match m {
        None => "gone".into(),
        Some(m) => {
            let c = m.cell_mapping.as_ref();
            format!(
                "{}|{}|{}|{}",
                c.map_or("-".to_owned(), |c| c.uuid.to_string()),
                c.and_then(|c| c.name.as_deref()).unwrap_or("-"),
                m.queued_for_delete,
                m.project_id
            )
        }
    }
}

// ---------------------------------------------------------------- tests

backend_tests! {
    fn memcached_values_are_shared_between_handles(t) {
        let m = mc(shared_servers());
        let (a, b) = (with_mc(t, &m), with_mc(t, &m));
        let cell = t.cell();
        let im = t.instance(Some(&cell), "p", "u");
        assert_eq!(lookup(&a, &im.instance_uuid), Some(im.clone()));
        let s = mstats(&a);
        assert_eq!((s.hits, s.misses, s.fills), (0, 1, 1));
        // Another handle (as another process would) hits what `a` stored.
        assert_eq!(lookup(&b, &im.instance_uuid.as_str().to_uppercase()), Some(im.clone()));
        assert_eq!(mstats(&b).hits, 1);
        // With the first tier on too, a memcached hit fills it.
        let both = t.reopen(Options::default().cache(Some(CacheOptions::default())).memcached(Some(m.clone())));
        for _ in 0..2 {
            assert_eq!(lookup(&both, &im.instance_uuid), Some(im.clone()));
        }
        let s = both.cache_stats().unwrap();
        assert_eq!(s.memcached.unwrap().hits, 1);
        assert_eq!(s.first_tier.unwrap().hits, 1);
        // Unscheduled and missing mappings are never stored.
        let un = t.instance(None, "p", "u");
        let missing = mapping_testkit::uuid();
        for _ in 0..2 {
            assert!(lookup(&a, &un.instance_uuid).unwrap().cell_mapping.is_none());
            assert!(lookup(&a, &missing).is_none());
        }
        assert_eq!(mstats(&a).fills, 1);
    }

    fn every_write_invalidates_other_handles(t) {
        let m = mc(shared_servers());
        let (w, r) = (with_mc(t, &m), with_mc(t, &m));
        let (mut c1, c2) = (t.cell(), t.cell());
        let mut im = t.instance(Some(&c1), "p", "u");
        let u = im.instance_uuid.clone();
        // Looks up twice: both must show exactly what the database holds,
        // and the second must be a memcached hit. Returns whether the first
        // was a hit (it must not be after a write that concerns it).
        let check = |what: &str| -> bool {
            let truth = state(lookup(t, &u).as_ref());
            let h0 = mstats(&r).hits;
            assert_eq!(state(lookup(&r, &u).as_ref()), truth, "after {what}");
            let h1 = mstats(&r).hits;
            assert_eq!(state(lookup(&r, &u).as_ref()), truth, "after {what}, again");
            if truth != "gone" {
                assert_eq!(mstats(&r).hits, h1 + 1, "after {what}: second lookup hits");
            }
            h1 > h0
        };
        assert!(!check("start"));
        im = w.instance_mappings().save(&im, &InstanceMappingUpdate::new().queued_for_delete(true)).unwrap();
        assert!(!check("save"));
        im = w.instance_mappings().save(&im, &InstanceMappingUpdate::new().cell(Some(&c2))).unwrap();
        assert!(!check("move"));
        im = w.instance_mappings().save(&im, &InstanceMappingUpdate::new().cell(Some(&c1))).unwrap();
        assert!(!check("move back"));
        c1 = w.cells().save(&c1, &CellMappingUpdate::new().name(Some("renamed"))).unwrap();
        assert!(!check("cell save"));
        let spare = t.cell();
        w.cells().destroy(spare.uuid).unwrap();
        // Another cell's write leaves this mapping's value valid.
        assert!(check("another cell's destroy"));
        w.transaction::<_, cell_mappings::Error, _>(|tx| tx.instance_mappings().save(&im, &InstanceMappingUpdate::new().queued_for_delete(false)))
            .unwrap();
        assert!(!check("save in a transaction"));
        w.instance_mappings().destroy(&u).unwrap();
        assert!(!check("destroy"));
        let mut again = cell_mappings::NewInstanceMapping::new(u.clone(), "p2", "u");
        again.cell_mapping = Some(c2.clone());
        w.instance_mappings().create_bulk(vec![again]).unwrap();
        assert!(!check("create_bulk"));
        w.instance_mappings().destroy_bulk(&[u.as_str().to_uppercase()]).unwrap();
        assert!(!check("destroy_bulk"));
        let mut again = cell_mappings::NewInstanceMapping::new(u.clone(), "p3", "u");
        again.cell_mapping = Some(c1.clone());
        w.instance_mappings().create(again).unwrap();
        assert!(!check("create"));
        w.clear_cache();
        assert!(!check("clear_cache"));
        let s = mstats(&w);
        assert!(s.invalidations >= 8, "{s:?}");
        assert_eq!(s.errors, 0);
    }

    fn planted_values_are_misses(t) {
        let m = mc(shared_servers());
        let db = with_mc(t, &m);
        let cell = t.cell();
        let (a, b) = (t.instance(Some(&cell), "pa", "u"), t.instance(Some(&cell), "pb", "u"));
        let key = |im: &InstanceMapping| format!("{}cm1:im:{}", m.key_prefix, im.instance_uuid);
        let server_of = |k: &str| {
            // Whichever server holds it after a fill.
            m.servers.iter().find(|s| Raw::connect(s).unwrap().get(k).is_some()).cloned()
        };
        lookup(&db, &a.instance_uuid);
        lookup(&db, &b.instance_uuid);
        let (ka, kb) = (key(&a), key(&b));
        let (sa, sb) = (server_of(&ka).expect("a stored"), server_of(&kb).expect("b stored"));
        let va = Raw::connect(&sa).unwrap().get(&ka).unwrap();
        let plant = |what: &str, data: &[u8]| {
            Raw::connect(&sb).unwrap().set(&kb, data);
            let before = mstats(&db);
            assert_eq!(lookup(&db, &b.instance_uuid), Some(b.clone()), "{what}");
            let after = mstats(&db);
            assert_eq!(after.refused, before.refused + 1, "{what}");
            assert_eq!(after.errors, 0, "{what}");
            // The planted value was replaced by a good one.
            assert_eq!(lookup(&db, &b.instance_uuid), Some(b.clone()), "{what}");
            assert_eq!(mstats(&db).hits, after.hits + 1, "{what}");
        };
        plant("garbage", b"\x00\xffnot a mapping at all");
        plant("empty", b"");
        plant("a's value", &va);
        let mut old = va.clone();
        old[1] = 0; // format version 0
        plant("old version", &old);
        let mut wrong_b = Raw::connect(&sb).unwrap().get(&kb).unwrap();
        wrong_b[1] = 0;
        plant("old version of b", &wrong_b);
        // A garbage cells record: every value on that server is a miss
        // until the record is made anew, and answers stay right.
        let cells = format!("{}cm1:cells", m.key_prefix);
        Raw::connect(&sb).unwrap().set(&cells, b"junk");
        for _ in 0..3 {
            assert_eq!(lookup(&db, &b.instance_uuid), Some(b.clone()));
        }
        assert_eq!(mstats(&db).errors, 0);
    }

    fn memcached_killed_and_restarted_mid_run(t) {
        let mut own = OwnMemcached::start();
        let m = MemcachedOptions {
            dead_retry: Duration::ZERO,
            ..mc(vec![own.addr()])
        };
        let (w, r) = (with_mc(t, &m), with_mc(t, &m));
        let cells = [t.cell(), t.cell()];
        let mut ims: Vec<_> = (0..6).map(|i| t.instance(Some(&cells[i % 2]), "p", "u")).collect();
        let mut hits_at_restart = 0;
        for step in 0..60 {
            if step == 20 {
                own.kill();
            }
            if step == 40 {
                own.restart();
                hits_at_restart = mstats(&r).hits;
            }
            let i = step % ims.len();
            let target = &cells[(step / ims.len()) % 2];
            ims[i] = w.instance_mappings().save(&ims[i], &InstanceMappingUpdate::new().cell(Some(target))).unwrap();
            for im in &ims {
                // Never an error, always the committed state.
                let truth = state(lookup(t, &im.instance_uuid).as_ref());
                assert_eq!(state(lookup(&r, &im.instance_uuid).as_ref()), truth, "step {step}");
            }
        }
        let s = mstats(&r);
        assert!(s.errors > 0, "the kill was noticed: {s:?}");
        assert!(s.hits > hits_at_restart, "hits again after the restart: {s:?}");
    }

    fn two_servers_one_stopped_still_answer(t) {
        let (one, mut two) = (OwnMemcached::start(), OwnMemcached::start());
        let m = MemcachedOptions {
            dead_retry: Duration::from_secs(3600),
            ..mc(vec![one.addr(), two.addr()])
        };
        let db = with_mc(t, &m);
        let cell = t.cell();
        let ims: Vec<_> = (0..40).map(|_| t.instance(Some(&cell), "p", "u")).collect();
        for im in &ims {
            lookup(&db, &im.instance_uuid);
        }
        // Keys are spread over both.
        let items = |s: &OwnMemcached| Raw::connect(&s.addr()).unwrap().stat("curr_items");
        let (n1, n2) = (items(&one), items(&two));
        assert!(n1 > 3 && n2 > 3, "{n1} / {n2}");
        two.kill();
        let before = mstats(&db);
        for _ in 0..2 {
            for im in &ims {
                assert_eq!(lookup(&db, &im.instance_uuid).as_ref(), Some(im));
            }
        }
        let after = mstats(&db);
        // The first server's share still hits; the dead one failed once and
        // was then skipped.
        assert!(after.hits - before.hits >= 2 * (n1 - 1), "{after:?}");
        assert!(after.errors - before.errors <= 2, "{after:?}");
        assert!(after.dead_skips > before.dead_skips, "{after:?}");
    }

    fn a_server_that_never_answers_costs_a_timeout_not_an_error(t) {
        // Accepts connections and never replies.
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let hold = std::thread::spawn(move || {
            let mut held = Vec::new();
            for s in listener.incoming().take(4) {
                held.push(s);
            }
            held.len()
        });
        let m = MemcachedOptions {
            socket_timeout: Duration::from_millis(200),
            dead_retry: Duration::ZERO,
            ..mc(vec![addr.clone()])
        };
        let db = with_mc(t, &m);
        let cell = t.cell();
        let im = t.instance(Some(&cell), "p", "u");
        for _ in 0..4 {
            assert_eq!(lookup(&db, &im.instance_uuid), Some(im.clone()));
        }
        let s = mstats(&db);
        assert_eq!((s.hits, s.errors), (0, 4), "{s:?}");
        drop(db);
        assert_eq!(hold.join().unwrap(), 4);
    }
}

// ------------------------------------------------- two OS processes

const CHILD: &str = "MAPPING_TEST_MC_CHILD";

/// Process B: looks mappings up for A over stdin/stdout while a thread of
/// its own keeps looking up the same mappings (fills racing A's writes).
fn reader_process() {
    let url = std::env::var(CHILD).unwrap();
    let m = MemcachedOptions {
        servers: std::env::var("MAPPING_TEST_MC_SERVERS")
            .unwrap()
            .split(',')
            .map(str::to_owned)
            .collect(),
        key_prefix: std::env::var("MAPPING_TEST_MC_PREFIX").unwrap(),
        ..MemcachedOptions::default()
    };
    let db = Database::open_with(&url, Options::default().memcached(Some(m))).unwrap();
    let uuids: Vec<String> = std::env::var("MAPPING_TEST_MC_UUIDS")
        .unwrap()
        .split(',')
        .map(str::to_owned)
        .collect();
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let racer = {
        let (db, uuids, stop) = (db.clone(), uuids.clone(), stop.clone());
        std::thread::spawn(move || {
            let mut i = 0usize;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                lookup(&db, &uuids[i % uuids.len()]);
                i = i.wrapping_add(7);
            }
        })
    };
    let stdin = std::io::stdin();
    let mut out = std::io::stdout();
    for line in stdin.lock().lines() {
        let line = line.unwrap();
        if line == "quit" {
            break;
        }
        let answer: Vec<String> = line
            .split(',')
            .map(|u| state(lookup(&db, u).as_ref()))
            .collect();
        writeln!(out, "@@ {}", answer.join(",")).unwrap();
        out.flush().unwrap();
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    racer.join().unwrap();
    let s = mstats(&db);
    writeln!(out, "@@ stats {} {}", s.hits, s.errors).unwrap();
}

/// Process A: schedules, moves, renames cells, destroys and recreates
/// mappings; after each committed write asks B for the written mappings
/// and a few others, and requires B's answer to be exactly the database's.
/// A writes nothing while B answers, so B's lookups all follow A's commit:
/// any value B serves from memcached that predates it fails the test.
fn two_processes(backend: BackendKind, test: &str) {
    if std::env::var(CHILD).is_ok() {
        return reader_process();
    }
    let t = TestDb::new(backend);
    let m = mc(shared_servers());
    let a = with_mc(&t, &m);
    let mut cells: Vec<CellMapping> = (0..3).map(|_| t.cell()).collect();
    let ims: Vec<InstanceMapping> = (0..12)
        .map(|i| t.instance(Some(&cells[i % 3]), "p", "u"))
        .collect();
    let uuids: Vec<String> = ims.iter().map(|i| i.instance_uuid.to_string()).collect();
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args(["--exact", test, "--nocapture", "--test-threads=1"])
        .env(CHILD, t.url())
        .env("MAPPING_TEST_MC_SERVERS", m.servers.join(","))
        .env("MAPPING_TEST_MC_PREFIX", &m.key_prefix)
        .env("MAPPING_TEST_MC_UUIDS", uuids.join(","))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut to_b = child.stdin.take().unwrap();
    let mut from_b = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut ask = |asked: &[&str]| -> Vec<String> {
        writeln!(to_b, "{}", asked.join(",")).unwrap();
        loop {
            let l = from_b.next().expect("B answers").unwrap();
            // libtest may have printed "test <name> ... " before it.
            if let Some((_, a)) = l.split_once("@@ ") {
                return a.split(',').map(str::to_owned).collect();
            }
        }
    };
    let mut rng = uuid::Uuid::new_v4().as_u128() as u64 | 1;
    let mut next = |n: usize| {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        (rng % n as u64) as usize
    };
    let mut checked: HashMap<&str, usize> = HashMap::new();
    for step in 0..150 {
        let u = uuids[next(uuids.len())].as_str();
        let current = lookup(&t, u);
        let op = match (&current, next(6)) {
            (None, _) => {
                let mut n = cell_mappings::NewInstanceMapping::new(u, "p", "u");
                n.cell_mapping = Some(cells[next(3)].clone());
                if next(2) == 0 {
                    a.instance_mappings().create(n).unwrap();
                } else {
                    a.instance_mappings().create_bulk(vec![n]).unwrap();
                }
                "create"
            }
            (Some(im), 0 | 1) => {
                let c = &cells[next(3)];
                a.instance_mappings()
                    .save(im, &InstanceMappingUpdate::new().cell(Some(c)))
                    .unwrap();
                "move"
            }
            (Some(im), 2) => {
                let q = !im.queued_for_delete;
                a.instance_mappings()
                    .save(im, &InstanceMappingUpdate::new().queued_for_delete(q))
                    .unwrap();
                "queue"
            }
            (Some(_), 3) => {
                let i = next(3);
                let name = format!("cell-{step}");
                cells[i] = a
                    .cells()
                    .save(
                        &cells[i],
                        &CellMappingUpdate::new().name(Some(name.as_str())),
                    )
                    .unwrap();
                "rename cell"
            }
            (Some(_), 4) => {
                a.instance_mappings().destroy(u).unwrap();
                "destroy"
            }
            (Some(_), _) => {
                a.instance_mappings().destroy_bulk(&[u]).unwrap();
                "destroy_bulk"
            }
        };
        let other = uuids[next(uuids.len())].as_str();
        let asked = [u, other];
        let truth: Vec<String> = asked
            .iter()
            .map(|x| state(lookup(&t, x).as_ref()))
            .collect();
        assert_eq!(
            ask(&asked),
            truth,
            "step {step}: B is behind A's committed {op} of {u}"
        );
        *checked.entry(op).or_default() += 1;
    }
    writeln!(to_b, "quit").unwrap();
    let stats = loop {
        let l = from_b.next().expect("B's stats").unwrap();
        if let Some((_, s)) = l.split_once("@@ stats ") {
            break s.to_owned();
        }
    };
    assert!(child.wait().unwrap().success(), "process B failed");
    let (hits, errors) = stats.split_once(' ').unwrap();
    assert!(
        hits.parse::<u64>().unwrap() > 100,
        "B really read memcached: {stats}"
    );
    assert_eq!(errors, "0");
    for op in ["move", "queue", "rename cell", "create"] {
        assert!(
            checked.get(op).copied().unwrap_or(0) > 0,
            "{op} was exercised: {checked:?}"
        );
    }
}

#[test]
fn two_processes_share_memcached_sqlite() {
    two_processes(BackendKind::Sqlite, "two_processes_share_memcached_sqlite");
}

#[cfg(feature = "postgres")]
#[test]
fn two_processes_share_memcached_postgres() {
    two_processes(
        BackendKind::Postgres,
        "two_processes_share_memcached_postgres",
    );
}

#[cfg(feature = "mysql")]
#[test]
fn two_processes_share_memcached_mysql() {
    two_processes(BackendKind::Mysql, "two_processes_share_memcached_mysql");
}
