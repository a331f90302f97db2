//! Bad input is refused before any SQL runs, identically on every backend:
//! each refusal is `Error::InvalidInput` naming the field, and nothing is
//! written. Values at the limits are stored exactly (no silent truncation).

mod support;

use cell_mappings::{
    CellMappingUpdate, HostMappingUpdate, InstanceMappingUpdate, NewCellMapping, NewHostMapping,
    NewInstanceMapping, Uuid,
};
use mapping_testkit::{backend_tests, new_cell, new_instance, uuid};
use support::{assert_invalid, snapshot};

/// Values no `VARCHAR(255)` column accepts (besides the empty string, which
/// only required columns refuse).
fn bad_varchars() -> Vec<String> {
    vec![
        "x".repeat(256),
        "é".repeat(256),
        "nul\0inside".into(),
        "\0".into(),
        "emoji \u{1F600}".into(),
        "\u{10000}".into(),
    ]
}

/// Values that are not UUIDs in any form `Uuid::parse_str` accepts.
fn bad_uuids() -> Vec<String> {
    vec![
        String::new(),
        "not-a-uuid".into(),
        "a0b1c2d3 e4f5 4789 abcd 0123456789ab".into(),
        "a0b1c2d3-e4f5-4789-abcd-0123456789ag".into(),
        "a0b1c2d3-e4f5-4789-abcd-0123456789a\0".into(),
        "a0b1c2d3-e4f5-4789-abcd-01234567\u{1F600}".into(),
        "x".repeat(300),
    ]
}

/// Values no `TEXT` column accepts.
fn bad_texts() -> Vec<String> {
    vec![
        "rabbit://\0".into(),
        "rabbit://\u{1F600}@host/".into(),
        "x".repeat(65_536),
    ]
}

