//! `HostMapping` and `HostMappingList` (docs/tables.md) on every backend compiled in.

use cell_mappings::{Error, HostMapping, HostMappingUpdate, NewHostMapping};
use mapping_testkit::{backend_tests, new_cell, new_host, uuid};

fn hosts(list: &[HostMapping]) -> Vec<&str> {
    list.iter().map(|h| h.host.as_str()).collect()
}

backend_tests! {
    fn get_by_host_with_its_cell(t) {
        let cell = t.cells().create(new_cell().disabled(true)).unwrap();
        let created = t.host_mappings().create(NewHostMapping::new("compute-01.example.org", &cell)).unwrap();
        assert!(created.id > 0);
        assert!(created.created_at.is_some());
        let got = t.host_mappings().get_by_host("compute-01.example.org").unwrap();
        assert_eq!(got, created);
        assert_eq!(got.host, "compute-01.example.org");
        assert_eq!(got.cell_mapping, cell, "every field of the cell is loaded");
        assert_eq!(got.updated_at, None);
    }

    fn unknown_host_is_not_found(t) {
        t.host(&t.cell());
        match t.host_mappings().get_by_host("compute-nowhere") {
            Err(Error::HostMappingNotFound { host }) => assert_eq!(host, "compute-nowhere"),
            r => panic!("{r:?}"),
        }
    }

    fn moving_a_host_persists(t) {
        let a = t.cell();
        let b = t.cell();
        let mut moved = t.host(&a);
        let stays = t.host(&a);
        moved = t.host_mappings().save(&moved, &HostMappingUpdate::new().cell(&b)).unwrap();
        assert_eq!(moved.cell_mapping, b);
        let fresh = t.reopen(Default::default());
        let got = fresh.host_mappings().get_by_host(&moved.host).unwrap();
        assert_eq!(got.cell_mapping, b);
        assert_eq!(got, moved);
        assert!(got.updated_at.is_some());
        assert_eq!(fresh.host_mappings().get_by_host(&stays.host).unwrap(), stays);
        assert_eq!(hosts(&t.host_mappings().get_by_cell_id(a.id).unwrap()), vec![stays.host.as_str()]);
        assert_eq!(hosts(&t.host_mappings().get_by_cell_id(b.id).unwrap()), vec![moved.host.as_str()]);
    }

    fn renaming_a_host_persists_and_refuses_a_taken_name(t) {
        let cell = t.cell();
        let mut hm = t.host(&cell);
        let other = t.host(&cell);
        let old = hm.host.clone();
        hm = t.host_mappings().save(&hm, &HostMappingUpdate::new().host("renamed")).unwrap();
        assert_eq!(t.host_mappings().get_by_host("renamed").unwrap(), hm);
        assert!(t.host_mappings().get_by_host(&old).unwrap_err().is_not_found());
        let err = t
            .host_mappings()
            .save(&hm, &HostMappingUpdate::new().host(other.host.clone()))
            .unwrap_err();
        match err {
            Error::HostMappingExists { host } => assert_eq!(host, other.host),
            e => panic!("{e:?}"),
        }
        assert_eq!(hm.host, "renamed", "a failed save leaves the object as it was");
    }

    fn empty_save_writes_nothing(t) {
        let mut hm = t.host(&t.cell());
        hm = t.host_mappings().save(&hm, &HostMappingUpdate::new()).unwrap();
        assert_eq!(t.host_mappings().get_by_host(&hm.host).unwrap().updated_at, None);
        t.host_mappings().destroy(&hm.host).unwrap();
        let err = t.host_mappings().save(&hm, &HostMappingUpdate::new()).unwrap_err();
        assert!(matches!(err, Error::HostMappingNotFound { .. }), "{err:?}");
    }

    fn save_of_a_destroyed_mapping_is_not_found(t) {
        let a = t.cell();
        let b = t.cell();
        let hm = t.host(&a);
        t.host_mappings().destroy(&hm.host).unwrap();
        let err = t.host_mappings().save(&hm, &HostMappingUpdate::new().cell(&b)).unwrap_err();
        match err {
            Error::HostMappingNotFound { host } => assert_eq!(host, hm.host),
            e => panic!("{e:?}"),
        }
    }

    fn destroy(t) {
        let cell = t.cell();
        let gone = t.host(&cell);
        let kept = t.host(&cell);
        t.host_mappings().destroy(&gone.host).unwrap();
        assert!(matches!(t.host_mappings().get_by_host(&gone.host), Err(Error::HostMappingNotFound { .. })));
        assert_eq!(t.host_mappings().get_by_host(&kept.host).unwrap(), kept);
        match t.host_mappings().destroy(&gone.host) {
            Err(Error::HostMappingNotFound { host }) => assert_eq!(host, gone.host),
            r => panic!("{r:?}"),
        }
        match t.host_mappings().destroy("never-mapped") {
            Err(Error::HostMappingNotFound { host }) => assert_eq!(host, "never-mapped"),
            r => panic!("{r:?}"),
        }
    }

    fn duplicate_host_exists(t) {
        let a = t.cell();
        let b = t.cell();
        let first = t.host(&a);
        // Also in another cell: a host belongs to one cell only.
        match t.host_mappings().create(NewHostMapping::new(first.host.clone(), &b)) {
            Err(Error::HostMappingExists { host }) => assert_eq!(host, first.host),
            r => panic!("{r:?}"),
        }
        assert_eq!(t.host_mappings().get_by_host(&first.host).unwrap().cell_mapping, a);
    }

    fn create_in_an_unknown_cell_is_refused(t) {
        let mut ghost = t.cell();
        t.cells().destroy(ghost.uuid).unwrap();
        ghost.id = i32::MAX;
        ghost.uuid = uuid().parse().unwrap();
        match t.host_mappings().create(new_host(&ghost)) {
            Err(Error::CellMappingNotFound { uuid }) => assert_eq!(uuid, ghost.uuid.to_string()),
            r => panic!("{r:?}"),
        }
    }

    fn list_all_and_by_cell(t) {
        assert!(t.host_mappings().get_all().unwrap().is_empty());
        let a = t.cell();
        let b = t.cell();
        let empty = t.cell();
        let h1 = t.host(&a);
        let h2 = t.host(&b);
        let h3 = t.host(&a);
        let all = t.host_mappings().get_all().unwrap();
        assert_eq!(all, vec![h1.clone(), h2.clone(), h3.clone()], "id order, cells loaded");
        let in_a = t.host_mappings().get_by_cell_id(a.id).unwrap();
        assert_eq!(in_a, vec![h1, h3]);
        assert!(in_a.iter().all(|h| h.cell_mapping == a));
        assert_eq!(t.host_mappings().get_by_cell_id(b.id).unwrap(), vec![h2]);
        assert!(t.host_mappings().get_by_cell_id(empty.id).unwrap().is_empty());
        assert!(t.host_mappings().get_by_cell_id(i32::MAX).unwrap().is_empty());
    }
}
