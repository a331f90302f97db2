//! `InstanceMappings::save` returns the row as stored, whether the object
//! passed in is the stored row (one checked `UPDATE`, nothing read back) or
//! not (a stale or hand-made object: written by key, then read back). The
//! `save_rechecks` counter tells which path each save took.

mod support;

use cell_mappings::{
    CellMapping, CellMappingUpdate, InstanceMapping, InstanceMappingUpdate, NewCellMapping,
};
use mapping_testkit::{backend_tests, uuid, BackendKind, TestDb};
use support::raw_instance;

/// Saves `update` over `im`, checks that the result is the stored row, and
/// returns it with the number of saves that took the general path.
fn save(
    t: &TestDb,
    im: &InstanceMapping,
    update: &InstanceMappingUpdate,
) -> (InstanceMapping, u64) {
    let before = t.stats().save_rechecks;
    let saved = t.instance_mappings().save(im, update).expect("save");
    let stored = t
        .instance_mappings()
        .get_by_instance_uuid(im.instance_uuid.as_str())
        .expect("read back");
    assert_eq!(saved, stored, "a save returns the row as stored");
    (saved, t.stats().save_rechecks - before)
}

/// A cell with these URLs, and a mapping placed in it.
fn mapping_in_cell_with(
    t: &TestDb,
    transport_url: &str,
    database_connection: &str,
) -> (CellMapping, InstanceMapping) {
    let cell = t
        .cells()
        .create(NewCellMapping::new(
            uuid(),
            transport_url,
            database_connection,
        ))
        .expect("cell");
    let im = t.instance(Some(&cell), "p", "u");
    (cell, im)
}

