//! The cell-v2 library functions on every backend: a migrated `nova_api`
//! and a Nova cell database per test.

use std::collections::HashSet;

use mapping_cellv2::{
    check, discover_hosts, map_instances, populate_queued_for_delete, populate_user_id, stats,
    verify_instance, Error, MapInstancesOptions, MapInstancesReport, Router, RouterOptions,
    VerifyOutcome, FAKE_PROJECT_ID,
};
use mapping_model::{
    CellMapping, InstanceMapping, NewCellMapping, NewHostMapping, NewInstanceMapping,
    INSTANCE_MIGRATION_MARKER as MARKER_PROJECT_ID,
};
use mapping_testkit::{at, CellDb, NewCellInstance, TestDb};

/// The cell router over the test's `nova_api`.
fn cells_of(t: &TestDb) -> Router {
    Router::new(t.db.clone(), RouterOptions::default()).unwrap()
}

fn run(t: &TestDb, cell: &CellMapping, opts: MapInstancesOptions) -> MapInstancesReport {
    map_instances(t, &cells_of(t), cell.uuid, opts, &mut |_| {})
        .unwrap_or_else(|e| panic!("map_instances failed: {e:?}"))
}

fn opts(max_count: Option<i64>, batch_size: usize) -> MapInstancesOptions {
    MapInstancesOptions {
        max_count,
        reset: false,
        batch_size,
    }
}

fn mapped(t: &TestDb, uuids: &[String]) -> Vec<InstanceMapping> {
    t.instance_mappings().get_by_instance_uuids(uuids).unwrap()
}

fn mapped_set(t: &TestDb, uuids: &[String]) -> HashSet<String> {
    mapped(t, uuids)
        .into_iter()
        .map(|m| m.instance_uuid.into_string())
        .collect()
}

fn marker_rows(t: &TestDb) -> Vec<String> {
    use diesel::prelude::*;
    use mapping_model::schema::instance_mappings as im;
    t.with_connection(|c| {
        Ok(im::table
            .filter(im::project_id.eq(MARKER_PROJECT_ID))
            .select((im::instance_uuid, im::user_id, im::cell_id))
            .load::<(String, Option<String>, Option<i32>)>(c)
            .unwrap())
    })
    .unwrap()
    .into_iter()
    .map(|(u, user, cell)| {
        assert_eq!(user.as_deref(), Some(MARKER_PROJECT_ID), "marker user_id");
        assert_eq!(cell, None, "the marker has no cell");
        u
    })
    .collect()
}

/// The marker's instance_uuid as nova-manage writes it: the last instance's
/// uuid with spaces for hyphens.
fn encode_marker(last_uuid: &str) -> String {
    last_uuid.replace('-', " ")
}

/// Writes the marker row exactly as nova-manage does.
fn nova_marker(t: &TestDb, last_uuid: &str) {
    t.exec(&format!(
        "INSERT INTO instance_mappings (created_at, instance_uuid, project_id, user_id, queued_for_delete) \
         VALUES ('2020-01-01 00:00:00', '{}', '{MARKER_PROJECT_ID}', '{MARKER_PROJECT_ID}', {})",
        last_uuid.replace('-', " "),
        t.sql_bool(false)
    ));
}

