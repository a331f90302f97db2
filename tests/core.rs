//! The core object operations (docs/tables.md), on every backend compiled in.

use cell_mappings::{
    CellMappingUpdate, Error, HostMappingUpdate, InstanceMappingUpdate, NewCellMapping,
    NewInstanceMapping, CELL0_UUID,
};
use mapping_testkit::{backend_tests, new_cell, new_host, new_instance, uuid};

backend_tests! {
    fn cell_round_trips(t) {
        let new = new_cell().disabled(true);
        let created = t.cells().create(new.clone()).unwrap();
        assert!(created.id > 0);
        let got = t.cells().get_by_uuid(&new.uuid).unwrap();
        assert_eq!(got, created);
        assert_eq!(got.name, new.name);
        assert_eq!(got.transport_url, new.transport_url);
        assert_eq!(got.database_connection, new.database_connection);
        assert!(got.disabled);
        assert!(got.created_at.is_some());
        assert!(got.updated_at.is_none());
    }

    fn cell_defaults_to_enabled(t) {
        let cell = t.cell();
        assert!(!t.cells().get_by_uuid(cell.uuid).unwrap().disabled);
    }

    fn unknown_cell_is_not_found(t) {
        let u = uuid();
        match t.cells().get_by_uuid(&u) {
            Err(Error::CellMappingNotFound { uuid }) => assert_eq!(uuid, u),
            other => panic!("{other:?}"),
        }
    }

    fn duplicate_cell_exists(t) {
        let new = new_cell();
        t.cells().create(new.clone()).unwrap();
        match t.cells().create(new.clone()) {
            Err(Error::CellMappingExists { uuid }) => assert_eq!(uuid, new.uuid),
            other => panic!("{other:?}"),
        }
    }

    fn cell_save_changes_only_what_changed(t) {
        let mut cell = t.cell();
        let before = cell.clone();
        cell = t.cells()
            .save(&cell, &CellMappingUpdate::new().disabled(true).name(Some("renamed")))
            .unwrap();
        let got = t.cells().get_by_uuid(cell.uuid).unwrap();
        assert_eq!(got, cell);
        assert!(got.disabled);
        assert_eq!(got.name.as_deref(), Some("renamed"));
        assert_eq!(got.transport_url, before.transport_url);
        assert_eq!(got.database_connection, before.database_connection);
        assert_eq!(got.created_at, before.created_at);
        assert!(got.updated_at.is_some());
    }

    fn cell_save_of_missing_cell_is_not_found(t) {
        let cell = t.cell();
        t.cells().destroy(cell.uuid).unwrap();
        let err = t.cells().save(&cell, &CellMappingUpdate::new().disabled(true)).unwrap_err();
        assert!(matches!(err, Error::CellMappingNotFound { .. }), "{err:?}");
    }

    fn cell_destroy(t) {
        let cell = t.cell();
        t.cells().destroy(cell.uuid).unwrap();
        assert!(t.cells().get_by_uuid(cell.uuid).unwrap_err().is_not_found());
        assert!(matches!(t.cells().destroy(cell.uuid), Err(Error::CellMappingNotFound { .. })));
    }

    fn cell0_identity(t) {
        let cell0 = t
            .cells()
            .create(NewCellMapping::new(CELL0_UUID, "none:///", "sqlite://").name("cell0"))
            .unwrap();
        assert!(cell0.is_cell0());
        assert_eq!(cell0.identity(), format!("{CELL0_UUID}(cell0)"));
        let mut unnamed = t.cell();
        unnamed = t.cells().save(&unnamed, &CellMappingUpdate::new().name(None)).unwrap();
        let got = t.cells().get_by_uuid(unnamed.uuid).unwrap();
        assert_eq!(got.identity(), got.uuid.to_string());
        assert!(!got.is_cell0());
    }

    fn instance_mapping_round_trips_with_cell(t) {
        let cell = t.cell();
        let new = new_instance("project-a", "user-a").cell(&cell);
        let created = t.instance_mappings().create(new.clone()).unwrap();
        let got = t.instance_mappings().get_by_instance_uuid(&new.instance_uuid).unwrap();
        assert_eq!(got, created);
        assert_eq!(got.cell_mapping.as_ref(), Some(&cell));
        assert_eq!(got.project_id, "project-a");
        assert_eq!(got.user_id.as_deref(), Some("user-a"));
        assert!(!got.queued_for_delete);
    }

    fn unknown_instance_mapping_is_not_found(t) {
        let u = uuid();
        match t.instance_mappings().get_by_instance_uuid(&u) {
            Err(Error::InstanceMappingNotFound { instance_uuid }) => assert_eq!(instance_uuid, u),
            other => panic!("{other:?}"),
        }
    }

    fn duplicate_instance_mapping_exists(t) {
        let new = new_instance("p", "u");
        t.instance_mappings().create(new.clone()).unwrap();
        assert!(matches!(
            t.instance_mappings().create(new),
            Err(Error::InstanceMappingExists { .. })
        ));
    }

    fn unscheduled_then_scheduled(t) {
        let cell = t.cell();
        let mut im = t.instance(None, "p", "u");
        assert!(im.cell_mapping.is_none());
        let got = t.instance_mappings().get_by_instance_uuid(&im.instance_uuid).unwrap();
        assert!(got.cell_mapping.is_none());
        im = t.instance_mappings()
            .save(&im, &InstanceMappingUpdate::new().cell(Some(&cell)))
            .unwrap();
        let got = t.instance_mappings().get_by_instance_uuid(&im.instance_uuid).unwrap();
        assert_eq!(got.cell_mapping.as_ref(), Some(&cell));
        assert_eq!(got, im);
        assert!(got.updated_at.is_some());
    }

    fn save_after_destroy_is_not_found(t) {
        let im = t.instance(None, "p", "u");
        t.instance_mappings().destroy(&im.instance_uuid).unwrap();
        let err = t
            .instance_mappings()
            .save(&im, &InstanceMappingUpdate::new().queued_for_delete(true))
            .unwrap_err();
        assert!(matches!(err, Error::InstanceMappingNotFound { .. }), "{err:?}");
    }

    fn instance_destroy(t) {
        let im = t.instance(None, "p", "u");
        t.instance_mappings().destroy(&im.instance_uuid).unwrap();
        assert!(t.instance_mappings().get_by_instance_uuid(&im.instance_uuid).unwrap_err().is_not_found());
        assert!(matches!(
            t.instance_mappings().destroy(&im.instance_uuid),
            Err(Error::InstanceMappingNotFound { .. })
        ));
    }

    fn host_mapping_round_trips(t) {
        let cell = t.cell();
        let new = new_host(&cell);
        let created = t.host_mappings().create(new.clone()).unwrap();
        let got = t.host_mappings().get_by_host(&new.host).unwrap();
        assert_eq!(got, created);
        assert_eq!(got.cell_mapping, cell);
    }

    fn host_mapping_errors(t) {
        let cell = t.cell();
        assert!(matches!(t.host_mappings().get_by_host("nowhere"), Err(Error::HostMappingNotFound { .. })));
        assert!(matches!(t.host_mappings().destroy("nowhere"), Err(Error::HostMappingNotFound { .. })));
        let new = new_host(&cell);
        t.host_mappings().create(new.clone()).unwrap();
        match t.host_mappings().create(new.clone()) {
            Err(Error::HostMappingExists { host }) => assert_eq!(host, new.host),
            other => panic!("{other:?}"),
        }
    }

    fn host_mapping_moves_and_is_destroyed(t) {
        let a = t.cell();
        let b = t.cell();
        let mut hm = t.host(&a);
        hm = t.host_mappings().save(&hm, &HostMappingUpdate::new().cell(&b)).unwrap();
        let got = t.host_mappings().get_by_host(&hm.host).unwrap();
        assert_eq!(got.cell_mapping, b);
        assert_eq!(got, hm);
        t.host_mappings().destroy(&hm.host).unwrap();
        assert!(t.host_mappings().get_by_host(&hm.host).unwrap_err().is_not_found());
    }

    fn transaction_commits_together(t) {
        let cell_new = new_cell();
        let im_new = new_instance("p", "u");
        let (cell_uuid, im_uuid) = (cell_new.uuid.clone(), im_new.instance_uuid.clone());
        t.transaction::<_, cell_mappings::Error, _>(|tx| {
            let cell = tx.cells().create(cell_new.clone())?;
            tx.instance_mappings().create(im_new.clone().cell(&cell))?;
            Ok(())
        })
        .unwrap();
        let im = t.instance_mappings().get_by_instance_uuid(&im_uuid).unwrap();
        assert_eq!(im.cell_mapping.unwrap().uuid.to_string(), cell_uuid);
    }

    fn transaction_rolls_back_on_error(t) {
        let cell_new = new_cell();
        let existing = t.instance(None, "p", "u");
        let err = t
            .transaction::<_, cell_mappings::Error, _>(|tx| {
                tx.cells().create(cell_new.clone())?;
                // Fails: the uuid is taken, so the cell must not stay either.
                tx.instance_mappings()
                    .create(NewInstanceMapping::new(existing.instance_uuid.clone(), "p", "u"))?;
                Ok(())
            })
            .unwrap_err();
        assert!(matches!(err, Error::InstanceMappingExists { .. }), "{err:?}");
        assert!(t.cells().get_by_uuid(&cell_new.uuid).unwrap_err().is_not_found());
    }
}
