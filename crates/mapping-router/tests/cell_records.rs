//! Pools follow the newest cell record, never an older one: a cell's URL
//! changes while the router holds a cached cell list (the default 60 s),
//! and `route()`, `target_cell` (with the record from before the change)
//! and `scatter_gather_all()` alternate. Every call must reach the new
//! database, with one pool build for the change (it used to flip between
//! the two URLs on every call). A stale record of a deleted cell is refused.
//!
//! The API database is on each backend (`backend_tests!`); the change is
//! made through the router's own API handle (seen at once) and through
//! another handle (as another process would: seen by the first call that
//! reads the cell).

mod common;

use common::{cell_db, instances, map_instance, register};
use diesel::prelude::*;
use mapping_diesel::{DbConnection, Options};
use mapping_model::CellMappingUpdate;
use mapping_router::{Route, Router, RouterError, RouterOptions};
use mapping_testkit::{BackendKind, TestDb};
use uuid::Uuid;

fn hostnames(conn: &mut DbConnection) -> QueryResult<Vec<String>> {
    instances::table
        .select(instances::hostname)
        .order(instances::hostname)
        .load(conn)
}

/// Where each of the three ways reaches now, as the rows they read.
fn reach(router: &Router, instance: Uuid, stale: &mapping_model::CellMapping, step: usize) {
    let new = vec!["new".to_owned()];
    match step % 3 {
        0 => {
            let Route::Cell(target) = router.route(instance).unwrap() else {
                panic!("not routed");
            };
            assert_eq!(target.run(hostnames).unwrap(), new, "route, step {step}");
        }
        1 => assert_eq!(
            router.target_cell(stale, hostnames).unwrap(),
            new,
            "target_cell with the old record, step {step}"
        ),
        _ => {
            let r = router
                .scatter_gather_all(std::time::Duration::from_secs(30), |_, c| hostnames(c))
                .unwrap();
            assert_eq!(
                r[&stale.uuid].as_ok(),
                Some(&new),
                "scatter_gather_all, step {step}: {r:?}"
            );
        }
    }
}

fn url_change(api: &TestDb, writer: &mapping_diesel::Database, first_step: usize) {
    let old_db = cell_db(BackendKind::Sqlite, &["old"]);
    let new_db = cell_db(common::backends()[common::backends().len() - 1], &["new"]);
    let cell = register(api, "moving", old_db.db.url());
    let instance = mapping_testkit::uuid();
    map_instance(api, &instance, &cell);
    let instance = Uuid::parse_str(&instance).unwrap();
    let router = Router::new(api.db.clone(), RouterOptions::default()).unwrap();
    // Warm: the list is cached and the pool is on the old database.
    assert_eq!(
        router.target_cell(&cell, hostnames).unwrap(),
        vec!["old".to_owned()]
    );
    assert_eq!(router.cells().unwrap().len(), 1);
    let built = router.pool_stats().built;

    writer
        .cells()
        .save(
            &cell,
            &CellMappingUpdate::new().database_connection(new_db.db.url()),
        )
        .unwrap();
    for step in first_step..first_step + 50 {
        reach(&router, instance, &cell, step);
    }
    let stats = router.pool_stats();
    assert_eq!(
        stats.built,
        built + 1,
        "one pool build for the change: {stats:?}"
    );
    assert_eq!(stats.open, 1, "{stats:?}");
}

mapping_testkit::backend_tests! {
    fn a_url_change_through_the_routers_own_handle_is_followed_at_once(t) {
        // Even scatter_gather_all first: the cached list is reloaded
        // because a cell was written through this handle.
        url_change(t, &t.db, 2);
    }

    fn a_url_change_by_another_process_is_followed_from_the_first_read(t) {
        let other = t.reopen(Options::default());
        // route() reads the mapping, and with it the new record.
        url_change(t, &other, 0);
    }

    fn a_stale_record_of_a_cell_deleted_through_the_same_handle_is_refused(t) {
        let db = cell_db(BackendKind::Sqlite, &["x"]);
        let cell = register(t, "doomed", db.db.url());
        let router = Router::new(t.db.clone(), RouterOptions::default()).unwrap();
        assert!(router.target_cell(&cell, hostnames).is_ok());
        t.db.cells().destroy(cell.uuid).unwrap();
        refused(&router, &cell);
    }

    fn a_stale_record_of_a_cell_deleted_elsewhere_is_refused_after_a_refresh(t) {
        let db = cell_db(BackendKind::Sqlite, &["x"]);
        let cell = register(t, "doomed", db.db.url());
        let router = Router::new(t.db.clone(), RouterOptions::default()).unwrap();
        assert!(router.target_cell(&cell, hostnames).is_ok());
        t.reopen(Options::default()).cells().destroy(cell.uuid).unwrap();
        router.refresh_cells().unwrap();
        // It used to re-open the pool from the stale record.
        refused(&router, &cell);
    }

    fn a_stale_record_of_a_cell_deleted_elsewhere_and_never_listed_is_refused(t) {
        let db = cell_db(BackendKind::Sqlite, &["x"]);
        let cell = register(t, "doomed", db.db.url());
        t.reopen(Options::default()).cells().destroy(cell.uuid).unwrap();
        let router = Router::new(t.db.clone(), RouterOptions::default()).unwrap();
        refused(&router, &cell);
    }
}

/// Every way in refuses `cell` as not found, and no pool is (re)opened.
fn refused(router: &Router, cell: &mapping_model::CellMapping) {
    for _ in 0..3 {
        let err = router.target_cell(cell, hostnames).unwrap_err();
        assert!(
            matches!(err, RouterError::CellNotFound { cell: c } if c == cell.uuid),
            "{err:?}"
        );
        let r = router.scatter_gather(
            std::slice::from_ref(cell),
            std::time::Duration::from_secs(30),
            |_, c| hostnames(c),
        );
        let e = r[&cell.uuid].error();
        assert!(matches!(e, Some(RouterError::CellNotFound { .. })), "{r:?}");
        assert!(!router.has_pool(cell.uuid));
    }
}
