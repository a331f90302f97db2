//! Rows that are not what they seem (docs/tables.md): Nova's `map_instances` marker
//! and rows from old releases, written by raw SQL as Nova would leave them.

mod support;

use cell_mappings::{CellMapping, Error, InstanceCounts, InstanceMapping, Uuid};
use mapping_testkit::{backend_tests, uuid, TestDb};
use support::{raw_instance, sorted};

const MARKER: &str = "INSTANCE_MIGRATION_MARKER";

/// Writes the marker row `nova-manage cell_v2 map_instances` keeps: a uuid
/// with spaces for hyphens, project and user `INSTANCE_MIGRATION_MARKER`, no
/// cell, queued_for_delete false (what Nova's create writes). Returns its
/// instance_uuid.
fn marker(t: &TestDb) -> String {
    let spaced = uuid().replace('-', " ");
    raw_instance(t, &spaced, None, MARKER, Some(MARKER), Some(false));
    spaced
}

fn uuids_of(ims: &[InstanceMapping]) -> Vec<String> {
    sorted(ims.iter().map(|im| im.instance_uuid.clone()))
}

/// Everything the list and count operations say about projects p and q and
/// the two cells, in a comparable form.
#[derive(Debug, PartialEq)]
struct View {
    by_project: Vec<Vec<String>>,
    by_cell: Vec<Vec<String>>,
    counts: Vec<InstanceCounts>,
    cells_of_project: Vec<Vec<CellMapping>>,
    not_deleted: Vec<Vec<String>>,
    all_cells: Vec<CellMapping>,
}

fn view(t: &TestDb, a: &CellMapping, b: &CellMapping) -> View {
    let mut im = t.instance_mappings();
    let mut cells = t.cells();
    View {
        by_project: ["p", "q"]
            .iter()
            .map(|p| uuids_of(&im.get_by_project_id(p).unwrap()))
            .collect(),
        by_cell: [a, b]
            .iter()
            .map(|c| uuids_of(&im.get_by_cell_id(c.id).unwrap()))
            .collect(),
        counts: vec![
            im.get_counts("p", Some("u")).unwrap(),
            im.get_counts("q", None).unwrap(),
            im.get_counts("p", Some(MARKER)).unwrap(),
        ],
        cells_of_project: ["p", "q"]
            .iter()
            .map(|p| cells.get_by_project_id(p).unwrap())
            .collect(),
        not_deleted: [(a, Some("p")), (a, None), (b, Some("q")), (b, None)]
            .iter()
            .map(|(c, p)| {
                uuids_of(
                    &im.get_not_deleted_by_cell_and_project(c.uuid, *p, None)
                        .unwrap(),
                )
            })
            .collect(),
        all_cells: cells.get_all().unwrap(),
    }
}

