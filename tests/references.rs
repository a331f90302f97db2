//! Cell references are checked against the stored row on every backend, the
//! objects returned are the rows as stored, and a failed statement inside a
//! caller's transaction leaves the transaction usable.

mod support;

use cell_mappings::{
    CellMapping, Error, HostMappingUpdate, InstanceMappingUpdate, NewCellMapping, NewHostMapping,
    NewInstanceMapping, Uuid,
};
use mapping_testkit::{backend_tests, new_host, new_instance, BackendKind, TestDb};
use support::snapshot;

/// Asserts that `r` is `CellMappingNotFound` naming `cell`.
fn refused<T: std::fmt::Debug>(r: Result<T, Error>, cell: &CellMapping) {
    match r {
        Err(Error::CellMappingNotFound { uuid }) => assert_eq!(uuid, cell.uuid.to_string()),
        other => panic!(
            "expected CellMappingNotFound for {}, got {other:?}",
            cell.uuid
        ),
    }
}

/// Every write that names `cell` is refused and nothing is written.
fn every_reference_is_refused(t: &TestDb, cell: &CellMapping) {
    let good = t.cell();
    let im = t.instance(Some(&good), "p", "u");
    let hm = t.host(&good);
    let before = snapshot(t);
    refused(
        t.instance_mappings()
            .create(new_instance("p", "u").cell(cell)),
        cell,
    );
    refused(
        t.instance_mappings().create_bulk(vec![
            new_instance("p", "u").cell(cell),
            new_instance("p", "u"),
        ]),
        cell,
    );
    refused(
        t.instance_mappings()
            .save(&im, &InstanceMappingUpdate::new().cell(Some(cell))),
        cell,
    );
    refused(t.host_mappings().create(new_host(cell)), cell);
    refused(
        t.host_mappings()
            .save(&hm, &HostMappingUpdate::new().cell(cell)),
        cell,
    );
    assert_eq!(snapshot(t), before, "a refused reference wrote something");
}