backend_tests! {
    fn a_fresh_object_is_saved_without_a_read_back(t) {
        let cell = t.cell();
        let other = t.cell();
        let im = t.instance(None, "p", "u");
        // Scheduling, moving, queueing, restoring, unscheduling, and the
        // project and user: each save's object is the previous result.
        let steps = [
            InstanceMappingUpdate::new().cell(Some(&cell)),
            InstanceMappingUpdate::new().queued_for_delete(true),
            InstanceMappingUpdate::new().cell(Some(&other)).queued_for_delete(false),
            InstanceMappingUpdate::new().project_id("p2").user_id("u2"),
            InstanceMappingUpdate::new().cell(None),
            InstanceMappingUpdate::new().cell(Some(&cell)),
        ];
        let mut im = im;
        for update in &steps {
            let (saved, rechecks) = save(t, &im, update);
            assert_eq!(rechecks, 0, "{update:?} over the stored row took the general path");
            im = saved;
        }
        assert_eq!(im.cell_mapping.as_ref(), Some(&cell));
        assert_eq!((im.project_id.as_str(), im.user_id.as_deref()), ("p2", Some("u2")));

        // An object read back (not the result of a save) is the stored row too,
        // and so is one whose cell has been saved (its updated_at set).
        let read = t.instance_mappings().get_by_instance_uuid(im.instance_uuid.as_str()).unwrap();
        assert_eq!(save(t, &read, &InstanceMappingUpdate::new().queued_for_delete(true)).1, 0);
        let renamed = t.cells().save(&cell, &CellMappingUpdate::new().name(Some("renamed"))).unwrap();
        let read = t.instance_mappings().get_by_instance_uuid(im.instance_uuid.as_str()).unwrap();
        assert_eq!(read.cell_mapping.as_ref(), Some(&renamed));
        assert_eq!(save(t, &read, &InstanceMappingUpdate::new().queued_for_delete(false)).1, 0);
    }

    fn rows_with_nulls_are_saved_without_a_read_back(t) {
        // As an old release wrote them: no user, no queued_for_delete, no
        // timestamps.
        let cell = t.cell();
        let u = uuid();
        raw_instance(t, &u, Some(cell.id), "p", None, None);
        let im = t.instance_mappings().get_by_instance_uuid(&u).unwrap();
        assert_eq!((im.user_id.as_deref(), im.queued_for_delete, im.created_at), (None, false, None));
        let (saved, rechecks) = save(t, &im, &InstanceMappingUpdate::new().project_id("q"));
        assert_eq!(rechecks, 0);
        assert_eq!(saved.user_id, None);
    }

    fn a_stale_object_gets_the_stored_row(t) {
        let cell = t.cell();
        let im = t.instance(Some(&cell), "p", "u");
        // Another service moves the instance to another project meanwhile.
        let elsewhere = t.reopen(Default::default());
        elsewhere.instance_mappings().save(&im, &InstanceMappingUpdate::new().project_id("q")).unwrap();
        let (saved, rechecks) = save(t, &im, &InstanceMappingUpdate::new().queued_for_delete(true));
        assert_eq!(rechecks, 1);
        assert_eq!(saved.project_id, "q", "the other service's change is kept and shown");
        assert!(saved.queued_for_delete);

        // The cell was renamed since the object was read.
        let renamed = t.cells().save(&cell, &CellMappingUpdate::new().name(Some("renamed"))).unwrap();
        let (saved, rechecks) = save(t, &saved, &InstanceMappingUpdate::new().queued_for_delete(false));
        assert_eq!(rechecks, 1);
        assert_eq!(saved.cell_mapping, Some(renamed));
    }

    fn a_hand_made_object_gets_the_stored_row(t) {
        let cell = t.cell();
        let im = t.instance(Some(&cell), "p", "u");
        let forgeries: Vec<(&str, InstanceMapping)> = vec![
            ("id", InstanceMapping { id: im.id + 1000, ..im.clone() }),
            ("project in another case", InstanceMapping { project_id: "P".into(), ..im.clone() }),
            ("project with a trailing space", InstanceMapping { project_id: "p ".into(), ..im.clone() }),
            ("user in another case", InstanceMapping { user_id: Some("U".into()), ..im.clone() }),
            ("no user", InstanceMapping { user_id: None, ..im.clone() }),
            ("created_at", InstanceMapping { created_at: None, ..im.clone() }),
            ("updated_at", InstanceMapping {
                updated_at: im.created_at.map(|c| c - chrono::Duration::days(1)),
                ..im.clone()
            }),
            ("no cell", InstanceMapping { cell_mapping: None, ..im.clone() }),
            ("cell name", InstanceMapping {
                cell_mapping: Some(CellMapping { name: Some("made-up".into()), ..cell.clone() }),
                ..im.clone()
            }),
            ("cell name in another case", InstanceMapping {
                cell_mapping: Some(CellMapping {
                    name: cell.name.as_ref().map(|n| n.to_uppercase()),
                    ..cell.clone()
                }),
                ..im.clone()
            }),
            ("cell URL", InstanceMapping {
                cell_mapping: Some(CellMapping { transport_url: "made-up://".into(), ..cell.clone() }),
                ..im.clone()
            }),
            ("cell disabled", InstanceMapping {
                cell_mapping: Some(CellMapping { disabled: true, ..cell.clone() }),
                ..im.clone()
            }),
        ];
        for (what, forged) in forgeries {
            let (saved, rechecks) = save(t, &forged, &InstanceMappingUpdate::new().queued_for_delete(true));
            assert_eq!(rechecks, 1, "a forged {what} took the fast path");
            assert_eq!(saved.id, im.id, "{what}");
            assert_eq!(saved.project_id, "p", "{what}");
            assert_eq!(saved.user_id.as_deref(), Some("u"), "{what}");
            assert_eq!(saved.cell_mapping.as_ref(), Some(&cell), "{what}");
            t.instance_mappings().save(&saved, &InstanceMappingUpdate::new().queued_for_delete(false)).unwrap();
        }

        // The update's own cell, dressed up: the stored cell is returned.
        let other = t.cell();
        let dressed = CellMapping { name: Some("made-up".into()), ..other.clone() };
        let (saved, rechecks) = save(t, &im, &InstanceMappingUpdate::new().cell(Some(&dressed)));
        assert_eq!(rechecks, 1);
        assert_eq!(saved.cell_mapping, Some(other));
    }

    fn cells_with_non_ascii_urls_are_compared_exactly(t) {
        // The servers compare the URLs by digest of their UTF-8 bytes.
        let (cell, im) = mapping_in_cell_with(
            t, "rabbit://nova:pässwörd€@mq/", "mysql+pymysql://nova:ü@db/nova",
        );
        let (saved, rechecks) = save(t, &im, &InstanceMappingUpdate::new().queued_for_delete(true));
        assert_eq!(rechecks, 0);
        assert_eq!(saved.cell_mapping, Some(cell.clone()));
        // One character different: the stored cell is returned.
        let forged = InstanceMapping {
            cell_mapping: Some(CellMapping { transport_url: "rabbit://nova:passwörd€@mq/".into(), ..cell.clone() }),
            ..saved
        };
        let (saved, rechecks) = save(t, &forged, &InstanceMappingUpdate::new().queued_for_delete(false));
        assert_eq!(rechecks, 1);
        assert_eq!(saved.cell_mapping, Some(cell));
    }

    fn a_templated_cell_is_read_back(t) {
        // Stored raw, read expanded: not comparable in SQL.
        let (cell, im) = mapping_in_cell_with(t, "rabbit://{username}:{password}@mq/", "sqlite://");
        let (saved, rechecks) = save(t, &im, &InstanceMappingUpdate::new().queued_for_delete(true));
        assert_eq!(rechecks, 1);
        assert_eq!(saved.cell_mapping, Some(cell));
    }

    fn a_row_written_in_another_spelling_is_read_back(t) {
        // An upper-case uuid as some tool might have written it: the key is
        // the canonical form, which matches the row only where the
        // database compares text without case (MySQL).
        let upper = uuid().to_uppercase();
        raw_instance(t, &upper, None, "p", Some("u"), Some(false));
        let im = t.instance_mappings().get_by_instance_uuid(&upper);
        if t.backend() != BackendKind::Mysql {
            assert!(im.is_err(), "found by its canonical form on {:?}", t.backend());
            return;
        }
        let im = im.unwrap();
        assert_eq!(im.instance_uuid.as_str(), upper, "read as stored");
        let saved = t.instance_mappings().save(&im, &InstanceMappingUpdate::new().project_id("q")).unwrap();
        assert_eq!(saved.instance_uuid.as_str(), upper);
        assert_eq!(saved.project_id, "q");
    }
}
