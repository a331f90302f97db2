//! Cells that fail or hang: each gives its own result within the timeout
//! plus a margin, while the other cells (one per backend) still answer.
//!
//! The API database is a SQLite file; the failing cell is on the backend the
//! test is named after, the healthy cells on every backend compiled in.

mod common;

use std::collections::BTreeMap;
use std::net::TcpListener;
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{cell_db, instances, register, CellDb, Gate, MARGIN, TIMEOUT};
use diesel::prelude::*;
use mapping_diesel::DbConnection;
use mapping_model::CellMapping;
use mapping_router::{CellResult, CellResults, Router, RouterError, RouterOptions};
use mapping_testkit::{BackendKind, TestDb};
use uuid::Uuid;

/// `#[test]`s named per backend, each running `$body` with that backend
/// (the server backends only when their feature is on).
macro_rules! per_backend {
    ($body:ident: $(sqlite $s:ident,)? $(postgres $p:ident,)? $(mysql $m:ident)?) => {
        $(
            #[test]
            fn $s() {
                $body(BackendKind::Sqlite);
            }
        )?
        $(
            #[cfg(feature = "postgres")]
            #[test]
            fn $p() {
                $body(BackendKind::Postgres);
            }
        )?
        $(
            #[cfg(feature = "mysql")]
            #[test]
            fn $m() {
                $body(BackendKind::Mysql);
            }
        )?
    };
}

fn count(conn: &mut DbConnection) -> QueryResult<i64> {
    instances::table.count().get_result(conn)
}

/// The API database with one healthy cell per backend (one row each).
struct World {
    api: TestDb,
    healthy: Vec<(CellMapping, CellDb)>,
}

fn world() -> World {
    let api = TestDb::new(BackendKind::Sqlite);
    let healthy = common::backends()
        .iter()
        .map(|&b| {
            let db = cell_db(b, &["healthy"]);
            (register(&api, &format!("healthy-{b:?}"), db.db.url()), db)
        })
        .collect();
    World { api, healthy }
}

impl World {
    fn cells_with(&self, extra: &CellMapping) -> Vec<CellMapping> {
        let mut v: Vec<CellMapping> = self.healthy.iter().map(|(c, _)| c.clone()).collect();
        v.push(extra.clone());
        v
    }

    fn assert_healthy_answered<T: std::fmt::Debug>(&self, results: &CellResults<T>) {
        for (cell, _) in &self.healthy {
            let r = &results[&cell.uuid];
            assert!(r.is_ok(), "healthy cell {} gave {r:?}", cell.identity());
        }
    }
}

fn uuid_of(cell: &CellMapping) -> Uuid {
    cell.uuid
}

/// Runs a scatter-gather counting rows, checks it returned within the
/// timeout plus the margin, and gives the results.
fn gather(router: &Router, cells: &[CellMapping]) -> CellResults<i64> {
    let start = Instant::now();
    let results = router.scatter_gather(cells, TIMEOUT, |_, conn| count(conn));
    let took = start.elapsed();
    assert!(took < TIMEOUT + MARGIN, "scatter-gather took {took:?}");
    assert_eq!(results.len(), cells.len());
    results
}

