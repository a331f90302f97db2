//! Cell databases for the router tests: a fresh database per cell (SQLite
//! file, PostgreSQL or MariaDB database) holding a small `instances` table.

#![allow(dead_code)]

use diesel::connection::SimpleConnection;
use mapping_diesel::Database;
use mapping_model::{CellMapping, NewCellMapping, NewInstanceMapping};
use mapping_testkit::{BackendKind, TestDb};

diesel::table! {
    /// The test table of every cell database.
    instances (uuid) {
        uuid -> Text,
        hostname -> Text,
    }
}

/// How long a scatter-gather of the failure tests waits.
pub const TIMEOUT: std::time::Duration = std::time::Duration::from_secs(4);
/// What a loaded machine may add on top of a timeout.
pub const MARGIN: std::time::Duration = std::time::Duration::from_secs(3);

/// A cell database with its `instances` rows.
pub struct CellDb {
    /// The database (dropped with the test).
    pub db: TestDb,
    /// `(uuid, hostname)` of the rows inserted.
    pub rows: Vec<(String, String)>,
}

/// A fresh database on `backend` with an `instances` table holding one row
/// per host name.
pub fn cell_db(backend: BackendKind, hosts: &[&str]) -> CellDb {
    let db = TestDb::empty(backend);
    db.exec(
        "CREATE TABLE instances (uuid VARCHAR(36) NOT NULL PRIMARY KEY, \
         hostname VARCHAR(255) NOT NULL)",
    );
    let mut rows = Vec::new();
    for h in hosts {
        let u = mapping_testkit::uuid();
        db.exec(&format!(
            "INSERT INTO instances (uuid, hostname) VALUES ('{u}', '{h}')"
        ));
        rows.push((u, (*h).to_owned()));
    }
    CellDb { db, rows }
}

/// Registers a cell named `name` whose database is `url` in the API database.
pub fn register(api: &Database, name: &str, url: &str) -> CellMapping {
    api.cells()
        .create(NewCellMapping::new(mapping_testkit::uuid(), "rabbit://", url).name(name))
        .expect("create cell mapping")
}

/// Maps a new instance (uuid `instance`) to `cell`.
pub fn map_instance(api: &Database, instance: &str, cell: &CellMapping) {
    api.instance_mappings()
        .create(NewInstanceMapping::new(instance, "project", "user").cell(cell))
        .expect("create instance mapping");
}

/// Runs raw SQL on a connection.
pub fn batch(conn: &mut mapping_diesel::DbConnection, sql: &str) -> mapping_model::Result<()> {
    conn.batch_execute(sql).map_err(mapping_model::Error::from)
}

/// The backends compiled in.
pub fn backends() -> &'static [BackendKind] {
    mapping_testkit::compiled_backends()
}

/// Waits until the router counts `cell` as up again (its detached work has
/// returned and a probe passed), at most the default probe interval plus
/// [`MARGIN`]; panics with the cell's health otherwise.
pub fn wait_until_up(router: &mapping_router::Router, cell: uuid::Uuid) {
    let bound = mapping_router::RouterOptions::default().probe_interval + MARGIN;
    let start = std::time::Instant::now();
    loop {
        let health = router.cell_health();
        let h = health.iter().find(|h| h.cell == cell);
        if h.is_none_or(|h| h.is_up()) {
            return;
        }
        assert!(
            start.elapsed() < bound,
            "cell not back within {bound:?}: {h:?}"
        );
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
}

/// A TCP listener that accepts connections and never says a word, until dropped.
#[cfg(any(feature = "postgres", feature = "mysql"))]
pub struct SilentServer {
    port: u16,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

#[cfg(any(feature = "postgres", feature = "mysql"))]
impl SilentServer {
    /// Its port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Starts listening on a free loopback port.
    pub fn start() -> Self {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let flag = std::sync::Arc::clone(&stop);
        let thread = std::thread::spawn(move || {
            let mut held = Vec::new();
            for stream in listener.incoming() {
                if flag.load(std::sync::atomic::Ordering::Relaxed) {
                    break;
                }
                if let Ok(stream) = stream {
                    held.push(stream);
                }
            }
            // Dropping the streams closes them: blocked clients get EOF.
        });
        Self {
            port,
            stop,
            thread: Some(thread),
        }
    }
}

#[cfg(any(feature = "postgres", feature = "mysql"))]
impl Drop for SilentServer {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        // Wakes the blocking accept so the thread sees the flag.
        let _ = std::net::TcpStream::connect(("127.0.0.1", self.port));
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// A write lock on every row of a cell's `instances` table, held by an open
/// transaction on a connection of its own until released (or dropped).
pub struct RowLock {
    release: Option<std::sync::mpsc::Sender<()>>,
    holder: Option<std::thread::JoinHandle<mapping_model::Result<()>>>,
}

impl RowLock {
    /// Takes the lock; returns once it is held.
    pub fn hold(cell: &CellDb) -> Self {
        let locker = cell.db.reopen(mapping_diesel::Options::default());
        let (locked_tx, locked_rx) = std::sync::mpsc::channel();
        let (release_tx, release_rx) = std::sync::mpsc::channel::<()>();
        let holder = std::thread::spawn(move || {
            locker.with_connection(|conn| {
                batch(conn, "BEGIN")?;
                batch(conn, "UPDATE instances SET hostname = 'held'")?;
                locked_tx.send(()).unwrap_or(());
                let _ = release_rx.recv();
                batch(conn, "ROLLBACK")
            })
        });
        locked_rx
            .recv_timeout(std::time::Duration::from_secs(30))
            .expect("the lock was taken");
        Self {
            release: Some(release_tx),
            holder: Some(holder),
        }
    }

    /// Rolls the transaction back; returns once the lock is gone.
    pub fn release(mut self) {
        self.end();
    }

    fn end(&mut self) {
        drop(self.release.take());
        if let Some(h) = self.holder.take() {
            h.join().expect("lock holder").expect("rollback");
        }
    }
}

impl Drop for RowLock {
    fn drop(&mut self) {
        if !std::thread::panicking() {
            self.end();
        }
    }
}

/// A gate that closures wait on until the test opens it.
#[derive(Default)]
pub struct Gate {
    open: std::sync::Mutex<bool>,
    cv: std::sync::Condvar,
}

impl Gate {
    /// Blocks until [`Gate::open`].
    pub fn wait(&self) {
        let mut open = self.open.lock().unwrap();
        while !*open {
            open = self.cv.wait(open).unwrap();
        }
    }

    /// Lets every waiter through, now and later.
    pub fn open(&self) {
        *self.open.lock().unwrap() = true;
        self.cv.notify_all();
    }
}
