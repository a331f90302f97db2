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
