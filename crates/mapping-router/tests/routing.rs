//! route, target_cell and scatter-gather against real cell databases: the
//! API database on each backend (`backend_tests!`), cells on every backend
//! compiled in, so every mix of API and cell backends is run.

mod common;

use std::time::Duration;

use common::{cell_db, instances, map_instance, register};
use diesel::prelude::*;
use mapping_diesel::{ConnectionUrl, DbConnection};
use mapping_model::{CellMappingUpdate, NewCellMapping, NewInstanceMapping, CELL0_UUID};
use mapping_router::{CellResult, Route, Router, RouterError, RouterOptions};
use mapping_testkit::BackendKind;
use uuid::Uuid;

fn hostnames(conn: &mut DbConnection) -> QueryResult<Vec<String>> {
    instances::table
        .select(instances::hostname)
        .order(instances::hostname)
        .load(conn)
}

mapping_testkit::backend_tests! {
    fn route_reaches_the_instance_in_its_cell_on_every_backend(t) {
        let router = Router::new(t.db.clone(), RouterOptions::default()).unwrap();
        for &backend in common::backends() {
            let cell = cell_db(backend, &[&format!("host-{backend:?}")]);
            let mapping = register(&t.db, &format!("cell-{backend:?}"), cell.db.url());
            let (instance, host) = &cell.rows[0];
            map_instance(&t.db, instance, &mapping);

            let Route::Cell(target) = router.route(Uuid::parse_str(instance).unwrap()).unwrap() else {
                panic!("instance in {backend:?} cell not routed to a cell");
            };
            assert_eq!(target.cell().uuid, mapping.uuid);
            assert_eq!(target.mapping.instance_uuid, *instance);
            let got: String = target
                .run(|conn| {
                    instances::table
                        .filter(instances::uuid.eq(instance))
                        .select(instances::hostname)
                        .first::<String>(conn)
                })
                .unwrap();
            assert_eq!(&got, host, "row read from the {backend:?} cell");
            // target_cell reaches the same database through the cell mapping.
            assert_eq!(router.target_cell(&mapping, hostnames).unwrap(), vec![host.clone()]);
        }
        assert_eq!(router.pool_stats().open, common::backends().len());
    }

    fn route_tells_unscheduled_and_unknown_instances_apart(t) {
        let router = Router::new(t.db.clone(), RouterOptions::default()).unwrap();
        let unscheduled = mapping_testkit::uuid();
        t.db.instance_mappings()
            .create(NewInstanceMapping::new(&unscheduled, "p", "u"))
            .unwrap();
        match router.route(Uuid::parse_str(&unscheduled).unwrap()).unwrap() {
            Route::NotScheduled(m) => assert_eq!(m.instance_uuid, unscheduled),
            other => panic!("expected NotScheduled, got {other:?}"),
        }
        let unknown = Uuid::new_v4();
        let err = router.route(unknown).unwrap_err();
        assert!(err.is_not_found(), "{err}");
        assert!(matches!(err, RouterError::InstanceNotFound { instance_uuid } if instance_uuid == unknown));
        assert_eq!(router.pool_stats().built, 0, "no pool for an unscheduled instance");
    }

    fn scatter_gather_all_skip_cell0_and_one_cell(t) {
        let router = Router::new(t.db.clone(), RouterOptions::default()).unwrap();
        let cell0_db = cell_db(BackendKind::Sqlite, &["failed-build"]);
        let cell0 = t
            .db
            .cells()
            .create(NewCellMapping::new(CELL0_UUID, "none:///", cell0_db.db.url()).name("cell0"))
            .unwrap();
        let mut dbs = Vec::new();
        let mut expected = std::collections::BTreeMap::new();
        for (i, &backend) in common::backends().iter().enumerate() {
            let hosts: Vec<String> = (0..=i).map(|n| format!("{backend:?}-{n}")).collect();
            let refs: Vec<&str> = hosts.iter().map(String::as_str).collect();
            let db = cell_db(backend, &refs);
            let mapping = register(&t.db, &format!("cell-{backend:?}"), db.db.url());
            expected.insert(mapping.uuid, hosts);
            dbs.push(db);
        }
        let timeout = Duration::from_secs(30);

        let all = router.scatter_gather_all(timeout, |_, conn| hostnames(conn)).unwrap();
        assert_eq!(all.len(), expected.len() + 1);
        assert_eq!(
            all[&Uuid::nil()].as_ok(),
            Some(&vec!["failed-build".to_owned()]),
            "cell0 is part of all cells"
        );

        let skip = router.scatter_gather_skip_cell0(timeout, |_, conn| hostnames(conn)).unwrap();
        let got: std::collections::BTreeMap<Uuid, Vec<String>> = skip
            .into_iter()
            .map(|(u, r)| match r {
                CellResult::Ok(v) => (u, v),
                other => panic!("cell {u}: {other:?}"),
            })
            .collect();
        assert_eq!(got, expected);

        let one = router.scatter_gather_single_cell(&cell0, timeout, |cell, conn| {
            Ok::<_, diesel::result::Error>((cell.uuid, hostnames(conn)?))
        });
        assert_eq!(one.ok(), Some((Uuid::nil(), vec!["failed-build".to_owned()])));
    }

    fn errors_of_the_closure_and_panics_are_per_cell_results(t) {
        let router = Router::new(t.db.clone(), RouterOptions::default()).unwrap();
        let good = cell_db(BackendKind::Sqlite, &["a"]);
        let bad = cell_db(BackendKind::Sqlite, &["b"]);
        let boom = cell_db(BackendKind::Sqlite, &["c"]);
        let good = register(&t.db, "good", good.db.url());
        let bad_cell = register(&t.db, "bad", bad.db.url());
        let boom_cell = register(&t.db, "boom", boom.db.url());
        let (bad_uuid, boom_uuid) = (bad_cell.uuid, boom_cell.uuid);
        let results = router.scatter_gather(
            &[good.clone(), bad_cell, boom_cell],
            Duration::from_secs(30),
            move |cell, conn| {
                if cell.uuid == boom_uuid {
                    panic!("closure exploded");
                }
                if cell.uuid == bad_uuid {
                    return diesel::sql_query("SELECT * FROM no_such_table").execute(conn);
                }
                instances::table.count().get_result::<i64>(conn).map(|n| n as usize)
            },
        );
        let uuid = |s: &str| Uuid::parse_str(s).unwrap();
        assert_eq!(results[&good.uuid].as_ok(), Some(&1));
        let failed: Vec<&RouterError> = results.values().filter_map(CellResult::error).collect();
        assert_eq!(failed.len(), 2, "{results:?}");
        assert!(failed.iter().any(|e| matches!(e, RouterError::Query { source, .. }
            if source.downcast_ref::<diesel::result::Error>().is_some())), "{failed:?}");
        assert!(failed.iter().any(|e| matches!(e, RouterError::Panicked { message, .. }
            if message == "closure exploded")), "{failed:?}");
        // The worker that saw the panic still serves.
        let again = router.scatter_gather(std::slice::from_ref(&good), Duration::from_secs(30), |_, conn| hostnames(conn));
        assert!(again[&good.uuid].is_ok());
    }

    fn templated_cell_urls_expand_against_the_default(t) {
        for &backend in common::backends() {
            let cell = cell_db(backend, &["templated"]);
            let (default, template) = template_for(cell.db.url(), backend);
            let mapping = register(&t.db, "templated", &template);
            assert_eq!(mapping.database_connection, template, "stored and read back raw");
            let router = Router::new(
                t.db.clone(),
                RouterOptions::default().default_database_connection(default),
            )
            .unwrap();
            assert_eq!(
                router.target_cell(&mapping, hostnames).unwrap(),
                vec!["templated".to_owned()],
                "{backend:?} template {template}"
            );
            if backend != BackendKind::Sqlite {
                // Without a default the template stays as stored: not a URL.
                let plain = Router::new(t.db.clone(), RouterOptions::default()).unwrap();
                let err = plain.target_cell(&mapping, hostnames).unwrap_err();
                assert!(matches!(err, RouterError::CellUrl { .. }), "{err}");
            }
        }
    }

    fn a_changed_url_gives_a_new_pool_and_a_deleted_cell_drops_it(t) {
        let router = Router::new(t.db.clone(), RouterOptions::default()).unwrap();
        for &backend in common::backends() {
            let first = cell_db(backend, &["first"]);
            let second = cell_db(backend, &["second"]);
            let mut mapping = register(&t.db, "moving", first.db.url());
            let uuid = mapping.uuid;
            let instance = mapping_testkit::uuid();
            map_instance(&t.db, &instance, &mapping);
            let before = router.pool_stats();
            assert_eq!(router.target_cell(&mapping, hostnames).unwrap(), ["first"]);
            assert!(router.has_pool(uuid));

            mapping = t
                .db
                .cells()
                .save(&mapping, &CellMappingUpdate::new().database_connection(second.db.url()))
                .unwrap();
            // route() reads the cell afresh: the new URL gives a new pool at once.
            let Route::Cell(target) = router.route(Uuid::parse_str(&instance).unwrap()).unwrap() else {
                panic!("not routed");
            };
            assert_eq!(target.run(hostnames).unwrap(), ["second"]);
            let after = router.pool_stats();
            assert_eq!(after.built, before.built + 2, "{before:?} -> {after:?}");
            assert_eq!(after.dropped, before.dropped + 1, "old pool replaced");
            drop(target);

            // Deleted: the next refresh of the cell list drops its pool.
            t.db.instance_mappings().destroy(&instance).unwrap();
            t.db.cells().destroy(mapping.uuid).unwrap();
            router.refresh_cells().unwrap();
            assert!(!router.has_pool(uuid), "{backend:?} pool of a deleted cell kept");
            assert_eq!(router.pool_stats().dropped, before.dropped + 2);
            assert!(matches!(router.cell(uuid), Err(RouterError::CellNotFound { .. })));
        }
    }

    fn the_cell_list_is_cached_until_refreshed(t) {
        let router = Router::new(
            t.db.clone(),
            RouterOptions::default().cell_list_refresh(None),
        )
        .unwrap();
        assert!(router.cells().unwrap().is_empty());
        let db = cell_db(BackendKind::Sqlite, &["x"]);
        register(&t.db, "late", db.db.url());
        assert!(router.cells().unwrap().is_empty(), "never refreshed on its own");
        assert_eq!(router.refresh_cells().unwrap().len(), 1);
        assert_eq!(router.cells().unwrap().len(), 1);
        let r = router.scatter_gather_all(Duration::from_secs(30), |_, c| hostnames(c)).unwrap();
        assert_eq!(r.len(), 1);
    }
}

/// A default URL and a cell template that expands to `url` the way Nova
/// expands it (docs/tables.md).
fn template_for(url: &str, backend: BackendKind) -> (String, String) {
    match backend {
        BackendKind::Sqlite => {
            // sqlite:////tmp/x.sqlite: the default names /tmp/x, the template
            // adds the suffix to its path.
            let base = url
                .strip_suffix(".sqlite")
                .expect("test SQLite files end in .sqlite");
            (base.to_owned(), "sqlite:////{path}.sqlite".to_owned())
        }
        _ => {
            let parsed = ConnectionUrl::parse(url).unwrap();
            let name = parsed.database().unwrap().to_owned();
            let default = mapping_testkit::admin_url(backend).unwrap();
            let with_password = ConnectionUrl::parse(&default)
                .unwrap()
                .redacted()
                .contains("***");
            let creds = if with_password {
                "{username}:{password}"
            } else {
                "{username}"
            };
            (
                default,
                format!("{{scheme}}://{creds}@{{hostname}}:{{port}}/{name}"),
            )
        }
    }
}
