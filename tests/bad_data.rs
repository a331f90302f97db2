//! Rows already in the tables that the API would never write: non-UUID
//! instance uuids (Nova's own migration marker among them), NULLs where
//! Nova's schema allows them, cell ids pointing nowhere (foreign keys off),
//! and, where the engine lets them in, values of the wrong type. Reading
//! never panics, and the other rows stay readable.

mod support;

use cell_mappings::{BackendKind, Error, InstanceMappingUpdate};
use diesel::connection::SimpleConnection;
use diesel::Connection;
use mapping_testkit::{backend_tests, uuid, TestDb};
use support::assert_invalid;

const MARKER: &str = "INSTANCE_MIGRATION_MARKER";
const NOWHERE: i32 = 424_242;

/// Runs `sql` with the foreign keys of the backend switched off, as a
/// foreign tool (or a hand-edited database) would.
fn exec_without_foreign_keys(t: &TestDb, sql: &str) {
    match t.backend() {
        BackendKind::Sqlite => {
            // A raw connection of our own, not the library's.
            let path = cell_mappings::ConnectionUrl::parse(t.url()).unwrap();
            let mut raw = diesel::SqliteConnection::establish(path.diesel_url()).unwrap();
            raw.batch_execute(&format!("PRAGMA foreign_keys = OFF; {sql}"))
                .unwrap();
        }
        BackendKind::Mysql => t.exec(&format!(
            "SET SESSION foreign_key_checks = 0; {sql}; SET SESSION foreign_key_checks = 1"
        )),
        // Superuser only: skips the foreign-key triggers for this session.
        BackendKind::Postgres => t.exec(&format!(
            "SET session_replication_role = replica; {sql}; SET session_replication_role = DEFAULT"
        )),
    }
}

