//! The memcached tier against real memcached servers, on every backend:
//! hits shared by handles, invalidation by every kind of write, planted
//! values, a server killed and restarted mid-run, two servers with one
//! stopped, a server that never answers, and two OS processes sharing one
//! memcached (A writes while B looks up). A bad day: a writer whose lookup
//! timed out, a server paused during writes, a relay cut between a writer
//! and its server (one server, or one of two during a cell change), replies
//! delayed or trickled, values over 1 MiB and planted lease markers; and
//! two OS processes through five faults, checking the staleness bound D.
//!
//! Needs the shared instances of `scripts/memcached.sh start` (called by
//! `scripts/services.sh`; `MAPPING_TEST_MEMCACHED_SERVERS` overrides them)
//! and the memcached binary for the tests that kill their own instance.
//! Nothing is skipped: a missing memcached fails the tests.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
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
        self.restart_with(&[]);
    }

    /// (Re)starts it with these extra memcached arguments.
    fn restart_with(&mut self, extra: &[&str]) {
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
        cmd.args(extra);
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

    /// Stops (`SIGSTOP`) or resumes (`SIGCONT`) the process: a pause.
    fn signal(&self, sig: &str) {
        let pid = self.child.as_ref().expect("running").id().to_string();
        let ok = Command::new("kill")
            .args([sig, &pid])
            .status()
            .expect("kill(1)");
        assert!(ok.success(), "kill {sig} {pid}");
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

/// What a relay does to the traffic between the library and memcached.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Fault {
    /// Passes everything through.
    Pass,
    /// Drops everything both ways (a cut that leaves connections open).
    Cut,
    /// Holds each reply back this long.
    Delay(Duration),
    /// Sends each reply one byte at a time, this long apart.
    Trickle(Duration),
}

/// A TCP relay of the test's own in front of a memcached, to play faults
/// between one handle and its server while others reach it directly.
struct Relay {
    addr: String,
    fault: Arc<Mutex<Fault>>,
    stop: Arc<AtomicBool>,
}

impl Relay {
    fn start(upstream: &str) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let fault = Arc::new(Mutex::new(Fault::Pass));
        let stop = Arc::new(AtomicBool::new(false));
        let (f, st, up) = (fault.clone(), stop.clone(), upstream.to_owned());
        std::thread::spawn(move || {
            while !st.load(Ordering::Relaxed) {
                match listener.accept() {
                    Ok((client, _)) => {
                        client.set_nonblocking(false).unwrap();
                        let (f, up) = (f.clone(), up.clone());
                        std::thread::spawn(move || Relay::pipe(client, &up, &f));
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(5)),
                }
            }
        });
        Self { addr, fault, stop }
    }

    fn set(&self, f: Fault) {
        *self.fault.lock().unwrap() = f;
    }

    fn pipe(client: TcpStream, upstream: &str, fault: &Arc<Mutex<Fault>>) {
        let Ok(server) = TcpStream::connect(upstream) else {
            return;
        };
        let now = |f: &Arc<Mutex<Fault>>| *f.lock().unwrap();
        let (mut from_client, mut to_server) =
            (client.try_clone().unwrap(), server.try_clone().unwrap());
        let f = fault.clone();
        let up = std::thread::spawn(move || {
            let mut buf = [0u8; 16384];
            while let Ok(n @ 1..) = from_client.read(&mut buf) {
                if now(&f) != Fault::Cut && to_server.write_all(&buf[..n]).is_err() {
                    break;
                }
            }
            let _ = to_server.shutdown(std::net::Shutdown::Both);
        });
        let (mut from_server, mut to_client) = (server, client);
        let mut buf = [0u8; 16384];
        'replies: while let Ok(n @ 1..) = from_server.read(&mut buf) {
            match now(fault) {
                Fault::Pass => {
                    if to_client.write_all(&buf[..n]).is_err() {
                        break;
                    }
                }
                Fault::Cut => {}
                Fault::Delay(d) => {
                    std::thread::sleep(d);
                    if to_client.write_all(&buf[..n]).is_err() {
                        break;
                    }
                }
                Fault::Trickle(d) => {
                    for b in &buf[..n] {
                        std::thread::sleep(d);
                        if to_client.write_all(std::slice::from_ref(b)).is_err() {
                            break 'replies;
                        }
                    }
                }
            }
        }
        let _ = to_client.shutdown(std::net::Shutdown::Both);
        let _ = up.join();
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// The documented staleness bound D for a server list of `servers`
/// entries with these options: the replay period (250 ms) plus twice the
/// invalidation timeout per server (docs/reliability.md).
fn bound_d(m: &MemcachedOptions) -> Duration {
    Duration::from_millis(250) + 2 * m.invalidation_timeout * m.servers.len() as u32
}

/// Looks `ims` up through `r` until `until`, comparing each answer with the
/// database; returns when the last stale answer was seen (`None`: never).
fn last_stale(
    t: &TestDb,
    r: &Database,
    ims: &[InstanceMapping],
    until: Instant,
) -> Option<Instant> {
    let truth: Vec<String> = ims
        .iter()
        .map(|im| state(lookup(t, &im.instance_uuid).as_ref()))
        .collect();
    let mut last = None;
    while Instant::now() < until {
        for (im, want) in ims.iter().zip(&truth) {
            if &state(lookup(r, &im.instance_uuid).as_ref()) != want {
                last = Some(Instant::now());
            }
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    last
}

/// How many of `ims` `r` answers differently from the database.
fn stale_count(t: &TestDb, r: &Database, ims: &[InstanceMapping]) -> usize {
    ims.iter()
        .filter(|im| {
            state(lookup(r, &im.instance_uuid).as_ref())
                != state(lookup(t, &im.instance_uuid).as_ref())
        })
        .count()
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

// ------------------------------------------------------ a bad day

backend_tests! {
    fn a_timed_out_lookup_does_not_make_a_writer_skip_its_invalidations(t) {
        let own = OwnMemcached::start();
        let m = MemcachedOptions {
            socket_timeout: Duration::from_millis(200),
            expiration_time: Duration::from_secs(300),
            ..mc(vec![own.addr()])
        };
        assert_eq!(m.dead_retry, Duration::from_secs(300));
        let (w, r) = (with_mc(t, &m), with_mc(t, &m));
        let (c1, c2) = (t.cell(), t.cell());
        let ims: Vec<_> = (0..10).map(|_| t.instance(Some(&c1), "p", "u")).collect();
        for im in &ims {
            lookup(&r, &im.instance_uuid);
        }
        let h = mstats(&r).hits;
        assert_eq!(stale_count(t, &r, &ims), 0);
        assert_eq!(mstats(&r).hits, h + 10, "R serves all ten from memcached");
        // One lookup of the writer times out while memcached is paused:
        // the writer marks the server dead.
        own.signal("-STOP");
        let other = t.instance(Some(&c1), "p", "u");
        let e0 = mstats(&w).errors;
        assert_eq!(lookup(&w, &other.instance_uuid), Some(other.clone()));
        own.signal("-CONT");
        assert_eq!(mstats(&w).errors, e0 + 1, "the writer's lookup timed out");
        // memcached is back: every save's delete must reach it.
        for im in &ims {
            w.instance_mappings().save(im, &InstanceMappingUpdate::new().cell(Some(&c2))).unwrap();
        }
        assert_eq!(stale_count(t, &r, &ims), 0, "R serves a mapping from before W's save");
        let s = mstats(&w);
        assert_eq!(s.invalidations_pending, 0, "{s:?}");
        assert!(s.invalidations >= 10, "{s:?}");
    }

    fn writes_during_a_pause_are_seen_within_the_bound(t) {
        let own = OwnMemcached::start();
        let m = MemcachedOptions {
            socket_timeout: Duration::from_millis(200),
            expiration_time: Duration::from_secs(300),
            ..mc(vec![own.addr()])
        };
        let (w, r) = (with_mc(t, &m), with_mc(t, &m));
        let (c1, c2) = (t.cell(), t.cell());
        let ims: Vec<_> = (0..5).map(|_| t.instance(Some(&c1), "p", "u")).collect();
        for im in &ims {
            lookup(&r, &im.instance_uuid);
        }
        own.signal("-STOP");
        let paused = Instant::now();
        for im in &ims {
            let t0 = Instant::now();
            w.instance_mappings().save(im, &InstanceMappingUpdate::new().cell(Some(&c2))).unwrap();
            // The delete's own deadline, plus the database's share.
            assert!(t0.elapsed() < m.invalidation_timeout + Duration::from_millis(400), "save took {:?}", t0.elapsed());
        }
        std::thread::sleep(Duration::from_millis(500).saturating_sub(paused.elapsed()));
        own.signal("-CONT");
        let resumed = Instant::now();
        let d = bound_d(&m);
        if let Some(last) = last_stale(t, &r, &ims, resumed + d + Duration::from_millis(700)) {
            assert!(last - resumed <= d, "stale {:?} after memcached came back (D = {d:?})", last - resumed);
        }
        let s = mstats(&w);
        assert_eq!(s.invalidations_pending, 0, "{s:?}");
    }

    fn invalidations_lost_to_a_cut_are_replayed_within_the_bound(t) {
        let server = shared_servers().remove(0);
        let relay = Relay::start(&server);
        let base = MemcachedOptions {
            socket_timeout: Duration::from_millis(300),
            expiration_time: Duration::from_secs(300),
            ..mc(vec![server])
        };
        // The writer reaches memcached through the relay, the reader directly.
        let wm = MemcachedOptions { servers: vec![relay.addr.clone()], ..base.clone() };
        let (w, r) = (with_mc(t, &wm), with_mc(t, &base));
        let (c1, c2) = (t.cell(), t.cell());
        let ims: Vec<_> = (0..10).map(|_| t.instance(Some(&c1), "p", "u")).collect();
        for im in &ims {
            lookup(&r, &im.instance_uuid);
        }
        relay.set(Fault::Cut);
        for im in &ims {
            let t0 = Instant::now();
            w.instance_mappings().save(im, &InstanceMappingUpdate::new().cell(Some(&c2))).unwrap();
            assert!(t0.elapsed() < wm.invalidation_timeout + Duration::from_millis(400), "save took {:?}", t0.elapsed());
        }
        let s = mstats(&w);
        assert_eq!(s.invalidations_pending, 10, "every delete remembered: {s:?}");
        // The cut is real: R, which still reaches memcached, is behind.
        assert_eq!(stale_count(t, &r, &ims), 10);
        relay.set(Fault::Pass);
        let healed = Instant::now();
        // W makes no call any more: the replay happens on its own.
        let d = bound_d(&wm);
        let last = last_stale(t, &r, &ims, healed + d + Duration::from_millis(700));
        let last = last.expect("stale answers right after the cut healed");
        assert!(last - healed <= d, "stale {:?} after the cut healed (D = {d:?})", last - healed);
        let s = mstats(&w);
        assert_eq!((s.invalidations_pending, s.invalidations_replayed), (0, 10), "{s:?}");
        // The writer's own lookups see its writes.
        for im in &ims {
            assert_eq!(lookup(&w, &im.instance_uuid).unwrap().cell_mapping.unwrap().uuid, c2.uuid);
        }
    }

    fn a_cell_change_on_a_cut_server_reaches_its_share_within_the_bound(t) {
        let servers = shared_servers();
        assert!(servers.len() >= 2, "two memcached servers: {servers:?}");
        let relay = Relay::start(&servers[0]);
        let base = MemcachedOptions {
            socket_timeout: Duration::from_millis(300),
            expiration_time: Duration::from_secs(300),
            ..mc(servers[..2].to_vec())
        };
        let wm = MemcachedOptions { servers: vec![relay.addr.clone(), base.servers[1].clone()], ..base.clone() };
        let (w, r) = (with_mc(t, &wm), with_mc(t, &base));
        let cell = t.cell();
        let ims: Vec<_> = (0..40).map(|_| t.instance(Some(&cell), "p", "u")).collect();
        for im in &ims {
            lookup(&r, &im.instance_uuid);
        }
        let h = mstats(&r).hits;
        assert_eq!(stale_count(t, &r, &ims), 0);
        assert_eq!(mstats(&r).hits, h + 40);
        relay.set(Fault::Cut);
        w.cells().save(&cell, &CellMappingUpdate::new().name(Some("renamed"))).unwrap();
        // The reachable server's share is right at once; the cut one's is
        // behind (the cut is real).
        let behind = stale_count(t, &r, &ims);
        assert!(behind > 3 && behind < 37, "{behind} of 40 behind");
        relay.set(Fault::Pass);
        let healed = Instant::now();
        let d = bound_d(&wm);
        if let Some(last) = last_stale(t, &r, &ims, healed + d + Duration::from_millis(700)) {
            assert!(last - healed <= d, "stale {:?} after the cut healed (D = {d:?})", last - healed);
        }
        assert_eq!(mstats(&w).invalidations_pending, 0);
    }

    fn one_deadline_per_call_against_slow_and_trickling_servers(t) {
        let server = shared_servers().remove(0);
        let relay = Relay::start(&server);
        let m = MemcachedOptions {
            socket_timeout: Duration::from_millis(300),
            invalidation_timeout: Duration::from_millis(100),
            dead_retry: Duration::ZERO,
            ..mc(vec![relay.addr.clone()])
        };
        let db = with_mc(t, &m);
        let cell = t.cell();
        // The database's share of a call, and the test's own slack.
        let slack = Duration::from_millis(300);
        for (fault, n) in [
            (Fault::Delay(Duration::from_millis(250)), 6),
            (Fault::Trickle(Duration::from_millis(100)), 3),
        ] {
            relay.set(fault);
            let ims: Vec<_> = (0..n).map(|_| t.instance(Some(&cell), "p", "u")).collect();
            for im in &ims {
                for _ in 0..2 {
                    let t0 = Instant::now();
                    assert_eq!(lookup(&db, &im.instance_uuid).as_ref(), Some(im), "{fault:?}");
                    let took = t0.elapsed();
                    assert!(took < m.socket_timeout + slack, "{fault:?}: lookup took {took:?}");
                }
                let t0 = Instant::now();
                db.instance_mappings().save(im, &InstanceMappingUpdate::new().queued_for_delete(true)).unwrap();
                let took = t0.elapsed();
                assert!(took < m.invalidation_timeout + slack, "{fault:?}: save took {took:?}");
            }
        }
        assert!(mstats(&db).errors > 0);
    }

    fn oversized_values_and_planted_markers_are_replaced(t) {
        let mut own = OwnMemcached::start();
        // Items up to 4 MiB, so that a value over 1 MiB can be planted.
        own.kill();
        own.restart_with(&["-I", "4m"]);
        let m = mc(vec![own.addr()]);
        let db = with_mc(t, &m);
        let cell = t.cell();
        let im = t.instance(Some(&cell), "p", "u");
        let key = format!("{}cm1:im:{}", m.key_prefix, im.instance_uuid);
        let cells = format!("{}cm1:cells", m.key_prefix);
        lookup(&db, &im.instance_uuid);
        let big = vec![b'x'; 1024 * 1024 + 4096];
        for (what, k, data) in [
            ("a value over 1 MiB", &key, &big[..]),
            ("a lease marker without expiry", &key, &b"cm1-pending"[..]),
            ("a cells record over 1 MiB", &cells, &big[..]),
        ] {
            Raw::connect(&own.addr()).unwrap().set(k, data);
            let before = mstats(&db);
            let mut hit = false;
            for _ in 0..3 {
                assert_eq!(lookup(&db, &im.instance_uuid).as_ref(), Some(&im), "{what}");
                hit = mstats(&db).hits > before.hits;
                if hit {
                    break;
                }
            }
            let after = mstats(&db);
            assert!(hit, "{what}: replaced by a good value within three lookups: {after:?}");
            assert_eq!(after.errors, before.errors, "{what}");
        }
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
    // The fault runs give B short timeouts and a long expiry.
    let ms = |var: &str| {
        std::env::var(var)
            .ok()
            .map(|v| Duration::from_millis(v.parse().unwrap()))
    };
    let m = MemcachedOptions {
        socket_timeout: ms("MAPPING_TEST_MC_SOCKET_MS").unwrap_or(m.socket_timeout),
        dead_retry: ms("MAPPING_TEST_MC_DEAD_MS").unwrap_or(m.dead_retry),
        expiration_time: ms("MAPPING_TEST_MC_EXPIRY_MS").unwrap_or(m.expiration_time),
        ..m
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

// ------------------------------------- two OS processes through faults

/// A fault played on a schedule while A writes and B reads.
#[derive(Debug, Clone, Copy)]
enum Scene {
    /// memcached (server 0) paused 500 ms at a time (`SIGSTOP`).
    Pause,
    /// A cut from server 0 for 600 ms at a time; B still reaches it.
    CutWriter,
    /// memcached (server 0) killed and restarted.
    Restart,
    /// Every reply of server 0 delayed 250 ms, for both processes.
    Delay,
    /// Every reply of server 0 trickled a byte every 100 ms, for both.
    Trickle,
}

/// Starts or ends a fault episode.
type Action = Box<dyn Fn()>;

/// Stops and joins the thread playing a fault, also when the test fails
/// (so that the memcached it holds is killed, not left behind).
struct Player(Arc<AtomicBool>, Option<std::thread::JoinHandle<()>>);

impl Drop for Player {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Relaxed);
        if let Some(h) = self.1.take() {
            let _ = h.join();
        }
    }
}

/// When each fault episode ended (for faults that end): a write made
/// during one counts its staleness from the episode's end.
type Episodes = Arc<Mutex<Vec<(Instant, Option<Instant>)>>>;

/// Process A of the fault runs: two memcached servers of the test's own,
/// server 0 behind a relay for each process; for each scene, writes
/// (moves, cell renames, destroys and creates) and after each asks B
/// again and again until B's answer is the database's. The oldest stale
/// answer (from the write, or from the end of the fault episode the write
/// fell in) must be within the bound D; every write and every answer of B
/// within a bounded time.
fn two_processes_through_faults(backend: BackendKind, test: &str) {
    if std::env::var(CHILD).is_ok() {
        return reader_process();
    }
    let t = TestDb::new(backend);
    let own = Arc::new(Mutex::new(OwnMemcached::start()));
    let other = OwnMemcached::start();
    let server0 = own.lock().unwrap().addr();
    let (relay_a, relay_b) = (Relay::start(&server0), Relay::start(&server0));
    let m = MemcachedOptions {
        socket_timeout: Duration::from_millis(300),
        expiration_time: Duration::from_secs(300),
        ..mc(vec![relay_a.addr.clone(), other.addr()])
    };
    let a = with_mc(&t, &m);
    let d = bound_d(&m);
    let mut cells: Vec<CellMapping> = (0..3).map(|_| t.cell()).collect();
    let ims: Vec<InstanceMapping> = (0..12)
        .map(|i| t.instance(Some(&cells[i % 3]), "p", "u"))
        .collect();
    let uuids: Vec<String> = ims.iter().map(|i| i.instance_uuid.to_string()).collect();
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args(["--exact", test, "--nocapture", "--test-threads=1"])
        .env(CHILD, t.url())
        .env(
            "MAPPING_TEST_MC_SERVERS",
            format!("{},{}", relay_b.addr, other.addr()),
        )
        .env("MAPPING_TEST_MC_PREFIX", &m.key_prefix)
        .env("MAPPING_TEST_MC_UUIDS", uuids.join(","))
        .env("MAPPING_TEST_MC_SOCKET_MS", "300")
        .env("MAPPING_TEST_MC_DEAD_MS", "1000")
        .env("MAPPING_TEST_MC_EXPIRY_MS", "300000")
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
    let mut report = Vec::new();
    let scenes = [
        Scene::Pause,
        Scene::CutWriter,
        Scene::Restart,
        Scene::Delay,
        Scene::Trickle,
    ];
    // MAPPING_TEST_MC_SCENE=CutWriter (say) plays one scene only.
    let only = std::env::var("MAPPING_TEST_MC_SCENE").ok();
    for scene in scenes {
        if only.as_ref().is_some_and(|o| *o != format!("{scene:?}")) {
            continue;
        }
        let episodes: Episodes = Arc::default();
        let stop = Arc::new(AtomicBool::new(false));
        match scene {
            Scene::Delay => {
                relay_a.set(Fault::Delay(Duration::from_millis(250)));
                relay_b.set(Fault::Delay(Duration::from_millis(250)));
            }
            Scene::Trickle => {
                relay_a.set(Fault::Trickle(Duration::from_millis(100)));
                relay_b.set(Fault::Trickle(Duration::from_millis(100)));
            }
            _ => {}
        }
        let player = Player(
            stop.clone(),
            Some({
                let (own, episodes, stop) = (own.clone(), episodes.clone(), stop.clone());
                let relay_fault = relay_a.fault.clone();
                std::thread::spawn(move || {
                    let wait = |d: Duration| {
                        let until = Instant::now() + d;
                        while Instant::now() < until && !stop.load(Ordering::Relaxed) {
                            std::thread::sleep(Duration::from_millis(5));
                        }
                    };
                    let (on, off): (Action, Action) = match scene {
                        Scene::Pause => {
                            let (o1, o2) = (own.clone(), own.clone());
                            (
                                Box::new(move || o1.lock().unwrap().signal("-STOP")),
                                Box::new(move || o2.lock().unwrap().signal("-CONT")),
                            )
                        }
                        Scene::CutWriter => {
                            let (f1, f2) = (relay_fault.clone(), relay_fault.clone());
                            (
                                Box::new(move || *f1.lock().unwrap() = Fault::Cut),
                                Box::new(move || *f2.lock().unwrap() = Fault::Pass),
                            )
                        }
                        Scene::Restart => {
                            let (o1, o2) = (own.clone(), own.clone());
                            (
                                Box::new(move || o1.lock().unwrap().kill()),
                                Box::new(move || o2.lock().unwrap().restart()),
                            )
                        }
                        Scene::Delay | Scene::Trickle => return,
                    };
                    let length = match scene {
                        Scene::Pause => Duration::from_millis(500),
                        Scene::CutWriter => Duration::from_millis(600),
                        _ => Duration::from_millis(200),
                    };
                    // Episodes further apart than D: the bound counts from
                    // the moment the server answers again and keeps answering.
                    while !stop.load(Ordering::Relaxed) {
                        wait(Duration::from_millis(1600));
                        on();
                        let i = {
                            let mut e = episodes.lock().unwrap();
                            e.push((Instant::now(), None));
                            e.len() - 1
                        };
                        wait(length);
                        off();
                        episodes.lock().unwrap()[i].1 = Some(Instant::now());
                    }
                })
            }),
        );
        let (mut oldest, mut slowest_write) = (Duration::ZERO, Duration::ZERO);
        // At least 5 s of each scene (two or three fault episodes), a write
        // every 40 ms or so.
        // The cut scene goes on (up to 20 s more) until B was behind once,
        // so that a slow machine cannot make it prove nothing.
        let scene_end = Instant::now() + Duration::from_secs(5);
        let mut step = 0;
        let mut stale_steps = 0;
        let cut = matches!(scene, Scene::CutWriter);
        while step < 20
            || Instant::now() < scene_end
            || (cut && stale_steps == 0 && Instant::now() < scene_end + Duration::from_secs(20))
        {
            step += 1;
            std::thread::sleep(Duration::from_millis(40));
            let u = uuids[next(uuids.len())].as_str();
            let current = lookup(&t, u);
            let w0 = Instant::now();
            let op = match (&current, next(4)) {
                (None, _) => {
                    let mut n = cell_mappings::NewInstanceMapping::new(u, "p", "u");
                    n.cell_mapping = Some(cells[next(3)].clone());
                    a.instance_mappings().create(n).unwrap();
                    "create"
                }
                (Some(im), 0 | 1) => {
                    let c = &cells[next(3)];
                    a.instance_mappings()
                        .save(im, &InstanceMappingUpdate::new().cell(Some(c)))
                        .unwrap();
                    "move"
                }
                (Some(_), 2) => {
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
                (Some(_), _) => {
                    a.instance_mappings().destroy(u).unwrap();
                    "destroy"
                }
            };
            let written = Instant::now();
            slowest_write = slowest_write.max(written - w0);
            let other = uuids[next(uuids.len())].as_str();
            let asked = [u, other];
            let truth: Vec<String> = asked
                .iter()
                .map(|x| state(lookup(&t, x).as_ref()))
                .collect();
            let mut last_stale = None;
            let mut seen = None;
            loop {
                let answer = ask(&asked);
                let at = Instant::now();
                if answer == truth {
                    break;
                }
                last_stale = Some(at);
                seen = Some(answer);
                assert!(
                    at - written < Duration::from_secs(10),
                    "{scene:?} step {step}: B behind A's {op} of {u} for 10 s"
                );
                std::thread::sleep(Duration::from_millis(10));
            }
            if let Some(last) = last_stale {
                // From the write, or from the end of the episode it fell in.
                let episodes = episodes.lock().unwrap().clone();
                let from = episodes
                    .iter()
                    .find(|(s, e)| *s <= written && e.is_none_or(|e| written < e))
                    .map(|(_, e)| e.unwrap_or(last))
                    .unwrap_or(written)
                    .max(written);
                let age = last.saturating_duration_since(from);
                oldest = oldest.max(age);
                stale_steps += 1;
                assert!(
                    age <= d,
                    "{scene:?} step {step}: B served a value older than A's {op} of {u} {age:?} after it (D = {d:?}): {seen:?} for {truth:?}; A: {:?}",
                    mstats(&a)
                );
            }
        }
        drop(player);
        relay_a.set(Fault::Pass);
        relay_b.set(Fault::Pass);
        // The memcached share of a write is bounded by the invalidation
        // timeout of each server (2 × 250 ms here); the rest is the
        // database's, which on a loaded 2-core CI machine (other tests, the
        // Galera nodes) has reached 1.5 s. A write that waited for a slow or
        // trickling server instead would take many seconds.
        assert!(
            slowest_write < Duration::from_secs(3),
            "{scene:?}: a write took {slowest_write:?}"
        );
        if matches!(scene, Scene::CutWriter) && stale_steps == 0 {
            // The cut is meant to leave B (which reaches server 0) behind for
            // a while; on a loaded machine B's answers can come too late to
            // see it within 25 s. The bound was then not put to the test by
            // this scene: said loudly (the other scenes and the two-handle
            // tests still check it), not failed, since nothing served a
            // stale value.
            eprintln!(
                "\n*** two_processes_through_faults: the CutWriter scene never saw B behind \
                 ({step} writes): the bound was not exercised by this scene in this run ***\n"
            );
        }
        report.push(format!(
            "{scene:?}: {step} writes, {stale_steps} answered stale at first, oldest stale answer \
             {oldest:?} after its write or the fault's end, slowest write {slowest_write:?}"
        ));
    }
    writeln!(to_b, "quit").unwrap();
    assert!(child.wait().unwrap().success(), "process B failed");
    eprintln!(
        "two processes through faults ({backend:?}, D = {d:?}):\n  {}",
        report.join("\n  ")
    );
}

#[test]
fn two_processes_through_faults_sqlite() {
    two_processes_through_faults(BackendKind::Sqlite, "two_processes_through_faults_sqlite");
}

#[cfg(feature = "postgres")]
#[test]
fn two_processes_through_faults_postgres() {
    two_processes_through_faults(
        BackendKind::Postgres,
        "two_processes_through_faults_postgres",
    );
}

#[cfg(feature = "mysql")]
#[test]
fn two_processes_through_faults_mysql() {
    two_processes_through_faults(BackendKind::Mysql, "two_processes_through_faults_mysql");
}
