//! `CellMapping` and `CellMappingList` (docs/tables.md) on every backend compiled in.

mod support;

use cell_mappings::{CellMappingUpdate, Error, NewCellMapping};
use mapping_testkit::{backend_tests, new_cell, new_host, uuid};
use support::string;

backend_tests! {
    fn every_field_round_trips(t) {
        let new = NewCellMapping::new(
            uuid(),
            "rabbit://nova:s3cret@mq.example.org:5672/cell1",
            "postgresql+psycopg2://nova:s3cret@db.example.org/nova_cell1",
        )
        .name("cell1 — Zürich")
        .disabled(true);
        let created = t.cells().create(new.clone()).unwrap();
        assert!(created.id > 0);
        assert_eq!(created.uuid.to_string(), new.uuid);
        assert!(created.created_at.is_some());
        assert_eq!(created.updated_at, None);

        let got = t.cells().get_by_uuid(&new.uuid).unwrap();
        assert_eq!(got, created);
        assert_eq!(got.id, created.id);
        assert_eq!(got.name.as_deref(), Some("cell1 — Zürich"));
        assert_eq!(got.transport_url, new.transport_url);
        assert_eq!(got.database_connection, new.database_connection);
        assert!(got.disabled);

        // An unnamed, enabled cell keeps "no name" distinct from "".
        let plain = t.cells().create(NewCellMapping::new(uuid(), "none:///", "sqlite://")).unwrap();
        let got = t.cells().get_by_uuid(plain.uuid).unwrap();
        assert_eq!(got.name, None);
        assert!(!got.disabled);
        assert_eq!(got.identity(), got.uuid.to_string());
        assert_eq!(got, plain);
    }

    fn unknown_uuid_is_not_found(t) {
        t.cell();
        let u = uuid();
        match t.cells().get_by_uuid(&u) {
            Err(Error::CellMappingNotFound { uuid }) => assert_eq!(uuid, u),
            other => panic!("{other:?}"),
        }
    }

    fn save_changes_only_what_changed(t) {
        let mut cell = t.cell();
        let bystander = t.cell();
        let before = cell.clone();

        cell = t.cells()
            .save(&cell, &CellMappingUpdate::new().transport_url("rabbit://other:5672/"))
            .unwrap();
        let got = t.cells().get_by_uuid(cell.uuid).unwrap();
        assert_eq!(got, cell, "the object reflects what is stored");
        assert_eq!(got.transport_url, "rabbit://other:5672/");
        assert!(got.updated_at.is_some());
        let mut expected = before.clone();
        expected.transport_url = "rabbit://other:5672/".into();
        expected.updated_at = got.updated_at;
        assert_eq!(got, expected, "nothing else changed");

        // A stale copy that changes one field does not write back the others.
        let stale = before.clone();
        t.cells().save(&stale, &CellMappingUpdate::new().disabled(true)).unwrap();
        let got = t.cells().get_by_uuid(cell.uuid).unwrap();
        assert!(got.disabled);
        assert_eq!(got.transport_url, "rabbit://other:5672/", "the stale URL was not written");
        assert_eq!(got.name, before.name);
        assert_eq!(got.database_connection, before.database_connection);
        assert_eq!(got.created_at, before.created_at);

        // The save is keyed by uuid: the other cell is untouched.
        assert_eq!(t.cells().get_by_uuid(bystander.uuid).unwrap(), bystander);
    }

    fn clearing_the_name_stores_null(t) {
        let mut cell = t.cell();
        cell = t.cells().save(&cell, &CellMappingUpdate::new().name(None)).unwrap();
        assert_eq!(cell.name, None);
        assert_eq!(t.cells().get_by_uuid(cell.uuid).unwrap().name, None);
        let stored = string(t, &format!("SELECT name AS v FROM cell_mappings WHERE uuid = '{}'", cell.uuid));
        assert_eq!(stored, None);
    }

    fn empty_save_writes_nothing(t) {
        let mut cell = t.cell();
        cell = t.cells().save(&cell, &CellMappingUpdate::new()).unwrap();
        let got = t.cells().get_by_uuid(cell.uuid).unwrap();
        assert_eq!(got.updated_at, None, "an empty save must not touch updated_at");
        assert_eq!(got, cell);
        // It still reports a cell that is gone.
        t.cells().destroy(cell.uuid).unwrap();
        let err = t.cells().save(&cell, &CellMappingUpdate::new()).unwrap_err();
        assert!(matches!(err, Error::CellMappingNotFound { .. }), "{err:?}");
    }

    fn destroy_then_get_is_not_found(t) {
        let cell = t.cell();
        let other = t.cell();
        t.cells().destroy(cell.uuid).unwrap();
        match t.cells().get_by_uuid(cell.uuid) {
            Err(Error::CellMappingNotFound { uuid }) => assert_eq!(uuid, cell.uuid.to_string()),
            r => panic!("{r:?}"),
        }
        assert_eq!(t.cells().get_by_uuid(other.uuid).unwrap(), other);
    }

    fn destroy_unknown_is_not_found(t) {
        let u = uuid();
        match t.cells().destroy(&u) {
            Err(Error::CellMappingNotFound { uuid }) => assert_eq!(uuid, u),
            r => panic!("{r:?}"),
        }
    }

    fn destroy_of_a_cell_in_use_is_refused(t) {
        let cell = t.cell();
        t.instance(Some(&cell), "p", "u");
        t.instance(Some(&cell), "p", "u");
        t.host_mappings().create(new_host(&cell)).unwrap();
        match t.cells().destroy(cell.uuid) {
            Err(Error::CellMappingInUse { uuid, instance_mappings, host_mappings }) => {
                assert_eq!(uuid, cell.uuid.to_string());
                assert_eq!((instance_mappings, host_mappings), (2, 1));
            }
            r => panic!("{r:?}"),
        }
        assert_eq!(t.cells().get_by_uuid(cell.uuid).unwrap(), cell);
    }

    fn list_all_in_id_order(t) {
        assert!(t.cells().get_all().unwrap().is_empty());
        let a = t.cell();
        let b = t.cells().create(new_cell().disabled(true)).unwrap();
        let c = t.cell();
        let null = raw_cell(t, "NULL");
        let all = t.cells().get_all().unwrap();
        assert_eq!(ids(&all), vec![a.id, b.id, c.id, null]);
        assert_eq!(all.first(), Some(&a));
        assert_eq!(all.get(1), Some(&b));
        assert!(!all.get(3).unwrap().disabled, "NULL disabled reads as enabled");
    }

    fn list_by_disabled_in_id_order(t) {
        let on1 = t.cell();
        let off1 = t.cells().create(new_cell().disabled(true)).unwrap();
        let null = raw_cell(t, "NULL");
        let off2 = raw_cell(t, t.sql_bool(true));
        let on2 = raw_cell(t, t.sql_bool(false));
        let on3 = t.cell();

        let disabled = t.cells().get_by_disabled(true).unwrap();
        assert_eq!(ids(&disabled), vec![off1.id, off2]);
        assert!(disabled.iter().all(|c| c.disabled));
        assert_eq!(disabled.first(), Some(&off1));

        let enabled = t.cells().get_by_disabled(false).unwrap();
        assert_eq!(ids(&enabled), vec![on1.id, null, on2, on3.id], "NULL counts as enabled");
        assert!(enabled.iter().all(|c| !c.disabled));
    }

    fn cells_of_a_project_in_one_cell(t) {
        let cell = t.cell();
        let elsewhere = t.cell();
        for _ in 0..5 {
            t.instance(Some(&cell), "project-one", "u");
        }
        t.instance(Some(&elsewhere), "project-other", "u");
        let cells = t.cells().get_by_project_id("project-one").unwrap();
        assert_eq!(cells, vec![cell.clone()], "five mappings give one cell, once");
        assert_eq!(t.cells().get_by_project_id("project-other").unwrap(), vec![elsewhere]);
        assert!(t.cells().get_by_project_id("no-such-project").unwrap().is_empty());
    }

    fn cells_of_a_project_in_two_cells_and_unscheduled(t) {
        let a = t.cell();
        let unused = t.cell();
        let b = t.cell();
        t.instance(Some(&b), "p", "u1");
        t.instance(Some(&a), "p", "u1");
        t.instance(Some(&a), "p", "u2");
        t.instance(None, "p", "u1");
        t.instance(Some(&unused), "q", "u1");
        let cells = t.cells().get_by_project_id("p").unwrap();
        assert_eq!(cells, vec![a, b], "exactly the two cells, the unscheduled mapping adds none");
        assert!(!cells.iter().any(|c| c.id == unused.id));

        // A project whose only mapping is unscheduled has no cells.
        t.instance(None, "only-unscheduled", "u");
        assert!(t.cells().get_by_project_id("only-unscheduled").unwrap().is_empty());
    }
}

/// Inserts a cell by raw SQL with `disabled` given as a SQL literal; returns its id.
fn raw_cell(t: &mapping_testkit::TestDb, disabled: &str) -> i32 {
    let u = uuid();
    t.exec(&format!(
        "INSERT INTO cell_mappings (uuid, name, transport_url, database_connection, disabled) \
         VALUES ('{u}', 'raw', 'none:///', 'sqlite://', {disabled})"
    ));
    t.cells().get_by_uuid(&u).unwrap().id
}

fn ids(cells: &[cell_mappings::CellMapping]) -> Vec<i32> {
    cells.iter().map(|c| c.id).collect()
}