backend_tests! {
    fn non_uuid_instance_uuids_and_the_migration_marker(t) {
        let cell = t.cell();
        let good = t.instance(Some(&cell), "p", "u");
        let marker_uuid = uuid().replace('-', " ");
        let f = t.sql_bool(false);
        t.exec(&format!(
            "INSERT INTO instance_mappings (instance_uuid, cell_id, project_id, user_id, queued_for_delete) \
             VALUES ('{marker_uuid}', NULL, '{MARKER}', '{MARKER}', {f}); \
             INSERT INTO instance_mappings (instance_uuid, cell_id, project_id, user_id, queued_for_delete) \
             VALUES ('not-a-uuid', {}, 'p', 'u', {f})",
            cell.id
        ));
        // Other rows and lists read fine; the odd row is returned faithfully.
        assert_eq!(t.instance_mappings().get_by_instance_uuid(&good.instance_uuid).unwrap(), good);
        let mut listed: Vec<_> = t
            .instance_mappings()
            .get_by_project_id("p")
            .unwrap()
            .into_iter()
            .map(|m| m.instance_uuid)
            .collect();
        listed.sort();
        let mut want = vec![good.instance_uuid.to_string(), "not-a-uuid".to_owned()];
        want.sort();
        assert_eq!(listed, want);
        assert_eq!(t.instance_mappings().get_by_cell_id(cell.id).unwrap().len(), 2);
        assert_eq!(t.instance_mappings().get_counts("p", Some("u")).unwrap().project, 2);
        assert_eq!(
            t.instance_mappings().get_not_deleted_by_cell_and_project(cell.uuid, None, None).unwrap().len(),
            2
        );
        assert_eq!(t.cells().get_by_project_id("p").unwrap(), vec![cell.clone()]);
        let marker = t.instance_mappings().get_by_project_id(MARKER).unwrap();
        assert_eq!(marker.len(), 1);
        assert_eq!(marker[0].instance_uuid, marker_uuid);
        // Typed where the row names a UUID, the stored text where it does not.
        assert_eq!(marker[0].instance_uuid.as_str(), marker_uuid);
        assert_eq!(marker[0].instance_uuid.as_uuid(), None);
        assert_eq!(good.instance_uuid.as_uuid().map(|u| u.to_string()).as_deref(), Some(good.instance_uuid.as_str()));
        let in_cell = t.instance_mappings().get_by_cell_id(cell.id).unwrap();
        let odd_row = in_cell.iter().find(|m| m.instance_uuid == "not-a-uuid").unwrap();
        assert_eq!(odd_row.instance_uuid.as_uuid(), None);
        let walked = t.instance_mappings().walk_by_cell_id(cell.id, 1).collect::<Result<Vec<_>, _>>().unwrap();
        assert_eq!(walked.len(), 2, "the odd row is walked too");
        assert_eq!(marker[0].user_id.as_deref(), Some(MARKER));
        assert!(marker[0].cell_mapping.is_none());
        // Looking the odd rows up by their uuid is a clear refusal, not a panic.
        assert_invalid(t.instance_mappings().get_by_instance_uuid(&marker_uuid), "instance_uuid");
        assert_invalid(t.instance_mappings().get_by_instance_uuid("not-a-uuid"), "instance_uuid");
        // Saving the odd object is refused the same way, and writes nothing.
        let odd = marker[0].clone();
        assert_invalid(
            t.instance_mappings().save(&odd, &cell_mappings::InstanceMappingUpdate::new().queued_for_delete(true)),
            "instance_uuid",
        );
        // Bulk operations on good uuids leave the odd rows alone.
        assert_eq!(t.instance_mappings().destroy_bulk(std::slice::from_ref(&good.instance_uuid)).unwrap(), 1);
        assert_eq!(t.instance_mappings().get_by_project_id("p").unwrap().len(), 1);
        assert_eq!(t.instance_mappings().get_by_project_id(MARKER).unwrap().len(), 1);
    }

    fn cell_uuids_in_another_spelling_or_not_uuids(t) {
        let f = t.sql_bool(false);
        let insert = |uuid: &str, name: &str| t.exec(&format!(
            "INSERT INTO cell_mappings (uuid, name, transport_url, database_connection, disabled) \
             VALUES ('{uuid}', '{name}', 'none:///', 'sqlite://', {f})"
        ));
        // Upper case: the same UUID. Read typed, and a reference to it verifies.
        let upper = uuid().to_uppercase();
        insert(&upper, "upper");
        let cell = t.cells().get_all().unwrap().into_iter().find(|c| c.name.as_deref() == Some("upper")).unwrap();
        assert_eq!(cell.uuid.to_string(), upper.to_lowercase());
        let im = t.instance(Some(&cell), "p", "u");
        assert_eq!(im.cell_mapping.as_ref(), Some(&cell));
        assert_eq!(t.instance_mappings().get_by_project_id("p").unwrap(), vec![im.clone()]);
        // A save naming it verifies too, and so does one naming a cell
        // stored as 32 hex digits.
        let simple = uuid::Uuid::new_v4();
        insert(&simple.simple().to_string(), "simple");
        let simple_cell = t.cells().get_all().unwrap().into_iter().find(|c| c.uuid == simple).unwrap();
        let other = t.instance(None, "q", "u");
        for c in [&cell, &simple_cell, &cell] {
            let saved = t.instance_mappings()
                .save(&other, &InstanceMappingUpdate::new().cell(Some(c)))
                .unwrap();
            assert_eq!(saved.cell_mapping.as_ref(), Some(c));
            assert_eq!(t.instance_mappings().get_by_instance_uuid(&other.instance_uuid).unwrap(), saved);
        }
        t.instance_mappings().destroy(&other.instance_uuid).unwrap();
        t.exec(&format!("DELETE FROM cell_mappings WHERE id = {}", simple_cell.id));
        // Not a UUID (never written by Nova or the library): a bad row,
        // named, wherever it is read; other cells' rows read fine.
        insert("not-a-uuid", "bad");
        match t.cells().get_all() {
            Err(Error::BadRow { table: "cell_mappings", reason, .. }) => {
                assert!(reason.contains("not-a-uuid"), "{reason}")
            }
            other => panic!("expected a bad cell row, got {other:?}"),
        }
        assert_eq!(t.instance_mappings().get_by_instance_uuid(&im.instance_uuid).unwrap(), im);
    }

    fn nulls_where_nova_allows_them(t) {
        let cell_uuid = uuid();
        t.exec(&format!(
            "INSERT INTO cell_mappings (uuid, name, transport_url, database_connection, disabled) \
             VALUES ('{cell_uuid}', NULL, NULL, NULL, NULL)"
        ));
        let cell = t.cells().get_by_uuid(&cell_uuid).unwrap();
        assert_eq!(cell.name, None);
        assert_eq!(cell.identity(), cell_uuid);
        assert_eq!(cell.transport_url, "");
        assert_eq!(cell.database_connection, "");
        assert!(!cell.disabled);
        assert_eq!((cell.created_at, cell.updated_at), (None, None));
        assert_eq!(t.cells().get_by_disabled(false).unwrap(), vec![cell.clone()]);
        assert!(t.cells().get_by_disabled(true).unwrap().is_empty());

        let (old, unscheduled) = (uuid(), uuid());
        t.exec(&format!(
            "INSERT INTO instance_mappings (instance_uuid, cell_id, project_id, user_id, queued_for_delete) \
             VALUES ('{old}', {}, 'p', NULL, NULL); \
             INSERT INTO instance_mappings (instance_uuid, cell_id, project_id, user_id, queued_for_delete) \
             VALUES ('{unscheduled}', NULL, 'p', 'u', NULL)",
            cell.id
        ));
        let good = t.instance(Some(&cell), "p", "u");
        let got = t.instance_mappings().get_by_instance_uuid(&old).unwrap();
        assert_eq!(got.user_id, None);
        assert!(!got.queued_for_delete);
        assert_eq!(got.cell_mapping.as_ref(), Some(&cell));
        let got = t.instance_mappings().get_by_instance_uuid(&unscheduled).unwrap();
        assert!(got.cell_mapping.is_none());
        assert_eq!(t.instance_mappings().get_by_project_id("p").unwrap().len(), 3);
        // NULL queued_for_delete: listed as not deleted, not counted.
        assert_eq!(
            t.instance_mappings().get_not_deleted_by_cell_and_project(cell.uuid, Some("p"), None).unwrap().len(),
            2
        );
        let counts = t.instance_mappings().get_counts("p", Some("u")).unwrap();
        assert_eq!((counts.project, counts.user), (1, Some(1)));
        assert_eq!(
            t.instance_mappings().get_count_by_uuids_and_user(&[old.clone(), unscheduled.clone(), good.instance_uuid.to_string()], "u").unwrap(),
            1
        );
        // A cell with NULL columns can be saved and destroyed.
        let c = cell.clone();
        t.cells().save(&c, &cell_mappings::CellMappingUpdate::new().disabled(true)).unwrap();
        assert!(t.cells().get_by_uuid(&cell_uuid).unwrap().disabled);
    }

    fn cell_ids_pointing_nowhere(t) {
        let cell = t.cell();
        let good_im = t.instance(Some(&cell), "p", "u");
        let good_host = t.host(&cell);
        let lost = uuid();
        exec_without_foreign_keys(
            t,
            &format!(
                "INSERT INTO instance_mappings (instance_uuid, cell_id, project_id, user_id, queued_for_delete) \
                 VALUES ('{lost}', {NOWHERE}, 'p', 'u', {f}); \
                 INSERT INTO host_mappings (cell_id, host) VALUES ({NOWHERE}, 'lost-host')",
                f = t.sql_bool(false)
            ),
        );
        // The instance mapping reads as unscheduled (its cell is unknown).
        let got = t.instance_mappings().get_by_instance_uuid(&lost).unwrap();
        assert!(got.cell_mapping.is_none());
        assert_eq!(t.instance_mappings().get_by_project_id("p").unwrap().len(), 2);
        let orphans = t.instance_mappings().get_by_cell_id(NOWHERE).unwrap();
        assert_eq!(orphans.len(), 1);
        assert!(orphans[0].cell_mapping.is_none());
        assert_eq!(
            t.instance_mappings().get_not_deleted_by_cell_and_project(cell.uuid, None, None).unwrap(),
            vec![good_im.clone()]
        );
        assert_eq!(t.cells().get_by_project_id("p").unwrap(), vec![cell.clone()]);
        // The host mapping cannot be an object (its cell is required): a
        // typed error names the row; listings leave it out.
        match t.host_mappings().get_by_host("lost-host") {
            Err(Error::BadRow { table, .. }) => assert_eq!(table, "host_mappings"),
            other => panic!("{other:?}"),
        }
        assert_eq!(t.host_mappings().get_all().unwrap(), vec![good_host.clone()]);
        assert!(t.host_mappings().get_by_cell_id(NOWHERE).unwrap().is_empty());
        // Everything else still works, the orphans can be removed.
        assert_eq!(t.host_mappings().get_by_host(&good_host.host).unwrap(), good_host);
        assert_eq!(t.instance_mappings().get_by_instance_uuid(&good_im.instance_uuid).unwrap(), good_im);
        t.host_mappings().destroy("lost-host").unwrap();
        t.instance_mappings().destroy(&lost).unwrap();
    }
}