backend_tests! {
    fn a_stale_cell_whose_id_was_reused_is_refused(t) {
        let _older = t.cell();
        let stale = t.cell();
        t.cells().destroy(stale.uuid).unwrap();
        let newer = t.cell();
        if t.backend() == BackendKind::Sqlite {
            // Nova's SQLite schema has no AUTOINCREMENT: the id comes back.
            assert_eq!(newer.id, stale.id, "the id is reused on SQLite");
        }
        every_reference_is_refused(t, &stale);
        assert!(t.instance_mappings().get_by_cell_id(newer.id).unwrap().is_empty());
        assert!(t.host_mappings().get_by_cell_id(newer.id).unwrap().is_empty());
    }

    fn a_forged_cell_is_refused(t) {
        let real = t.cell();
        // A real id with a made-up uuid.
        let forged = CellMapping { uuid: Uuid::new_v4(), ..real.clone() };
        every_reference_is_refused(t, &forged);
        // A real uuid with another cell's id.
        let other = t.cell();
        let swapped = CellMapping { id: other.id, ..real.clone() };
        every_reference_is_refused(t, &swapped);
    }

    fn returned_objects_are_the_stored_rows(t) {
        let real = t.cell();
        // Real id and uuid but made-up other fields: accepted, and the
        // returned objects carry the cell as stored.
        let dressed = CellMapping {
            name: Some("made-up".into()),
            transport_url: "made-up://".into(),
            disabled: !real.disabled,
            ..real.clone()
        };
        let im = t.instance_mappings().create(new_instance("p", "u").cell(&dressed)).unwrap();
        assert_eq!(im.cell_mapping.as_ref(), Some(&real));
        assert_eq!(t.instance_mappings().get_by_instance_uuid(&im.instance_uuid).unwrap(), im);
        let hm = t.host_mappings().create(new_host(&dressed)).unwrap();
        assert_eq!(hm.cell_mapping, real);
        assert_eq!(t.host_mappings().get_by_host(&hm.host).unwrap(), hm);

        let other = t.cell();
        let moved = t.instance_mappings()
            .save(&im, &InstanceMappingUpdate::new().cell(Some(&other)).queued_for_delete(true))
            .unwrap();
        assert_eq!(moved, t.instance_mappings().get_by_instance_uuid(&im.instance_uuid).unwrap());
        assert_eq!(im.cell_mapping.as_ref(), Some(&real), "the argument is left as it was");
        let moved = t.host_mappings().save(&hm, &HostMappingUpdate::new().cell(&other)).unwrap();
        assert_eq!(moved, t.host_mappings().get_by_host(&hm.host).unwrap());
        assert_eq!(moved.cell_mapping, other);
    }

    fn a_transaction_carries_on_after_a_refused_statement(t) {
        let cell = t.cell();
        let taken = t.instance(Some(&cell), "p", "u");
        let forged = CellMapping { uuid: Uuid::new_v4(), ..cell.clone() };
        let fresh = new_instance("p", "u").cell(&cell);
        let fresh_uuid = fresh.instance_uuid.clone();
        let host = t.host(&cell);
        t.transaction::<_, Error, _>(|tx| {
            let dup = NewInstanceMapping::new(taken.instance_uuid.as_str(), "p", "u");
            match tx.instance_mappings().create(dup) {
                Err(Error::InstanceMappingExists { instance_uuid }) => {
                    assert_eq!(instance_uuid, taken.instance_uuid)
                }
                other => panic!("{other:?}"),
            }
            assert!(matches!(
                tx.instance_mappings().create(new_instance("p", "u").cell(&forged)),
                Err(Error::CellMappingNotFound { .. })
            ));
            assert!(matches!(
                tx.host_mappings().create(NewHostMapping::new(host.host.as_str(), &cell)),
                Err(Error::HostMappingExists { .. })
            ));
            assert!(matches!(
                tx.cells().create(NewCellMapping::new(cell.uuid.to_string(), "", "")),
                Err(Error::CellMappingExists { .. })
            ));
            assert!(matches!(
                tx.instance_mappings().create_bulk(vec![new_instance("p", "u"), new_instance("p", "u").cell(&forged)]),
                Err(Error::CellMappingNotFound { .. })
            ));
            // The transaction is still usable, on PostgreSQL too.
            tx.instance_mappings().create(fresh.clone())?;
            Ok(())
        })
        .unwrap();
        let got = t.instance_mappings().get_by_instance_uuid(&fresh_uuid).unwrap();
        assert_eq!(got.cell_mapping, Some(cell));
        assert_eq!(t.instance_mappings().get_by_project_id("p").unwrap().len(), 2);
    }

    fn a_caller_s_own_error_rolls_back_and_is_returned(t) {
        #[derive(Debug)]
        enum AppError { Db(Error), OverQuota(usize) }
        impl From<Error> for AppError {
            fn from(e: Error) -> Self { AppError::Db(e) }
        }
        let cell = t.cell();
        let im = t.instance(None, "p", "u");
        let before = snapshot(t);
        let mut seen = None;
        let r: Result<(), AppError> = t.transaction(|tx| {
            let saved = tx.instance_mappings().save(&im, &InstanceMappingUpdate::new().cell(Some(&cell)))?;
            seen = Some(saved);
            tx.instance_mappings().create(new_instance("p", "u"))?;
            Err(AppError::OverQuota(2))
        });
        assert!(matches!(r, Err(AppError::OverQuota(2))), "{r:?}");
        assert_eq!(snapshot(t), before, "rolled back");
        // The caller's object never showed the uncommitted cell.
        assert_eq!(im.cell_mapping, None);
        assert_eq!(t.instance_mappings().get_by_instance_uuid(&im.instance_uuid).unwrap(), im);
        assert!(seen.is_some());
        // A library error comes back through the caller's type.
        let r: Result<(), AppError> = t.transaction(|tx| {
            tx.instance_mappings().destroy(Uuid::new_v4())?;
            Ok(())
        });
        assert!(matches!(r, Err(AppError::Db(Error::InstanceMappingNotFound { .. }))), "{r:?}");
    }
}