/// A URL of `backend` that nothing answers: a closed loopback port, or a
/// SQLite file in a directory that does not exist.
fn refused_url(backend: BackendKind, password: &str) -> String {
    let port = {
        // Bind then drop: the port is closed (and unlikely to be reused at once).
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    match backend {
        BackendKind::Sqlite => format!(
            "sqlite:////nonexistent-{}/cell.sqlite",
            Uuid::new_v4().simple()
        ),
        BackendKind::Postgres => format!("postgresql://nova:{password}@127.0.0.1:{port}/nova_cell"),
        BackendKind::Mysql => format!("mysql+pymysql://nova:{password}@127.0.0.1:{port}/nova_cell"),
    }
}

fn refused(backend: BackendKind) {
    let w = world();
    let secret = "s3cret-Pw_only-here";
    let down = register(&w.api, "down", &refused_url(backend, secret));
    // The connect timeout is shorter than the scatter-gather timeout: the
    // refused cell fails with its own error rather than timing out.
    let router = Router::new(
        w.api.db.clone(),
        RouterOptions::default().connect_timeout(Duration::from_secs(1)),
    )
    .unwrap();
    let results = gather(&router, &w.cells_with(&down));
    w.assert_healthy_answered(&results);
    let err = results[&uuid_of(&down)]
        .error()
        .unwrap_or_else(|| panic!("refused cell: {results:?}"));
    assert!(matches!(err, RouterError::Connect { .. }), "{err:?}");
    assert_eq!(err.cell(), Some(uuid_of(&down)));
    let text = format!("{err} {err:?} {:?}", std::error::Error::source(err));
    assert!(!text.contains(secret), "password leaked: {text}");
    // The cell is now unavailable: target_cell is answered at once, with
    // the connection error as the reason, and no password.
    let err = router.target_cell(&down, count).unwrap_err();
    match &err {
        RouterError::Unavailable { last_error, .. } => {
            let last = last_error.as_deref().unwrap_or_default();
            assert!(last.contains("cannot reach"), "{err:?}");
        }
        other => panic!("{other:?}"),
    }
    assert!(!format!("{err:?} {err}").contains(secret));
    let health = router.cell_health();
    let h = health.iter().find(|h| h.cell == down.uuid).unwrap();
    assert!(!h.is_up(), "{h:?}");
    assert!(!format!("{health:?}").contains(secret));
    // So is the next scatter-gather, and the healthy cells still answer.
    let again = gather(&router, &w.cells_with(&down));
    w.assert_healthy_answered(&again);
    assert!(again[&down.uuid].is_unavailable(), "{again:?}");
}

per_backend!(refused: sqlite refused_sqlite, postgres refused_postgres, mysql refused_mysql);

#[cfg(any(feature = "postgres", feature = "mysql"))]
fn silent(backend: BackendKind) {
    let w = world();
    let server = common::SilentServer::start();
    let url = match backend {
        BackendKind::Postgres => {
            format!("postgres://nova:pw@127.0.0.1:{}/nova_cell", server.port())
        }
        _ => format!("mysql://nova:pw@127.0.0.1:{}/nova_cell", server.port()),
    };
    let mute = register(&w.api, "mute", &url);
    // The connect timeout (default 10 s) outlasts the scatter-gather.
    let router = Router::new(w.api.db.clone(), RouterOptions::default()).unwrap();
    let results = gather(&router, &w.cells_with(&mute));
    w.assert_healthy_answered(&results);
    assert!(
        results[&uuid_of(&mute)].did_not_respond(),
        "mute cell: {results:?}"
    );
    // The worker waiting on the mute cell was replaced: the next call is
    // answered by the healthy cells as fast as ever.
    let again = gather(&router, &w.cells_with(&mute));
    w.assert_healthy_answered(&again);
    drop(server);
}

per_backend!(silent: postgres silent_server_postgres, mysql silent_server_mysql);

/// The closure of the lock tests: a write that waits for the test's lock.
fn touch(conn: &mut DbConnection) -> QueryResult<usize> {
    diesel::update(instances::table)
        .set(instances::hostname.eq("touched"))
        .execute(conn)
}

fn locked(backend: BackendKind) {
    let w = world();
    let cell = cell_db(backend, &["locked"]);
    let mapping = register(&w.api, "locked", cell.db.url());
    let router = Router::new(w.api.db.clone(), RouterOptions::default()).unwrap();

    let lock = common::RowLock::hold(&cell);

    let cells = w.cells_with(&mapping);
    let start = Instant::now();
    let results = router.scatter_gather(&cells, TIMEOUT, |_, conn| touch(conn));
    let took = start.elapsed();
    assert!(took < TIMEOUT + MARGIN, "scatter-gather took {took:?}");
    w.assert_healthy_answered(&results);
    assert!(
        results[&uuid_of(&mapping)].did_not_respond(),
        "locked cell: {results:?}"
    );

    lock.release();
    // Once the lock is gone the cell answers again: its blocked closure
    // returns, a probe passes, and the cell takes work again.
    common::wait_until_up(&router, mapping.uuid);
    let after =
        router.scatter_gather_single_cell(&mapping, Duration::from_secs(30), |_, c| touch(c));
    assert_eq!(after.ok(), Some(1));
}

mapping_testkit::backend_tests! {
    fn a_query_blocked_on_a_lock_does_not_respond(t) {
        locked(t.backend());
    }
}

#[test]
fn more_cells_than_workers_are_all_answered() {
    let api = TestDb::new(BackendKind::Sqlite);
    let dbs: Vec<CellDb> = (0..10)
        .map(|i| cell_db(common::backends()[i % common::backends().len()], &["x"]))
        .collect();
    let cells: Vec<CellMapping> = dbs
        .iter()
        .enumerate()
        .map(|(i, d)| register(&api, &format!("c{i}"), d.db.url()))
        .collect();
    let router = Router::new(api.db.clone(), RouterOptions::default().worker_pool_size(3)).unwrap();
    let results = router.scatter_gather(&cells, Duration::from_secs(60), |_, conn| count(conn));
    assert_eq!(results.len(), 10);
    assert!(
        results.values().all(|r| r.as_ok() == Some(&1)),
        "{results:?}"
    );
    assert!(
        router.worker_stats().live <= 3,
        "{:?}",
        router.worker_stats()
    );
}

#[test]
fn hung_closures_time_out_and_do_not_starve_later_calls() {
    let api = TestDb::new(BackendKind::Sqlite);
    let dbs: Vec<CellDb> = (0..6)
        .map(|_| cell_db(BackendKind::Sqlite, &["x"]))
        .collect();
    let cells: Vec<CellMapping> = dbs
        .iter()
        .enumerate()
        .map(|(i, d)| register(&api, &format!("c{i}"), d.db.url()))
        .collect();
    // Two workers, both taken by the two hanging cells listed first.
    let router = Router::new(
        api.db.clone(),
        RouterOptions::default()
            .worker_pool_size(2)
            .max_detached_workers(2),
    )
    .unwrap();
    let gate = Arc::new(Gate::default());
    let hang: Vec<Uuid> = cells[..2].iter().map(|c| c.uuid).collect();
    let closure_gate = Arc::clone(&gate);
    let timeout = Duration::from_secs(2);
    let start = Instant::now();
    let first = router.scatter_gather(&cells, timeout, move |cell, conn| {
        if hang.contains(&cell.uuid) {
            closure_gate.wait();
        }
        count(conn)
    });
    assert!(start.elapsed() < timeout + MARGIN);
    // Every cell has its result: the two hung ones and those queued behind
    // them did not respond.
    assert_eq!(first.len(), 6);
    for c in &cells[..2] {
        assert!(first[&uuid_of(c)].did_not_respond(), "{first:?}");
    }
    assert_eq!(
        router.worker_stats().detached,
        2,
        "{:?}",
        router.worker_stats()
    );

    // The hung workers were replaced: the other cells answer now.
    let rest = &cells[2..];
    let second = router.scatter_gather(rest, Duration::from_secs(60), |_, conn| count(conn));
    let answered: BTreeMap<_, _> = second.iter().filter(|(_, r)| r.is_ok()).collect();
    assert_eq!(answered.len(), 4, "{second:?}");

    gate.open();
    let deadline = Instant::now() + Duration::from_secs(30);
    while router.worker_stats().detached != 0 {
        assert!(Instant::now() < deadline, "detached workers never exited");
        std::thread::yield_now();
    }
    common::wait_until_up(&router, cells[0].uuid);
    assert!(matches!(
        router.scatter_gather_single_cell(&cells[0], Duration::from_secs(60), |_, c| count(c)),
        CellResult::Ok(1)
    ));
}