/// SQLite stores any value in any column: text where numbers, booleans or
/// dates belong. Such a row gives a typed error naming the column (or the
/// value SQLite converts it to), never a panic, and the other rows read fine.
#[test]
fn wrongly_typed_values_on_sqlite() {
    let t = TestDb::new(BackendKind::Sqlite);
    let cell = t.cell();
    let good = t.instance(Some(&cell), "p", "u");
    let (bad_date, bad_bool, bad_cell) = (uuid(), uuid(), uuid());
    let (blob_cell, odd_cell) = (uuid(), uuid());
    exec_without_foreign_keys(
        &t,
        &format!(
            "INSERT INTO instance_mappings (created_at, instance_uuid, cell_id, project_id, user_id, queued_for_delete) \
             VALUES ('yesterday', '{bad_date}', NULL, 'q', 'u', 0); \
             INSERT INTO instance_mappings (instance_uuid, cell_id, project_id, user_id, queued_for_delete) \
             VALUES ('{bad_bool}', NULL, 'q', 'u', 'maybe'); \
             INSERT INTO instance_mappings (instance_uuid, cell_id, project_id, user_id, queued_for_delete) \
             VALUES ('{bad_cell}', 'abc', 'q', 'u', 0); \
             INSERT INTO cell_mappings (uuid, name, disabled, updated_at) \
             VALUES ('{}', 'x', 'yes', 1e300); \
             INSERT INTO cell_mappings (uuid, name) VALUES ('{blob_cell}', x'00ff41'); \
             INSERT INTO cell_mappings (uuid, transport_url, disabled) VALUES ('{odd_cell}', 42, 'yes')",
            uuid()
        ),
    );
    // A date that is not a date: a typed error naming the column.
    let deserialization_error = |r: cell_mappings::Result<_>, column: &str| match r {
        Err(
            e @ Error::Database {
                source: diesel::result::Error::DeserializationError(_),
                ..
            },
        ) => assert!(e.to_string().contains(column), "{e}"),
        other => panic!("expected a deserialization error, got {other:?}"),
    };
    deserialization_error(
        t.instance_mappings()
            .get_by_instance_uuid(&bad_date)
            .map(drop),
        "created_at",
    );
    // A list holding that row fails as a whole, the same way.
    deserialization_error(
        t.instance_mappings().get_by_project_id("q").map(drop),
        "created_at",
    );
    deserialization_error(t.cells().get_all().map(drop), "updated_at");
    // Text where a boolean or an id belongs reads as SQLite converts it (0).
    assert!(
        !t.instance_mappings()
            .get_by_instance_uuid(&bad_bool)
            .unwrap()
            .queued_for_delete
    );
    assert!(t
        .instance_mappings()
        .get_by_instance_uuid(&bad_cell)
        .unwrap()
        .cell_mapping
        .is_none());
    // Bytes that are not UTF-8: a typed error naming the column.
    deserialization_error(t.cells().get_by_uuid(&blob_cell).map(drop), "name");
    // A number in a text column reads as its text, text in a boolean column
    // as SQLite converts it (0).
    let odd = t.cells().get_by_uuid(&odd_cell).unwrap();
    assert_eq!(odd.transport_url, "42");
    assert!(!odd.disabled);
    // Every other row reads fine.
    assert_eq!(
        t.instance_mappings()
            .get_by_instance_uuid(&good.instance_uuid)
            .unwrap(),
        good
    );
    assert_eq!(
        t.instance_mappings().get_by_project_id("p").unwrap(),
        vec![good]
    );
    assert_eq!(t.cells().get_by_uuid(cell.uuid).unwrap(), cell);
}