mapping_testkit::backend_tests! {
    fn maps_every_instance_in_batches(t) {
        let cdb = CellDb::new(t.backend());
        let cell = cdb.map_in(t);
        let uuids = cdb.add_many(120, "p1", "u1", 0);
        let r = run(t, &cell, opts(None, 50));
        assert_eq!((r.processed, r.mapped, r.already_mapped, r.complete), (120, 120, 0, true));
        let ms = mapped(t, &uuids);
        assert_eq!(ms.len(), 120);
        for m in &ms {
            assert_eq!(m.cell_mapping.as_ref(), Some(&cell));
            assert_eq!(m.project_id, "p1");
            assert_eq!(m.user_id.as_deref(), Some("u1"));
            assert!(!m.queued_for_delete);
        }
        assert!(marker_rows(t).is_empty(), "a complete run leaves no marker");
        // A rerun changes nothing.
        let r = run(t, &cell, opts(None, 50));
        assert_eq!((r.processed, r.mapped, r.already_mapped, r.complete), (120, 0, 120, true));
    }

    fn max_count_maps_one_batch_and_resumes(t) {
        let cdb = CellDb::new(t.backend());
        let cell = cdb.map_in(t);
        let uuids = cdb.add_many(120, "p", "u", 0);
        let r = run(t, &cell, opts(Some(50), 7));
        assert_eq!((r.processed, r.mapped, r.complete), (50, 50, false));
        assert_eq!(mapped_set(t, &uuids), uuids[..50].iter().cloned().collect());
        assert_eq!(marker_rows(t), vec![encode_marker(&uuids[49])], "Nova's marker format");
        let marker = t.instance_mappings().marker().unwrap();
        assert_eq!(marker.map(|u| u.to_string()), Some(uuids[49].clone()));
        let r = run(t, &cell, opts(Some(50), 1000));
        assert_eq!((r.processed, r.mapped, r.complete), (50, 50, false));
        assert_eq!(marker_rows(t), vec![encode_marker(&uuids[99])]);
        let r = run(t, &cell, opts(Some(50), 1000));
        assert_eq!((r.processed, r.mapped, r.complete), (20, 20, true));
        assert!(marker_rows(t).is_empty());
        assert_eq!(mapped(t, &uuids).len(), 120);
    }

    fn a_full_last_batch_still_leaves_a_marker_like_nova(t) {
        let cdb = CellDb::new(t.backend());
        let cell = cdb.map_in(t);
        let uuids = cdb.add_many(10, "p", "u", 0);
        let r = run(t, &cell, opts(Some(10), 3));
        assert!(!r.complete, "nova-manage exits 1 when the batch was full");
        assert_eq!(marker_rows(t), vec![encode_marker(&uuids[9])]);
        let r = run(t, &cell, opts(Some(10), 3));
        assert_eq!((r.processed, r.complete), (0, true));
        assert!(marker_rows(t).is_empty());
    }

    fn resumes_from_a_marker_nova_wrote(t) {
        let cdb = CellDb::new(t.backend());
        let cell = cdb.map_in(t);
        let uuids = cdb.add_many(40, "p", "u", 0);
        nova_marker(t, &uuids[29]);
        let r = run(t, &cell, opts(None, 4));
        assert_eq!((r.processed, r.mapped, r.complete), (10, 10, true));
        assert_eq!(mapped_set(t, &uuids), uuids[30..].iter().cloned().collect());
        assert!(marker_rows(t).is_empty(), "the marker is consumed");
    }

    fn reset_starts_again_from_the_oldest(t) {
        let cdb = CellDb::new(t.backend());
        let cell = cdb.map_in(t);
        let uuids = cdb.add_many(30, "p", "u", 0);
        run(t, &cell, opts(Some(20), 50));
        // Someone removes a mapping before the marker: only reset finds it again.
        t.instance_mappings().destroy(&uuids[3]).unwrap();
        let mut o = opts(Some(10), 50);
        o.reset = true;
        let r = run(t, &cell, o);
        assert_eq!((r.processed, r.mapped, r.already_mapped, r.complete), (10, 1, 9, false));
        assert_eq!(marker_rows(t), vec![encode_marker(&uuids[9])]);
        let r = run(t, &cell, opts(None, 50));
        assert_eq!((r.processed, r.mapped, r.complete), (20, 10, true));
        assert_eq!(mapped(t, &uuids).len(), 30);
    }

    fn instances_sharing_created_at_are_each_mapped_once(t) {
        let cdb = CellDb::new(t.backend());
        let cell = cdb.map_in(t);
        let same = at(500);
        let news: Vec<NewCellInstance> = (0..7).map(|_| NewCellInstance::new("p", "u", same)).collect();
        cdb.add_instances(&news);
        let older = cdb.add_many(2, "p", "u", 0);
        let uuids: Vec<String> = news.iter().map(|n| n.uuid.clone()).chain(older).collect();
        let mut total = 0;
        for _ in 0..10 {
            let r = run(t, &cell, opts(Some(2), 1));
            total += r.mapped;
            if r.complete {
                break;
            }
        }
        assert_eq!(total, 9, "every instance mapped exactly once across resumed runs");
        assert_eq!(mapped(t, &uuids).len(), 9);
    }

    fn deleted_and_soft_deleted_instances_are_mapped_queued(t) {
        let cdb = CellDb::new(t.backend());
        let cell = cdb.map_in(t);
        let uuids = cdb.add_many(4, "p", "u", 0);
        cdb.delete_instance(&uuids[1]);
        cdb.soft_delete_instance(&uuids[2]);
        let r = run(t, &cell, opts(None, 50));
        assert_eq!(r.mapped, 4);
        let ms = mapped(t, &uuids);
        let queued: HashSet<String> = ms.iter().filter(|m| m.queued_for_delete).map(|m| m.instance_uuid.to_string()).collect();
        assert_eq!(queued, [uuids[1].clone(), uuids[2].clone()].into_iter().collect());
    }

    fn already_mapped_instances_are_left_alone(t) {
        let cdb = CellDb::new(t.backend());
        let cell = cdb.map_in(t);
        let other = t.cell();
        let uuids = cdb.add_many(5, "p", "u", 0);
        t.instance_mappings()
            .create(NewInstanceMapping::new(uuids[2].as_str(), "other-project", "other-user").cell(&other))
            .unwrap();
        let r = run(t, &cell, opts(None, 2));
        assert_eq!((r.mapped, r.already_mapped), (4, 1));
        let m = t.instance_mappings().get_by_instance_uuid(&uuids[2]).unwrap();
        assert_eq!(m.cell_mapping.as_ref(), Some(&other));
        assert_eq!(m.project_id, "other-project");
    }

    fn instances_without_a_project_are_reported_not_mapped(t) {
        let cdb = CellDb::new(t.backend());
        let cell = cdb.map_in(t);
        let mut bad = NewCellInstance::new("p", "u", at(1));
        bad.project_id = None;
        cdb.add_instance(&bad);
        let good = cdb.add_many(1, "p", "u", 2);
        let r = run(t, &cell, opts(None, 50));
        assert_eq!(r.unmappable, vec![bad.uuid.clone()]);
        assert_eq!(r.mapped, 1);
        assert_eq!(mapped(t, &good).len(), 1);
    }

    fn bad_max_count_and_unknown_marker_are_errors(t) {
        let cdb = CellDb::new(t.backend());
        let cell = cdb.map_in(t);
        let e = map_instances(t, &cells_of(t), cell.uuid, opts(Some(0), 50), &mut |_| {});
        assert!(matches!(e, Err(Error::InvalidMaxCount(0))), "{e:?}");
        nova_marker(t, "6a1a7a3c-1d0e-4a55-9d49-3f0a1c2b3d4e");
        let e = map_instances(t, &cells_of(t), cell.uuid, opts(None, 50), &mut |_| {});
        assert!(matches!(e, Err(Error::MarkerNotFound { .. })), "{e:?}");
        let e = map_instances(t, &cells_of(t), "5f0c2a0e-6f56-4a7d-8e1b-2d0c9a8b7e61", opts(None, 50), &mut |_| {});
        assert!(matches!(e, Err(Error::Api(mapping_model::Error::CellMappingNotFound { .. }))), "{e:?}");
    }

    fn discovers_compute_nodes_once(t) {
        let cdb = CellDb::new(t.backend());
        let cell = cdb.map_in(t);
        let n1 = cdb.add_compute_node("cmp1");
        let n2 = cdb.add_compute_node("cmp2");
        let n3 = cdb.add_compute_node("cmp3");
        let gone = cdb.add_compute_node("cmp-deleted");
        cdb.delete_compute_node(gone);
        let flagged = cdb.add_compute_node("cmp-flagged");
        cdb.set_mapped(flagged, 1);
        // cmp3 already has a host mapping (made by Nova's scheduler, say).
        t.host_mappings().create(NewHostMapping::new("cmp3", &cell)).unwrap();
        // cell0 is skipped even when it is reachable.
        let cell0_db = CellDb::new(t.backend());
        cell0_db.add_compute_node("in-cell0");
        t.cells().create(NewCellMapping::new(mapping_model::CELL0_UUID, "none:///", cell0_db.url()).name("cell0")).unwrap();

        let found = discover_hosts(t, &cells_of(t), None, false).unwrap();
        let hosts: Vec<&str> = found.iter().map(|d| d.host.as_str()).collect();
        assert_eq!(hosts, ["cmp1", "cmp2"]);
        assert!(found.iter().all(|d| d.cell_uuid == cell.uuid));
        assert_eq!(t.host_mappings().get_by_host("cmp1").unwrap().cell_mapping, cell);
        assert_eq!((cdb.mapped(n1), cdb.mapped(n2), cdb.mapped(n3)), (Some(1), Some(1), Some(1)));
        assert_eq!(cdb.mapped(gone), Some(0));
        assert!(t.host_mappings().get_by_host("cmp-deleted").is_err());
        assert!(t.host_mappings().get_by_host("cmp-flagged").is_err(), "mapped = 1 nodes are not looked at");
        assert!(t.host_mappings().get_by_host("in-cell0").is_err());
        assert!(discover_hosts(t, &cells_of(t), Some(&cell.uuid.to_string()), false).unwrap().is_empty());
    }

    fn discovers_by_service(t) {
        let cdb = CellDb::new(t.backend());
        let cell = cdb.map_in(t);
        cdb.add_service("svc1", "nova-compute", false);
        cdb.add_service("svc2", "nova-compute", true);
        cdb.add_service("sched", "nova-scheduler", false);
        let gone = cdb.add_service("svc-gone", "nova-compute", false);
        cdb.delete_service(gone);
        let found = discover_hosts(t, &cells_of(t), Some(&cell.uuid.to_string()), true).unwrap();
        let hosts: Vec<&str> = found.iter().map(|d| d.host.as_str()).collect();
        assert_eq!(hosts, ["svc1", "svc2"]);
        assert!(discover_hosts(t, &cells_of(t), None, true).unwrap().is_empty());
    }

    fn racing_discover_hosts_map_each_host_once(t) {
        let cdb = CellDb::new(t.backend());
        let cell = cdb.map_in(t);
        let mut all = Vec::new();
        for round in 0..4 {
            let hosts: Vec<String> = (0..60).map(|i| format!("r{round}-host{i}")).collect();
            for h in &hosts {
                cdb.add_compute_node(h);
            }
            let barrier = std::sync::Barrier::new(2);
            let results: Vec<_> = std::thread::scope(|s| {
                let handles: Vec<_> = (0..2)
                    .map(|_| {
                        let api = t.reopen(mapping_diesel::Options::default());
                        let barrier = &barrier;
                        s.spawn(move || {
                            let cells = Router::new(api.clone(), RouterOptions::default()).unwrap();
                            barrier.wait();
                            discover_hosts(&api, &cells, None, false)
                        })
                    })
                    .collect();
                handles.into_iter().map(|h| h.join().unwrap()).collect()
            });
            let mut created: Vec<String> = Vec::new();
            for r in results {
                created.extend(r.unwrap_or_else(|e| panic!("a racing run failed: {e:?}")).into_iter().map(|d| d.host));
            }
            created.sort();
            let mut expected = hosts.clone();
            expected.sort();
            assert_eq!(created, expected, "each host created by exactly one of the runs");
            all.extend(hosts);
        }
        assert_eq!(t.host_mappings().get_by_cell_id(cell.id).unwrap().len(), all.len());
    }

    fn populate_queued_for_delete_fills_nulls(t) {
        let cdb = CellDb::new(t.backend());
        let cell = cdb.map_in(t);
        let uuids = cdb.add_many(4, "p", "u", 0);
        run(t, &cell, opts(None, 50));
        cdb.delete_instance(&uuids[0]);
        cdb.soft_delete_instance(&uuids[1]);
        let unscheduled = t.instance(None, "p", "u");
        t.exec("UPDATE instance_mappings SET queued_for_delete = NULL");
        let cells = cells_of(t);
        let r = populate_queued_for_delete(t, &cells, 3).unwrap();
        assert_eq!((r.found, r.done), (3, 3));
        let r = populate_queued_for_delete(t, &cells, 50).unwrap();
        assert_eq!((r.found, r.done), (1, 1));
        let r = populate_queued_for_delete(t, &cells, 50).unwrap();
        assert_eq!((r.found, r.done), (0, 0));
        let ms = mapped(t, &uuids);
        for m in ms {
            let expect = m.instance_uuid == uuids[0] || m.instance_uuid == uuids[1];
            assert_eq!(m.queued_for_delete, expect, "{}", m.instance_uuid);
            assert!(m.updated_at.is_some());
        }
        // The unscheduled mapping has no cell to ask: left NULL (reads false).
        use diesel::prelude::*;
        use mapping_model::schema::instance_mappings as im;
        let q: Option<bool> = t.with_connection(|c| Ok(im::table.filter(im::instance_uuid.eq(unscheduled.instance_uuid.as_str())).select(im::queued_for_delete).first(c).unwrap())).unwrap();
        assert_eq!(q, None);
        assert!(populate_queued_for_delete(t, &cells, 0).is_err());
    }

    fn populate_user_id_fills_nulls_and_reports_unmigratable(t) {
        let cdb = CellDb::new(t.backend());
        let cell = cdb.map_in(t);
        let mut news: Vec<NewCellInstance> = (0..3).map(|i| NewCellInstance::new("p", "u", at(i))).collect();
        news[1].user_id = Some("alice".into());
        cdb.add_instances(&news);
        let uuids: Vec<String> = news.iter().map(|n| n.uuid.clone()).collect();
        run(t, &cell, opts(None, 50));
        cdb.delete_instance(&uuids[2]);
        let unscheduled = t.instance(None, "p", "u");
        let fake = t.instance(Some(&cell), FAKE_PROJECT_ID, "u");
        t.exec("UPDATE instance_mappings SET user_id = NULL");
        let cells = cells_of(t);
        let r = populate_user_id(t, &cells, 50).unwrap();
        // uuids[0..3] and the unscheduled one need it; the fake project is left alone.
        assert_eq!((r.found, r.done), (4, 2));
        let get = |u: &str| t.instance_mappings().get_by_instance_uuid(u).unwrap().user_id;
        assert_eq!(get(&uuids[0]).as_deref(), Some("u"));
        assert_eq!(get(&uuids[1]).as_deref(), Some("alice"));
        assert_eq!(get(&uuids[2]), None, "deleted instance: not migratable, as in Nova");
        assert_eq!(get(unscheduled.instance_uuid.as_str()), None);
        assert_eq!(get(fake.instance_uuid.as_str()), None);
        let r = populate_user_id(t, &cells, 50).unwrap();
        assert_eq!((r.found, r.done), (2, 0), "only the unmigratable ones are left");
        let r = populate_user_id(t, &cells, 1).unwrap();
        assert_eq!(r.found, 1);
    }

    fn online_migrations_invalidate_cached_mappings(t) {
        // A handle whose first tier keeps entries for 5 minutes: only an
        // invalidation can make it see the migrated values.
        let cached = t.reopen(mapping_diesel::Options::default().cache(Some(
            mapping_diesel::CacheOptions { capacity: 1000, ttl: std::time::Duration::from_secs(300) },
        )));
        let cdb = CellDb::new(t.backend());
        let cell = cdb.map_in(t);
        let uuids = cdb.add_many(2, "p", "u", 0);
        run(t, &cell, opts(None, 50));
        cdb.delete_instance(&uuids[0]);
        t.exec("UPDATE instance_mappings SET queued_for_delete = NULL, user_id = NULL");
        let get = |u: &str| cached.instance_mappings().get_by_instance_uuid(u).unwrap();
        // Cached as they are now: not queued (NULL), no user.
        assert!(!get(&uuids[0]).queued_for_delete);
        assert_eq!(get(&uuids[1]).user_id, None);
        let cells = cells_of(t);
        let r = populate_queued_for_delete(&cached, &cells, 50).unwrap();
        assert_eq!(r.done, 2);
        assert!(get(&uuids[0]).queued_for_delete, "a cached copy from before the migration was served");
        let r = populate_user_id(&cached, &cells, 50).unwrap();
        assert_eq!(r.done, 1);
        assert_eq!(get(&uuids[1]).user_id.as_deref(), Some("u"), "a cached copy from before the migration was served");
    }

    fn verify_instance_outcomes(t) {
        let cdb = CellDb::new(t.backend());
        let cell = cdb.map_in(t);
        let uuids = cdb.add_many(3, "p", "u", 0);
        run(t, &cell, opts(None, 50));
        cdb.delete_instance(&uuids[1]);
        cdb.archive_instance(&uuids[2]);
        let unscheduled = t.instance(None, "p", "u");
        let cells = cells_of(t);
        let v = |u: &str| verify_instance(t, &cells, u).unwrap();
        assert_eq!(v(&uuids[0]), VerifyOutcome::Alive(cell.clone()));
        assert_eq!(v(&uuids[1]), VerifyOutcome::Deleted(cell.clone()));
        assert_eq!(v(&uuids[2]), VerifyOutcome::Archived(cell.clone()));
        assert_eq!(v(unscheduled.instance_uuid.as_str()), VerifyOutcome::NoCell);
        assert_eq!(v("5f0c2a0e-6f56-4a7d-8e1b-2d0c9a8b7e61"), VerifyOutcome::NotMapped);
        let codes: Vec<i32> = [&uuids[0], &uuids[1], &uuids[2], &unscheduled.instance_uuid.to_string()]
            .iter().map(|u| v(u).exit_code()).collect();
        assert_eq!(codes, [0, 3, 4, 2]);
    }

    fn check_finds_each_problem(t) {
        let cdb = CellDb::new(t.backend());
        let cell = cdb.map_in(t);
        let uuids = cdb.add_many(4, "p", "u", 0);
        let node = cdb.add_compute_node("c1");
        run(t, &cell, opts(None, 50));
        discover_hosts(t, &cells_of(t), None, false).unwrap();
        let cells = cells_of(t);
        let r = check(t, &cells).unwrap();
        assert!(r.is_ok(), "{r:?}");
        assert_eq!(r.mappings_checked, 4);
        let _ = node;
        cdb.archive_instance(&uuids[0]);
        cdb.delete_instance(&uuids[1]);
        cdb.add_compute_node("c2");
        nova_marker(t, &uuids[3]);
        // A live instance whose mapping says it is queued for delete.
        t.exec(&format!(
            "UPDATE instance_mappings SET queued_for_delete = {} WHERE instance_uuid = '{}'",
            t.sql_bool(true),
            uuids[2]
        ));
        let r = check(t, &cells).unwrap();
        let kinds: Vec<(&str, u64, Vec<String>)> = r.problems.iter().map(|p| (p.kind, p.count, p.sample.clone())).collect();
        assert_eq!(kinds, vec![
            ("map_instances_marker", 1, vec![uuids[3].clone()]),
            ("instance_missing_in_cell", 1, vec![uuids[0].clone()]),
            ("deleted_not_queued_for_delete", 1, vec![uuids[1].clone()]),
            ("queued_for_delete_not_deleted", 1, vec![uuids[2].clone()]),
            ("host_not_mapped", 1, vec![format!("c2 (cell {})", cell.identity())]),
        ]);
    }

    fn stats_count_per_cell_project_and_unscheduled(t) {
        let cdb = CellDb::new(t.backend());
        let cell = cdb.map_in(t);
        cdb.add_many(3, "p1", "u", 0);
        cdb.add_many(2, "p2", "u", 10);
        run(t, &cell, opts(None, 50));
        t.instance(None, "p2", "u");
        nova_marker(t, "6a1a7a3c-1d0e-4a55-9d49-3f0a1c2b3d4e");
        t.host_mappings().create(NewHostMapping::new("h1", &cell)).unwrap();
        let s = stats(t).unwrap();
        assert_eq!((s.total, s.unscheduled), (6, 1));
        assert_eq!(s.projects.get("p1"), Some(&3));
        assert_eq!(s.projects.get("p2"), Some(&3));
        assert_eq!(s.projects.len(), 2, "the marker is not a project");
        let c = s.cells.iter().find(|c| c.uuid == cell.uuid).unwrap();
        assert_eq!((c.instances, c.hosts), (5, 1));
    }
}