backend_tests! {
    fn cell_create_names_the_bad_field(t) {
        t.cell();
        let before = snapshot(t);
        for bad in bad_uuids() {
            assert_invalid(t.cells().create(NewCellMapping::new(bad, "rabbit://", "mysql://")), "uuid");
        }
        for bad in bad_varchars() {
            assert_invalid(t.cells().create(new_cell().name(bad)), "name");
        }
        for bad in bad_texts() {
            let mut new = new_cell();
            new.transport_url = bad.clone();
            assert_invalid(t.cells().create(new), "transport_url");
            let mut new = new_cell();
            new.database_connection = bad;
            assert_invalid(t.cells().create(new), "database_connection");
        }
        assert_eq!(snapshot(t), before, "a refused create wrote something");
    }

    fn cell_lookups_save_and_destroy_validate(t) {
        let cell = t.cell();
        t.instance(Some(&cell), "p", "u");
        let before = snapshot(t);
        for bad in bad_uuids() {
            assert_invalid(t.cells().get_by_uuid(&bad), "cell_uuid");
            assert_invalid(t.cells().destroy(&bad), "cell_uuid");
        }
        for bad in bad_varchars() {
            let copy = cell.clone();
            assert_invalid(t.cells().save(&copy, &CellMappingUpdate::new().name(Some(&bad))), "name");
            assert_eq!(copy, cell, "the object changed although the save was refused");
            assert_invalid(t.cells().get_by_project_id(&bad), "project_id");
        }
        assert_invalid(t.cells().get_by_project_id(""), "project_id");
        for bad in bad_texts() {
            let copy = cell.clone();
            assert_invalid(
                t.cells().save(&copy, &CellMappingUpdate::new().disabled(true).transport_url(bad.clone())),
                "transport_url",
            );
            assert_invalid(
                t.cells().save(&copy, &CellMappingUpdate::new().database_connection(bad)),
                "database_connection",
            );
        }
        assert_eq!(snapshot(t), before, "a refused call wrote something");
    }

    fn instance_create_names_the_bad_field(t) {
        let cell = t.cell();
        let before = snapshot(t);
        for bad in bad_uuids() {
            assert_invalid(t.instance_mappings().create(NewInstanceMapping::new(bad, "p", "u")), "instance_uuid");
        }
        let mut bad_required = bad_varchars();
        bad_required.push(String::new());
        for bad in &bad_required {
            assert_invalid(t.instance_mappings().create(new_instance(bad, "u").cell(&cell)), "project_id");
            assert_invalid(t.instance_mappings().create(new_instance("p", bad)), "user_id");
        }
        assert_eq!(snapshot(t), before, "a refused create wrote something");
    }

    fn instance_lookups_and_lists_validate(t) {
        let cell = t.cell();
        let im = t.instance(Some(&cell), "p", "u");
        let before = snapshot(t);
        let im_api = || t.instance_mappings();
        for bad in bad_uuids() {
            assert_invalid(im_api().get_by_instance_uuid(&bad), "instance_uuid");
            assert_invalid(im_api().destroy(&bad), "instance_uuid");
            // One bad uuid among good ones refuses the whole list.
            let list = [im.instance_uuid.to_string(), bad.clone()];
            assert_invalid(im_api().get_by_instance_uuids(&list), "instance_uuid");
            assert_invalid(im_api().destroy_bulk(&list), "instance_uuid");
            assert_invalid(im_api().get_count_by_uuids_and_user(&list, "u"), "instance_uuid");
            assert_invalid(im_api().get_not_deleted_by_cell_and_project(&bad, Some("p"), None), "cell_uuid");
            let mut copy = im.clone();
            copy.instance_uuid = bad.into();
            assert_invalid(im_api().save(&copy, &InstanceMappingUpdate::new().queued_for_delete(true)), "instance_uuid");
        }
        let mut bad_required = bad_varchars();
        bad_required.push(String::new());
        for bad in &bad_required {
            assert_invalid(im_api().get_by_project_id(bad), "project_id");
            assert_invalid(im_api().get_counts(bad, None), "project_id");
            assert_invalid(im_api().get_counts("p", Some(bad)), "user_id");
            assert_invalid(im_api().get_count_by_uuids_and_user(std::slice::from_ref(&im.instance_uuid), bad), "user_id");
            assert_invalid(im_api().get_not_deleted_by_cell_and_project(cell.uuid, Some(bad), None), "project_id");
            let copy = im.clone();
            assert_invalid(
                im_api().save(&copy, &InstanceMappingUpdate::new().queued_for_delete(true).project_id(bad.clone())),
                "project_id",
            );
            assert_invalid(im_api().save(&copy, &InstanceMappingUpdate::new().user_id(bad.clone())), "user_id");
            assert_eq!(copy, im, "the object changed although the save was refused");
        }
        assert_invalid(im_api().get_not_deleted_by_cell_and_project(cell.uuid, None, Some(-1)), "limit");
        assert_eq!(snapshot(t), before, "a refused call wrote something");
    }

    fn host_calls_validate(t) {
        let cell = t.cell();
        let hm = t.host(&cell);
        let before = snapshot(t);
        let mut bad_required = bad_varchars();
        bad_required.push(String::new());
        for bad in &bad_required {
            assert_invalid(t.host_mappings().create(NewHostMapping::new(bad.clone(), &cell)), "host");
            assert_invalid(t.host_mappings().get_by_host(bad), "host");
            assert_invalid(t.host_mappings().destroy(bad), "host");
            let copy = hm.clone();
            assert_invalid(t.host_mappings().save(&copy, &HostMappingUpdate::new().host(bad.clone())), "host");
            assert_eq!(copy, hm);
        }
        assert_eq!(snapshot(t), before, "a refused call wrote something");
    }

    fn references_to_missing_cells_are_not_found(t) {
        let cell = t.cell();
        let im = t.instance(None, "p", "u");
        let hm = t.host(&cell);
        let mut ghost = cell.clone();
        ghost.id = 999_999;
        ghost.uuid = uuid().parse().unwrap();
        let before = snapshot(t);
        let not_found = |r: cell_mappings::Result<()>| match r {
            Err(cell_mappings::Error::CellMappingNotFound { uuid }) => assert_eq!(uuid, ghost.uuid.to_string()),
            other => panic!("expected CellMappingNotFound, got {other:?}"),
        };
        not_found(t.instance_mappings().create(new_instance("p", "u").cell(&ghost)).map(drop));
        not_found(t.host_mappings().create(NewHostMapping::new("ghost-host", &ghost)).map(drop));
        not_found(t.instance_mappings().save(&im, &InstanceMappingUpdate::new().cell(Some(&ghost))).map(drop));
        not_found(t.host_mappings().save(&hm, &HostMappingUpdate::new().cell(&ghost)).map(drop));
        assert_eq!(snapshot(t), before, "a refused call wrote something");
    }

    fn uuids_are_canonicalised_everywhere(t) {
        let upper = uuid().to_uppercase();
        let created = t
            .instance_mappings()
            .create(NewInstanceMapping::new(upper.clone(), "p", "u"))
            .unwrap();
        assert_eq!(created.instance_uuid, upper.to_lowercase());
        assert_eq!(t.instance_mappings().get_by_instance_uuid(&upper).unwrap(), created);
        assert_eq!(t.instance_mappings().get_by_instance_uuids(std::slice::from_ref(&upper)).unwrap(), vec![created]);
        assert_eq!(t.instance_mappings().destroy_bulk(&[upper]).unwrap(), 1);
        // Every form `Uuid::parse_str` accepts names the same row, stored
        // canonical (lower-case, hyphenated).
        let u = Uuid::new_v4();
        let created = t.instance_mappings()
            .create(NewInstanceMapping::new(u.simple().to_string(), "p", "u")).unwrap();
        assert_eq!(created.instance_uuid, u.to_string());
        for form in [u.braced().to_string(), u.urn().to_string(), u.simple().to_string().to_uppercase()] {
            assert_eq!(t.instance_mappings().get_by_instance_uuid(&form).unwrap(), created, "{form}");
        }
        assert_eq!(t.instance_mappings().get_by_instance_uuid(u).unwrap(), created);
    }

    fn values_at_the_limits_are_stored_exactly(t) {
        // 255 characters of 1, 2 and 3 UTF-8 bytes each, and a TEXT of
        // exactly 65,535 bytes: stored and read back unchanged (nothing is
        // truncated, on MySQL's 3-byte utf8 included).
        for fill in ["x", "é", "\u{FFFD}", "\u{3042}"] {
            let long = fill.repeat(255);
            let mut new = new_cell().name(long.clone());
            new.transport_url = "t".repeat(65_535);
            let cell = t.cells().create(new.clone()).unwrap();
            let got = t.cells().get_by_uuid(cell.uuid).unwrap();
            assert_eq!(got.name.as_deref(), Some(long.as_str()));
            assert_eq!(got.transport_url, new.transport_url);
            let im = t
                .instance_mappings()
                .create(new_instance(&long, &long).cell(&cell))
                .unwrap();
            let got = t.instance_mappings().get_by_instance_uuid(&im.instance_uuid).unwrap();
            assert_eq!(got.project_id, long);
            assert_eq!(got.user_id.as_deref(), Some(long.as_str()));
            assert_eq!(t.instance_mappings().get_by_project_id(&long).unwrap(), vec![got]);
            t.instance_mappings().destroy(&im.instance_uuid).unwrap();
            let hm = t.host_mappings().create(NewHostMapping::new(long.clone(), &cell)).unwrap();
            assert_eq!(t.host_mappings().get_by_host(&long).unwrap(), hm);
            t.host_mappings().destroy(&long).unwrap();
        }
    }

    fn control_characters_other_than_nul_are_kept(t) {
        let odd = "tab\there\nnewline \u{7F} \u{FEFF} \u{FFFF} 'quote' \"dq\" \\ %_";
        let cell = t.cells().create(new_cell().name(odd)).unwrap();
        assert_eq!(t.cells().get_by_uuid(cell.uuid).unwrap().name.as_deref(), Some(odd));
        let im = t.instance_mappings().create(new_instance(odd, odd)).unwrap();
        assert_eq!(t.instance_mappings().get_by_project_id(odd).unwrap(), vec![im]);
        // LIKE wildcards in a value are not wildcards in an equality lookup.
        assert!(t.instance_mappings().get_by_project_id("%").unwrap().is_empty());
    }
}