backend_tests! {
    fn the_marker_does_not_disturb_other_projects(t) {
        let a = t.cell();
        let b = t.cell();
        t.instance(Some(&a), "p", "u");
        t.instance(Some(&a), "p", "v");
        t.instance(Some(&b), "p", "u");
        t.instance(Some(&b), "q", "u");
        t.instance(None, "q", "u");
        let before = view(t, &a, &b);
        let spaced = marker(t);
        let after = view(t, &a, &b);
        assert_eq!(before, after);
        assert_eq!(after.counts[0], InstanceCounts { project: 3, user: Some(2) });
        assert!(!after.by_cell.iter().flatten().any(|u| *u == spaced));
        assert!(!after.not_deleted.iter().flatten().any(|u| *u == spaced));
    }

    fn the_marker_project_reads_faithfully(t) {
        let cell = t.cell();
        t.instance(Some(&cell), "p", "u");
        let spaced = marker(t);
        let got = t.instance_mappings().get_by_project_id(MARKER).unwrap();
        assert_eq!(got.len(), 1);
        let m = &got[0];
        assert_eq!(m.instance_uuid, spaced, "instance_uuid as stored");
        assert_eq!(m.project_id, MARKER);
        assert_eq!(m.user_id.as_deref(), Some(MARKER));
        assert_eq!(m.cell_mapping, None);
        assert!(!m.queued_for_delete);
        assert!(t.cells().get_by_project_id(MARKER).unwrap().is_empty());
        assert_eq!(
            t.instance_mappings().get_counts(MARKER, Some(MARKER)).unwrap(),
            InstanceCounts { project: 1, user: Some(1) }
        );
    }

    fn the_spaced_uuid_is_a_clear_input_error(t) {
        let spaced = marker(t);
        let err = t.instance_mappings().get_by_instance_uuid(&spaced).unwrap_err();
        match &err {
            Error::InvalidInput { field, reason } => {
                assert_eq!(*field, "instance_uuid");
                assert!(reason.contains(&spaced), "{reason}");
            }
            e => panic!("{e:?}"),
        }
        assert!(err.to_string().contains("instance_uuid"), "{err}");
        assert!(matches!(
            t.instance_mappings().destroy(&spaced),
            Err(Error::InvalidInput { field: "instance_uuid", .. })
        ));
        assert!(matches!(
            t.instance_mappings().get_count_by_uuids_and_user(&[&spaced], MARKER),
            Err(Error::InvalidInput { field: "instance_uuid", .. })
        ));
        // Nothing was removed by the refused calls.
        assert_eq!(t.instance_mappings().get_by_project_id(MARKER).unwrap().len(), 1);
    }

    fn bulk_operations_on_valid_uuids_ignore_the_marker(t) {
        let cell = t.cell();
        let spaced = marker(t);
        let ims = [t.instance(Some(&cell), "p", "u"), t.instance(None, "p", "u")];
        let asked: Vec<String> = ims.iter().map(|im| im.instance_uuid.to_string()).collect();
        let got = t.instance_mappings().get_by_instance_uuids(&asked).unwrap();
        assert_eq!(uuids_of(&got), sorted(asked.clone()));
        assert_eq!(t.instance_mappings().get_count_by_uuids_and_user(&asked, "u").unwrap(), 2);
        assert_eq!(t.instance_mappings().destroy_bulk(&asked).unwrap(), 2);
        let left = t.instance_mappings().get_by_project_id(MARKER).unwrap();
        assert_eq!(uuids_of(&left), vec![spaced], "the marker stays");
    }

    fn the_marker_api_reads_and_writes_nova_s_row(t) {
        let mut ims = t.instance_mappings();
        assert_eq!(ims.marker().unwrap(), None);
        // A marker written by nova-manage is read as a typed uuid.
        let spaced = marker(t);
        let want: Uuid = spaced.replace(' ', "-").parse().unwrap();
        assert_eq!(ims.marker().unwrap(), Some(want));
        // Writing replaces it with exactly what nova-manage writes.
        let next = Uuid::new_v4();
        ims.set_marker(next).unwrap();
        assert_eq!(ims.marker().unwrap(), Some(next));
        let rows = ims.get_by_project_id(MARKER).unwrap();
        assert_eq!(rows.len(), 1);
        assert_eq!(rows[0].instance_uuid, next.to_string().replace('-', " "));
        assert_eq!(rows[0].user_id.as_deref(), Some(MARKER));
        assert_eq!(rows[0].cell_mapping, None);
        assert_eq!(support::stored_bool(t, "instance_mappings", "queued_for_delete",
            &format!("project_id = '{MARKER}'")), "false");
        // The text forms of a uuid are accepted too.
        ims.set_marker(next.simple().to_string().as_str()).unwrap();
        assert_eq!(ims.marker().unwrap(), Some(next));
        assert_eq!(ims.delete_marker().unwrap(), 1);
        assert_eq!(ims.marker().unwrap(), None);
        assert_eq!(ims.delete_marker().unwrap(), 0);
        // A marker that names no uuid is a bad row, not a panic.
        raw_instance(t, "not a uuid", None, MARKER, Some(MARKER), Some(false));
        assert!(matches!(ims.marker(), Err(Error::BadRow { table: "instance_mappings", .. })));
        assert!(matches!(
            ims.set_marker("nope"),
            Err(Error::InvalidInput { field: "marker", .. })
        ));
    }

    fn marker_writes_join_a_caller_s_transaction(t) {
        let next = Uuid::new_v4();
        let r: Result<(), Error> = t.transaction(|tx| {
            tx.instance_mappings().set_marker(next)?;
            assert_eq!(tx.instance_mappings().marker()?, Some(next));
            Err(Error::InvalidInput { field: "test", reason: "roll back".into() })
        });
        assert!(r.is_err());
        assert_eq!(t.instance_mappings().marker().unwrap(), None, "rolled back");
    }

    fn old_rows_with_nulls_read_fine_everywhere(t) {
        let cell = t.cell();
        let (no_user, no_queued, neither) = (uuid(), uuid(), uuid());
        raw_instance(t, &no_user, Some(cell.id), "p", None, Some(false));
        raw_instance(t, &no_queued, Some(cell.id), "p", Some("u"), None);
        raw_instance(t, &neither, None, "p", None, None);
        marker(t);
        let all = sorted([no_user.clone(), no_queued.clone(), neither.clone()]);

        let listed = t.instance_mappings().get_by_project_id("p").unwrap();
        assert_eq!(uuids_of(&listed), all);
        for im in &listed {
            assert!(!im.queued_for_delete, "NULL reads as false");
            assert_eq!(im.user_id.is_none(), im.instance_uuid != no_queued);
            assert_eq!(im.cell_mapping.is_some(), im.instance_uuid != neither);
        }
        assert_eq!(uuids_of(&t.instance_mappings().get_by_instance_uuids(&all).unwrap()), all);
        assert_eq!(
            uuids_of(&t.instance_mappings().get_by_cell_id(cell.id).unwrap()),
            sorted([no_user.clone(), no_queued.clone()])
        );
        assert_eq!(
            uuids_of(&t.instance_mappings().get_not_deleted_by_cell_and_project(cell.uuid, Some("p"), None).unwrap()),
            sorted([no_user.clone(), no_queued.clone()]),
            "NULL queued_for_delete is not deleted"
        );
        // Counting: the NULL-queued row is not counted, the NULL-user row
        // counts for the project but for no user.
        assert_eq!(
            t.instance_mappings().get_counts("p", Some("u")).unwrap(),
            InstanceCounts { project: 1, user: Some(0) }
        );
        assert_eq!(t.cells().get_by_project_id("p").unwrap(), vec![cell]);
        assert_eq!(t.instance_mappings().destroy_bulk(&all).unwrap(), 3);
    }
}
