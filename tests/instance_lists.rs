//! `InstanceMapping` and `InstanceMappingList` (docs/tables.md) on every backend
//! compiled in.

mod support;

use cell_mappings::{
    CellMapping, Error, InstanceCounts, InstanceMapping, InstanceMappingUpdate, NewInstanceMapping,
};
use mapping_testkit::{backend_tests, new_instance, uuid, TestDb};
use support::{raw_instance, sorted, stored_bool};

fn uuids_of(ims: &[InstanceMapping]) -> Vec<String> {
    sorted(ims.iter().map(|im| im.instance_uuid.clone()))
}

fn uuids(ims: &[&InstanceMapping]) -> Vec<String> {
    sorted(ims.iter().map(|im| im.instance_uuid.clone()))
}

/// Asserts that every mapping carries the full cell it points at.
fn assert_cells_loaded(t: &TestDb, ims: &[InstanceMapping]) {
    for im in ims {
        let stored = t
            .instance_mappings()
            .get_by_instance_uuid(&im.instance_uuid)
            .unwrap();
        assert_eq!(im.cell_mapping, stored.cell_mapping, "{}", im.instance_uuid);
    }
}

backend_tests! {
    // ---- InstanceMapping ----

    fn get_returns_the_cell_joined(t) {
        let cell = t.cells().create(mapping_testkit::new_cell().disabled(true)).unwrap();
        let im = t.instance(Some(&cell), "p", "u");
        let got = t.instance_mappings().get_by_instance_uuid(&im.instance_uuid).unwrap();
        assert_eq!(got, im);
        assert_eq!(got.cell_mapping, Some(cell), "every field of the cell is loaded");
        assert_eq!(got.project_id, "p");
        assert_eq!(got.user_id.as_deref(), Some("u"));
        assert!(!got.queued_for_delete);
        assert!(got.created_at.is_some());
        assert_eq!(got.updated_at, None);
    }

    fn unknown_instance_is_not_found(t) {
        t.instance(None, "p", "u");
        let u = uuid();
        match t.instance_mappings().get_by_instance_uuid(&u) {
            Err(Error::InstanceMappingNotFound { instance_uuid }) => assert_eq!(instance_uuid, u),
            r => panic!("{r:?}"),
        }
    }

    fn scheduling_persists_the_cell(t) {
        let cell = t.cell();
        let mut im = t.instance(None, "p", "u");
        let other = t.instance(None, "p", "u");
        // The API creates the mapping unscheduled; the conductor assigns the cell.
        im = t.instance_mappings()
            .save(&im, &InstanceMappingUpdate::new().cell(Some(&cell)))
            .unwrap();
        assert_eq!(im.cell_mapping.as_ref(), Some(&cell));
        let fresh = t.reopen(Default::default());
        let got = fresh.instance_mappings().get_by_instance_uuid(&im.instance_uuid).unwrap();
        assert_eq!(got.cell_mapping.as_ref(), Some(&cell));
        assert_eq!(got, im);
        assert!(got.updated_at.is_some());
        assert_eq!(got.project_id, "p");
        assert_eq!(got.user_id.as_deref(), Some("u"));
        let untouched = t.instance_mappings().get_by_instance_uuid(&other.instance_uuid).unwrap();
        assert_eq!(untouched, other, "the save is keyed by instance uuid");
    }

    fn queued_for_delete_on_delete_and_restore(t) {
        let cell = t.cell();
        let mut im = t.instance(Some(&cell), "p", "u");
        im = t.instance_mappings()
            .save(&im, &InstanceMappingUpdate::new().queued_for_delete(true))
            .unwrap();
        let got = t.instance_mappings().get_by_instance_uuid(&im.instance_uuid).unwrap();
        assert!(got.queued_for_delete);
        assert_eq!(got.cell_mapping.as_ref(), Some(&cell));
        let w = format!("instance_uuid = '{}'", im.instance_uuid);
        assert_eq!(stored_bool(t, "instance_mappings", "queued_for_delete", &w), "true");
        im = t.instance_mappings()
            .save(&im, &InstanceMappingUpdate::new().queued_for_delete(false))
            .unwrap();
        assert!(!t.instance_mappings().get_by_instance_uuid(&im.instance_uuid).unwrap().queued_for_delete);
        assert_eq!(stored_bool(t, "instance_mappings", "queued_for_delete", &w), "false");
    }

    fn empty_save_writes_nothing(t) {
        let mut im = t.instance(None, "p", "u");
        im = t.instance_mappings().save(&im, &InstanceMappingUpdate::new()).unwrap();
        let got = t.instance_mappings().get_by_instance_uuid(&im.instance_uuid).unwrap();
        assert_eq!(got.updated_at, None, "an empty save must not touch updated_at");
        t.instance_mappings().destroy(&im.instance_uuid).unwrap();
        let err = t.instance_mappings().save(&im, &InstanceMappingUpdate::new()).unwrap_err();
        assert!(matches!(err, Error::InstanceMappingNotFound { .. }), "{err:?}");
    }

    fn destroy_then_get_is_not_found(t) {
        let cell = t.cell();
        let im = t.instance(Some(&cell), "p", "u");
        let keep = t.instance(Some(&cell), "p", "u");
        t.instance_mappings().destroy(&im.instance_uuid).unwrap();
        match t.instance_mappings().get_by_instance_uuid(&im.instance_uuid) {
            Err(Error::InstanceMappingNotFound { instance_uuid }) => {
                assert_eq!(instance_uuid, im.instance_uuid)
            }
            r => panic!("{r:?}"),
        }
        assert_eq!(t.instance_mappings().get_by_instance_uuid(&keep.instance_uuid).unwrap(), keep);
        let u = uuid();
        match t.instance_mappings().destroy(&u) {
            Err(Error::InstanceMappingNotFound { instance_uuid }) => assert_eq!(instance_uuid, u),
            r => panic!("{r:?}"),
        }
    }

    fn a_null_cell_is_allowed(t) {
        let im = t.instance(None, "p", "u");
        assert_eq!(im.cell_mapping, None);
        let got = t.instance_mappings().get_by_instance_uuid(&im.instance_uuid).unwrap();
        assert_eq!(got.cell_mapping, None);
        assert_eq!(got, im);
        let w = format!("instance_uuid = '{}'", im.instance_uuid);
        assert_eq!(
            support::string(t, &format!("SELECT CASE WHEN cell_id IS NULL THEN 'NULL' ELSE 'set' END AS v FROM instance_mappings WHERE {w}")),
            Some("NULL".to_owned())
        );
        // A row written by another tool with a NULL cell reads the same way.
        let raw = uuid();
        raw_instance(t, &raw, None, "p", Some("u"), Some(false));
        assert_eq!(t.instance_mappings().get_by_instance_uuid(&raw).unwrap().cell_mapping, None);
    }

    fn a_null_user_id_reads_as_unknown(t) {
        let u = uuid();
        raw_instance(t, &u, None, "p", None, Some(false));
        let got = t.instance_mappings().get_by_instance_uuid(&u).unwrap();
        assert_eq!(got.user_id, None);
        assert_eq!(got.project_id, "p");
        // Distinct from any string, the empty one included.
        let empty = uuid();
        raw_instance(t, &empty, None, "p", Some(""), Some(false));
        assert_eq!(t.instance_mappings().get_by_instance_uuid(&empty).unwrap().user_id.as_deref(), Some(""));
    }

    fn create_writes_queued_for_delete_false(t) {
        let im = t.instance_mappings().create(new_instance("p", "u")).unwrap();
        assert!(!im.queued_for_delete);
        let w = format!("instance_uuid = '{}'", im.instance_uuid);
        assert_eq!(stored_bool(t, "instance_mappings", "queued_for_delete", &w), "false", "not NULL");
        let queued = t.instance_mappings().create(new_instance("p", "u").queued_for_delete(true)).unwrap();
        let w = format!("instance_uuid = '{}'", queued.instance_uuid);
        assert_eq!(stored_bool(t, "instance_mappings", "queued_for_delete", &w), "true");
    }

    // ---- InstanceMappingList ----

    fn by_project_returns_exactly_its_rows(t) {
        let a = t.cell();
        let b = t.cell();
        let mine = [
            t.instance(Some(&a), "p", "u1"),
            t.instance(Some(&b), "p", "u2"),
            t.instance(None, "p", "u1"),
        ];
        t.instance(Some(&a), "q", "u1");
        t.instance(None, "q", "u1");
        let got = t.instance_mappings().get_by_project_id("p").unwrap();
        assert_eq!(uuids_of(&got), uuids(&mine.iter().collect::<Vec<_>>()));
        assert!(got.iter().all(|im| im.project_id == "p"));
        assert_cells_loaded(t, &got);
        assert!(got.iter().any(|im| im.cell_mapping.as_ref() == Some(&b)));
        assert!(t.instance_mappings().get_by_project_id("nobody").unwrap().is_empty());
    }

    fn by_cell_excludes_unscheduled_and_starts_empty(t) {
        let a = t.cell();
        let b = t.cell();
        assert!(t.instance_mappings().get_by_cell_id(a.id).unwrap().is_empty());
        t.instance(None, "p", "u");
        assert!(t.instance_mappings().get_by_cell_id(a.id).unwrap().is_empty());
        let in_a = [t.instance(Some(&a), "p", "u"), t.instance(Some(&a), "q", "v")];
        t.instance(Some(&b), "p", "u");
        let got = t.instance_mappings().get_by_cell_id(a.id).unwrap();
        assert_eq!(uuids_of(&got), uuids(&in_a.iter().collect::<Vec<_>>()));
        assert!(got.iter().all(|im| im.cell_mapping.as_ref() == Some(&a)));
        assert!(t.instance_mappings().get_by_cell_id(i32::MAX).unwrap().is_empty());
    }

    fn by_uuids_returns_the_existing_requested_ones(t) {
        let cell = t.cell();
        let scheduled = t.instance(Some(&cell), "p", "u");
        let unscheduled = t.instance(None, "q", "v");
        let not_asked = t.instance(Some(&cell), "p", "u");
        let asked = [scheduled.instance_uuid.to_string(), uuid(), unscheduled.instance_uuid.to_string(), uuid()];
        let got = t.instance_mappings().get_by_instance_uuids(&asked).unwrap();
        assert_eq!(uuids_of(&got), uuids(&[&scheduled, &unscheduled]));
        assert!(!got.iter().any(|im| im.instance_uuid == not_asked.instance_uuid));
        let by_uuid = |u: &str| got.iter().find(|im| im.instance_uuid == u).unwrap().clone();
        assert_eq!(by_uuid(scheduled.instance_uuid.as_str()), scheduled);
        assert_eq!(by_uuid(unscheduled.instance_uuid.as_str()), unscheduled);
        let none: [&str; 0] = [];
        assert!(t.instance_mappings().get_by_instance_uuids(&none).unwrap().is_empty());
        assert!(t.instance_mappings().get_by_instance_uuids(&[uuid()]).unwrap().is_empty());
    }

    fn by_uuids_never_repeats_a_mapping(t) {
        let im = t.instance(None, "p", "u");
        // The same uuid twice, in two spellings, far enough apart to land in
        // different statements.
        let mut asked = vec![im.instance_uuid.to_string()];
        asked.extend((0..cell_mappings::__private::UUID_CHUNK).map(|_| uuid()));
        asked.push(im.instance_uuid.as_str().to_uppercase());
        let got = t.instance_mappings().get_by_instance_uuids(&asked).unwrap();
        assert_eq!(got, vec![im.clone()]);
        assert_eq!(t.instance_mappings().get_count_by_uuids_and_user(&asked, "u").unwrap(), 1);
        assert_eq!(t.instance_mappings().destroy_bulk(&asked).unwrap(), 1);
    }

    fn by_uuids_of_every_list_length(t) {
        // Lists are padded to a few fixed lengths on SQLite and MySQL (by
        // repeating the last uuid): every length in between, repeats within
        // one statement, and the counts see each mapping once.
        let cell = t.cell();
        let ims: Vec<InstanceMapping> = (0..12).map(|i| t.instance(Some(&cell), "p", &format!("u{}", i % 2))).collect();
        for n in 1..=ims.len() {
            let mut asked: Vec<String> = ims[..n].iter().map(|im| im.instance_uuid.to_string()).collect();
            asked.push(uuid());
            asked.push(ims[0].instance_uuid.to_string());
            let got = t.instance_mappings().get_by_instance_uuids(&asked).unwrap();
            assert_eq!(uuids_of(&got), uuids_of(&ims[..n]), "{n} uuids");
            assert!(got.iter().all(|im| im.cell_mapping.as_ref() == Some(&cell)));
            let of_u0 = ims[..n].iter().filter(|im| im.user_id.as_deref() == Some("u0")).count();
            assert_eq!(
                t.instance_mappings().get_count_by_uuids_and_user(&asked, "u0").unwrap(),
                of_u0 as i64,
                "{n} uuids"
            );
        }
    }

    fn by_uuids_refuses_a_malformed_uuid(t) {
        let err = t.instance_mappings().get_by_instance_uuids(&[uuid(), "nope".to_owned()]).unwrap_err();
        assert!(matches!(err, Error::InvalidInput { field: "instance_uuid", .. }), "{err:?}");
    }

    fn destroy_bulk_returns_the_count(t) {
        let cell = t.cell();
        let gone = [t.instance(Some(&cell), "p", "u"), t.instance(None, "p", "u")];
        let kept = t.instance(Some(&cell), "p", "u");
        let mut asked: Vec<String> = gone.iter().map(|im| im.instance_uuid.to_string()).collect();
        asked.push(uuid());
        assert_eq!(t.instance_mappings().destroy_bulk(&asked).unwrap(), 2);
        for im in &gone {
            assert!(t.instance_mappings().get_by_instance_uuid(&im.instance_uuid).unwrap_err().is_not_found());
        }
        assert_eq!(t.instance_mappings().get_by_instance_uuid(&kept.instance_uuid).unwrap(), kept);
        assert_eq!(t.instance_mappings().destroy_bulk(&asked).unwrap(), 0, "unknown uuids are fine");
        let none: [String; 0] = [];
        assert_eq!(t.instance_mappings().destroy_bulk(&none).unwrap(), 0);
    }

    fn not_deleted_by_cell_and_project(t) {
        let a = t.cell();
        let b = t.cell();
        let a_p = vec![t.instance(Some(&a), "p", "u"), t.instance(Some(&a), "p", "v")];
        let a_q = vec![t.instance(Some(&a), "q", "u")];
        let b_p = vec![t.instance(Some(&b), "p", "u")];
        let b_q = vec![t.instance(Some(&b), "q", "u"), t.instance(Some(&b), "q", "w")];
        let queued = t.instance_mappings().create(new_instance("p", "u").cell(&a).queued_for_delete(true)).unwrap();
        t.instance(None, "p", "u");
        let list = |cell: &CellMapping, project: Option<&str>, limit: Option<i64>| {
            t.instance_mappings().get_not_deleted_by_cell_and_project(cell.uuid, project, limit).unwrap()
        };
        for (cell, project, expected) in [(&a, "p", &a_p), (&a, "q", &a_q), (&b, "p", &b_p), (&b, "q", &b_q)] {
            let got = list(cell, Some(project), None);
            assert_eq!(uuids_of(&got), uuids_of(expected), "{} {project}", cell.uuid);
            assert!(got.iter().all(|im| im.cell_mapping.as_ref() == Some(cell)), "cell loaded");
            assert!(got.iter().all(|im| im.project_id == project && !im.queued_for_delete));
        }
        assert!(!list(&a, Some("p"), None).iter().any(|im| im.instance_uuid == queued.instance_uuid));
        assert!(list(&a, Some("nobody"), None).is_empty());
        assert!(t
            .instance_mappings()
            .get_not_deleted_by_cell_and_project(uuid(), Some("p"), None)
            .unwrap()
            .is_empty());

        let one = list(&b, Some("q"), Some(1));
        assert_eq!(one.len(), 1);
        assert!(b_q.iter().any(|im| im.instance_uuid == one[0].instance_uuid));
        assert_eq!(uuids_of(&list(&b, Some("q"), Some(10))), uuids_of(&b_q));
        assert!(list(&b, Some("q"), Some(0)).is_empty());

        let all_a = list(&a, None, None);
        assert_eq!(uuids_of(&all_a), sorted(uuids_of(&a_p).into_iter().chain(uuids_of(&a_q))));
        assert_eq!(list(&a, None, Some(2)).len(), 2);

        // A row from before queued_for_delete existed (NULL) is not deleted.
        let old = uuid();
        raw_instance(t, &old, Some(a.id), "p", Some("u"), None);
        let got = list(&a, Some("p"), None);
        assert_eq!(got.len(), 3);
        let old_im = got.iter().find(|im| im.instance_uuid == old).expect("NULL row included");
        assert!(!old_im.queued_for_delete);
        assert_eq!(old_im.cell_mapping.as_ref(), Some(&a));
        assert!(list(&a, None, None).iter().any(|im| im.instance_uuid == old));
    }

    fn not_deleted_refuses_a_negative_limit(t) {
        let a = t.cell();
        let err = t.instance_mappings().get_not_deleted_by_cell_and_project(a.uuid, None, Some(-1)).unwrap_err();
        assert!(matches!(err, Error::InvalidInput { field: "limit", .. }), "{err:?}");
    }

    fn counts_follow_queued_for_delete(t) {
        let cell = t.cell();
        count_fixture(t, &cell);
        assert_eq!(
            t.instance_mappings().get_counts("p", Some("u")).unwrap(),
            InstanceCounts { project: 2, user: Some(1) }
        );
        assert_eq!(
            t.instance_mappings().get_counts("p", None).unwrap(),
            InstanceCounts { project: 2, user: None },
            "no user count when no user is asked for"
        );
        assert_eq!(
            t.instance_mappings().get_counts("other", Some("u")).unwrap(),
            InstanceCounts { project: 1, user: Some(1) }
        );
        assert_eq!(
            t.instance_mappings().get_counts("p", Some("nobody")).unwrap(),
            InstanceCounts { project: 2, user: Some(0) }
        );
        assert_eq!(
            t.instance_mappings().get_counts("nobody", Some("u")).unwrap(),
            InstanceCounts { project: 0, user: Some(0) }
        );
    }

    fn count_by_uuids_and_user_follows_the_same_rule(t) {
        let cell = t.cell();
        let rows = count_fixture(t, &cell);
        let mut im = t.instance_mappings();
        let mut all = rows.clone();
        all.push(uuid());
        // (p,u,false) and (other,u,false); not (p,u,true) nor (p,u,NULL).
        assert_eq!(im.get_count_by_uuids_and_user(&all, "u").unwrap(), 2);
        assert_eq!(im.get_count_by_uuids_and_user(&all, "other").unwrap(), 1);
        assert_eq!(im.get_count_by_uuids_and_user(&all, "nobody").unwrap(), 0);
        let [p_u, p_other, other_u, p_u_queued, p_u_null]: [String; 5] = rows.try_into().unwrap();
        assert_eq!(im.get_count_by_uuids_and_user(&[&p_u], "u").unwrap(), 1);
        assert_eq!(im.get_count_by_uuids_and_user(&[&p_other], "u").unwrap(), 0);
        assert_eq!(im.get_count_by_uuids_and_user(&[&p_other], "other").unwrap(), 1);
        assert_eq!(im.get_count_by_uuids_and_user(&[&other_u], "u").unwrap(), 1);
        assert_eq!(im.get_count_by_uuids_and_user(&[&p_u_queued, &p_u_null], "u").unwrap(), 0);
        let none: [&str; 0] = [];
        assert_eq!(im.get_count_by_uuids_and_user(&none, "u").unwrap(), 0);
    }
}

/// Rows (p,u,false), (p,other,false), (other,u,false), (p,u,true) and
/// (p,u,NULL, by raw SQL); returns their instance uuids in that order.
fn count_fixture(t: &TestDb, cell: &CellMapping) -> Vec<String> {
    let mut out = Vec::new();
    for (project, user, queued) in [
        ("p", "u", false),
        ("p", "other", false),
        ("other", "u", false),
        ("p", "u", true),
    ] {
        let new = NewInstanceMapping::new(uuid(), project, user)
            .cell(cell)
            .queued_for_delete(queued);
        out.push(
            t.instance_mappings()
                .create(new)
                .unwrap()
                .instance_uuid
                .into_string(),
        );
    }
    let null = uuid();
    raw_instance(t, &null, Some(cell.id), "p", Some("u"), None);
    out.push(null);
    out
}