/// MySQL with a permissive sql_mode lets in zero dates, which no date type
/// can hold: reading such a row is a typed error, never a panic.
#[cfg(feature = "mysql")]
#[test]
fn zero_dates_on_mysql() {
    let t = TestDb::new(BackendKind::Mysql);
    let cell = t.cell();
    let good = t.instance(Some(&cell), "p", "u");
    let zero = uuid();
    t.exec(&format!(
        "SET SESSION sql_mode = ''; \
         INSERT INTO instance_mappings (created_at, instance_uuid, cell_id, project_id, user_id, queued_for_delete) \
         VALUES ('0000-00-00 00:00:00', '{zero}', {}, 'q', 'u', 0)",
        cell.id
    ));
    match t.instance_mappings().get_by_instance_uuid(&zero) {
        Err(
            e @ Error::Database {
                source: diesel::result::Error::DeserializationError(_),
                ..
            },
        ) => assert!(e.to_string().contains("created_at"), "{e}"),
        other => panic!("expected a deserialization error, got {other:?}"),
    }
    assert_eq!(
        t.instance_mappings()
            .get_by_instance_uuid(&good.instance_uuid)
            .unwrap(),
        good
    );
    assert_eq!(
        t.instance_mappings().get_by_project_id("p").unwrap(),
        vec![good]
    );
}
