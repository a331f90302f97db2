//! The schema of the three mapping tables on every backend: what our
//! migrations create, reverting and re-applying them, adopting a database made
//! by Nova, refusing a wrongly shaped one, and the stored form of timestamps.

use cell_mappings::__private::schema_check::{
    self, differences, expected, introspect, SchemaDescription, DIESEL_MIGRATIONS_TABLE,
    MAPPING_TABLES,
};
use cell_mappings::__private::MIGRATIONS;
use cell_mappings::{
    BackendKind, CellMappingUpdate, Database, Error, InstanceMappingUpdate, CELL0_UUID,
};
use chrono::{NaiveDateTime, SubsecRound, Timelike};
use diesel::prelude::*;
use diesel::sql_types::Text;
use mapping_testkit::{backend_tests, new_instance, TestDb};

#[path = "support/nova.rs"]
mod nova;
use nova::nova_ddl;

/// Writes a test body once and runs it on every backend compiled in, on a
/// fresh database with no tables at all.
macro_rules! empty_backend_tests {
    ($( fn $name:ident($t:ident) $body:block )*) => {
        $(
            mod $name {
                #[allow(unused_imports)]
                use super::*;

                fn body($t: &TestDb) $body

                #[test]
                fn sqlite() {
                    body(&TestDb::empty(BackendKind::Sqlite));
                }

                #[cfg(feature = "postgres")]
                #[test]
                fn postgres() {
                    body(&TestDb::empty(BackendKind::Postgres));
                }

                #[cfg(feature = "mysql")]
                #[test]
                fn mysql() {
                    body(&TestDb::empty(BackendKind::Mysql));
                }
            }
        )*
    };
}

fn baseline() -> String {
    MIGRATIONS
        .first()
        .expect("one migration at least")
        .version()
}

fn describe(db: &Database) -> SchemaDescription {
    db.with_connection(introspect).expect("introspection")
}

fn tables(db: &Database) -> Vec<String> {
    db.with_connection(schema_check::table_names)
        .expect("table list")
}

#[derive(QueryableByName)]
struct Value {
    #[diesel(sql_type = Text)]
    v: String,
}

/// The single text value of a raw query.
fn text(db: &Database, sql: &str) -> String {
    db.with_connection(|c| {
        diesel::sql_query(sql)
            .get_result::<Value>(c)
            .map_err(Error::from)
    })
    .unwrap_or_else(|e| panic!("{sql}: {e}"))
    .v
}

fn count(db: &Database, table: &str) -> String {
    let as_text = match db.backend() {
        BackendKind::Mysql => "CHAR",
        BackendKind::Sqlite | BackendKind::Postgres => "TEXT",
    };
    text(
        db,
        &format!("SELECT CAST(COUNT(*) AS {as_text}) AS v FROM {table}"),
    )
}

/// `YYYY-MM-DD HH:MM:SS.ffffff`, the text SQLAlchemy writes on SQLite.
fn is_sqlalchemy_timestamp(s: &str) -> bool {
    const PATTERN: &str = "dddd-dd-dd dd:dd:dd.dddddd";
    s.len() == PATTERN.len()
        && s.chars()
            .zip(PATTERN.chars())
            .all(|(c, p)| if p == 'd' { c.is_ascii_digit() } else { c == p })
}

fn ts(s: &str) -> NaiveDateTime {
    NaiveDateTime::parse_from_str(s, "%Y-%m-%d %H:%M:%S%.f").expect("timestamp literal")
}

/// What a timestamp written as `s` reads back as on `backend`: MySQL's
/// `DATETIME` keeps whole seconds.
fn stored(s: &str, backend: BackendKind) -> NaiveDateTime {
    match backend {
        BackendKind::Mysql => ts(s).trunc_subsecs(0),
        BackendKind::Sqlite | BackendKind::Postgres => ts(s),
    }
}

fn varchar(backend: BackendKind, len: u32) -> String {
    match backend {
        BackendKind::Postgres => format!("character varying({len})"),
        BackendKind::Sqlite | BackendKind::Mysql => format!("varchar({len})"),
    }
}

const CELL1: &str = "5f1e3c1d-7b6a-4f1e-9a43-2c8b7d6e5f40";
const IM_SCHEDULED: &str = "a1b2c3d4-0000-4000-8000-000000000001";
const IM_UNSCHEDULED: &str = "a1b2c3d4-0000-4000-8000-000000000002";
const IM_OLD: &str = "a1b2c3d4-0000-4000-8000-000000000003";
const CREATED: &str = "2025-01-02 03:04:05.123456";
const UPDATED: &str = "2025-01-03 04:05:06.654321";

/// Rows as Nova writes them: SQLAlchemy's timestamp text, booleans as the
/// backend spells them, cells referenced through their id.
fn nova_rows(t: &TestDb) -> String {
    let (f, tr) = (t.sql_bool(false), t.sql_bool(true));
    let cell1 = format!("(SELECT id FROM cell_mappings WHERE uuid = '{CELL1}')");
    format!(
        "INSERT INTO cell_mappings (created_at, updated_at, uuid, name, transport_url, \
         database_connection, disabled) VALUES ('{CREATED}', NULL, '{CELL0_UUID}', 'cell0', \
         'none:///', 'mysql+pymysql://nova:pw@db/nova_cell0?charset=utf8', {f});\n\
         INSERT INTO cell_mappings (created_at, updated_at, uuid, name, transport_url, \
         database_connection, disabled) VALUES ('{CREATED}', '{UPDATED}', '{CELL1}', 'cell1', \
         'rabbit://{{username}}:{{password}}@{{hostname}}/', \
         'mysql+pymysql://{{username}}:{{password}}@{{hostname}}/nova_cell1', {tr});\n\
         INSERT INTO instance_mappings (created_at, updated_at, instance_uuid, cell_id, \
         project_id, queued_for_delete, user_id) VALUES ('{CREATED}', '{UPDATED}', \
         '{IM_SCHEDULED}', {cell1}, 'project-a', {f}, 'user-a');\n\
         INSERT INTO instance_mappings (created_at, updated_at, instance_uuid, cell_id, \
         project_id, queued_for_delete, user_id) VALUES ('{CREATED}', NULL, \
         '{IM_UNSCHEDULED}', NULL, 'project-a', {f}, 'user-a');\n\
         INSERT INTO instance_mappings (created_at, updated_at, instance_uuid, cell_id, \
         project_id, queued_for_delete, user_id) VALUES ('{CREATED}', NULL, \
         '{IM_OLD}', {cell1}, 'project-a', NULL, NULL);\n\
         INSERT INTO host_mappings (created_at, updated_at, cell_id, host) \
         VALUES ('{CREATED}', NULL, {cell1}, 'compute-1');\n"
    )
}

/// Migrating must fail with exactly `want` as the differences, and leave the
/// database as it was.
fn assert_refused_with(t: &TestDb, want: Vec<String>) {
    let before_tables = tables(t);
    let before_rows = count(t, "instance_mappings");
    match t.migrate() {
        Err(Error::SchemaMismatch { differences }) => assert_eq!(differences, want),
        other => panic!("migrate on {:?}: {other:?}", t.backend()),
    }
    match t.check_schema() {
        Err(Error::SchemaMismatch { differences }) => assert_eq!(differences, want),
        other => panic!("check_schema on {:?}: {other:?}", t.backend()),
    }
    assert_eq!(tables(t), before_tables);
    assert!(!tables(t).iter().any(|n| n == DIESEL_MIGRATIONS_TABLE));
    assert_eq!(count(t, "instance_mappings"), before_rows);
}

backend_tests! {
    fn migrated_database_has_novas_schema(t) {
        let found = describe(t);
        let want = expected(t.backend());
        assert_eq!(differences(&want, &found), Vec::<String>::new());
        assert_eq!(found, want);
        t.check_schema().unwrap();
        t.with_connection(schema_check::check).unwrap();
    }

    fn migrations_revert_and_reapply(t) {
        let v = baseline();
        assert_eq!(t.applied_migrations().unwrap(), vec![v.clone()]);

        assert_eq!(t.revert_last_migration().unwrap(), v);
        let left = tables(t);
        for table in MAPPING_TABLES {
            assert!(!left.iter().any(|n| n == table), "{table} left behind: {left:?}");
        }
        assert!(t.applied_migrations().unwrap().is_empty());
        match t.check_schema() {
            Err(Error::SchemaMismatch { differences }) => assert_eq!(
                differences,
                vec![
                    "missing table cell_mappings",
                    "missing table host_mappings",
                    "missing table instance_mappings",
                ]
            ),
            other => panic!("{other:?}"),
        }

        t.migrate().unwrap();
        assert_eq!(t.applied_migrations().unwrap(), vec![v]);
        assert_eq!(describe(t), expected(t.backend()));
        t.check_schema().unwrap();
        t.cell();
    }

    fn timestamps_are_stored_as_nova_stores_them(t) {
        let b = t.backend();
        let raw = |table: &str, column: &str, key: &str, value: &str| {
            let expr = match b {
                BackendKind::Sqlite => format!("CAST({column} AS TEXT)"),
                BackendKind::Postgres => format!("to_char({column}, 'YYYY-MM-DD HH24:MI:SS.US')"),
                BackendKind::Mysql => format!("CAST({column} AS CHAR)"),
            };
            text(t, &format!("SELECT {expr} AS v FROM {table} WHERE {key} = '{value}'"))
        };
        let assert_stored = |got: String, object: NaiveDateTime| {
            match b {
                BackendKind::Sqlite => {
                    assert!(is_sqlalchemy_timestamp(&got), "{got:?}");
                    assert_eq!(got, object.format("%Y-%m-%d %H:%M:%S%.6f").to_string());
                }
                BackendKind::Postgres => {
                    // Microseconds are kept, and the object holds no more.
                    assert_eq!(object.nanosecond() % 1000, 0);
                    assert_eq!(got, object.format("%Y-%m-%d %H:%M:%S%.6f").to_string());
                }
                BackendKind::Mysql => {
                    // DATETIME has no fraction, and neither has the object.
                    assert_eq!(got.len(), 19, "{got:?}");
                    assert_eq!(object.nanosecond(), 0);
                    assert_eq!(got, object.format("%Y-%m-%d %H:%M:%S").to_string());
                }
            }
        };

        let mut cell = t.cell();
        assert_stored(raw("cell_mappings", "created_at", "uuid", &cell.uuid.to_string()), cell.created_at.unwrap());
        cell = t.cells().save(&cell, &CellMappingUpdate::new().disabled(true)).unwrap();
        assert_stored(raw("cell_mappings", "updated_at", "uuid", &cell.uuid.to_string()), cell.updated_at.unwrap());
        assert_eq!(t.cells().get_by_uuid(cell.uuid).unwrap(), cell);

        let mut im = t.instance_mappings().create(new_instance("p", "u")).unwrap();
        let key = im.instance_uuid.to_string();
        assert_stored(raw("instance_mappings", "created_at", "instance_uuid", &key), im.created_at.unwrap());
        im = t.instance_mappings()
            .save(&im, &InstanceMappingUpdate::new().cell(Some(&cell)).queued_for_delete(true))
            .unwrap();
        assert_stored(raw("instance_mappings", "updated_at", "instance_uuid", &key), im.updated_at.unwrap());
        assert_eq!(t.instance_mappings().get_by_instance_uuid(&key).unwrap(), im);
    }
}

empty_backend_tests! {
    fn adopts_a_database_made_by_nova(t) {
        let b = t.backend();
        t.exec(&nova_ddl(b, 255, true));
        t.exec(&nova_rows(t));
        let before = describe(t);
        assert_eq!(before, expected(b));

        t.migrate().unwrap();
        assert_eq!(t.applied_migrations().unwrap(), vec![baseline()]);
        assert_eq!(describe(t), before, "adoption changed the tables");
        assert_eq!(text(t, "SELECT version_num AS v FROM alembic_version"), "cdeec0c85668");
        t.check_schema().unwrap();

        // Nova's rows read back exactly.
        let cells = t.cells().get_all().unwrap();
        assert_eq!(cells.len(), 2);
        let cell0 = &cells[0];
        assert!(cell0.is_cell0());
        assert_eq!(cell0.name.as_deref(), Some("cell0"));
        assert!(!cell0.disabled);
        assert_eq!(cell0.created_at, Some(stored(CREATED, b)));
        assert_eq!(cell0.updated_at, None);
        let cell1 = &cells[1];
        assert_eq!(cell1.uuid.to_string(), CELL1);
        assert_eq!(cell1.transport_url, "rabbit://{username}:{password}@{hostname}/");
        assert_eq!(
            cell1.database_connection,
            "mysql+pymysql://{username}:{password}@{hostname}/nova_cell1"
        );
        assert!(cell1.disabled);
        assert_eq!(cell1.created_at, Some(stored(CREATED, b)));
        assert_eq!(cell1.updated_at, Some(stored(UPDATED, b)));
        assert_eq!(&t.cells().get_by_uuid(CELL1).unwrap(), cell1);

        let im = t.instance_mappings().get_by_instance_uuid(IM_SCHEDULED).unwrap();
        assert_eq!(im.cell_mapping.as_ref(), Some(cell1));
        assert_eq!(im.project_id, "project-a");
        assert_eq!(im.user_id.as_deref(), Some("user-a"));
        assert!(!im.queued_for_delete);
        assert_eq!(im.created_at, Some(stored(CREATED, b)));
        assert_eq!(im.updated_at, Some(stored(UPDATED, b)));
        let unscheduled = t.instance_mappings().get_by_instance_uuid(IM_UNSCHEDULED).unwrap();
        assert!(unscheduled.cell_mapping.is_none());
        let old = t.instance_mappings().get_by_instance_uuid(IM_OLD).unwrap();
        assert_eq!(old.user_id, None);
        assert!(!old.queued_for_delete);
        assert_eq!(old.cell_mapping.as_ref(), Some(cell1));
        let counts = t.instance_mappings().get_counts("project-a", Some("user-a")).unwrap();
        assert_eq!((counts.project, counts.user), (2, Some(2)));
        let host = t.host_mappings().get_by_host("compute-1").unwrap();
        assert_eq!(&host.cell_mapping, cell1);
        assert_eq!(host.created_at, Some(stored(CREATED, b)));

        // And new rows can be written beside them.
        let cell = t.cell();
        let mut new = t.instance(Some(cell1), "project-a", "user-b");
        new = t.instance_mappings()
            .save(&new, &InstanceMappingUpdate::new().cell(Some(&cell)))
            .unwrap();
        assert_eq!(t.instance_mappings().get_by_instance_uuid(&new.instance_uuid).unwrap(), new);
        let h = t.host(&cell);
        assert_eq!(t.host_mappings().get_by_host(&h.host).unwrap(), h);
        assert_eq!(t.instance_mappings().get_by_project_id("project-a").unwrap().len(), 4);
        assert!(cell.id > cell1.id);

        // Migrating again changes nothing.
        t.migrate().unwrap();
        assert_eq!(t.applied_migrations().unwrap(), vec![baseline()]);
        assert_eq!(count(t, "cell_mappings"), "3");
        assert_eq!(describe(t), expected(b));

        // Reverting would drop Nova's tables: refused, nothing changes.
        match t.revert_last_migration() {
            Err(Error::Migration { reason: msg, .. }) => assert!(msg.contains("alembic_version"), "{msg}"),
            other => panic!("revert of an adopted database was not refused: {other:?}"),
        }
        assert_eq!(t.applied_migrations().unwrap(), vec![baseline()]);
        assert_eq!(count(t, "cell_mappings"), "3");
    }

    fn refuses_a_wrong_column_type(t) {
        let b = t.backend();
        t.exec(&nova_ddl(b, 64, true));
        t.exec(&nova_rows(t));
        assert_refused_with(
            t,
            vec![format!(
                "instance_mappings.user_id: expected {} NULL, found {} NULL",
                varchar(b, 255),
                varchar(b, 64)
            )],
        );
    }

    fn refuses_a_missing_index(t) {
        t.exec(&nova_ddl(t.backend(), 255, false));
        t.exec(&nova_rows(t));
        assert_refused_with(
            t,
            vec!["instance_mappings: missing index project_id_idx (project_id)".to_owned()],
        );
    }

    fn refuses_tables_of_unknown_origin(t) {
        let ddl = nova_ddl(t.backend(), 255, true);
        let without_alembic = ddl
            .split("\nCREATE TABLE alembic_version")
            .next()
            .unwrap();
        t.exec(without_alembic);
        t.exec(&nova_rows(t));
        let before = tables(t);
        match t.migrate() {
            Err(Error::Migration { reason: msg, .. }) => {
                assert!(msg.contains("unknown origin"), "{msg}");
                assert!(msg.contains("cell_mappings"), "{msg}");
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(tables(t), before);
        assert_eq!(count(t, "instance_mappings"), "3");
    }

    fn refuses_a_nova_database_without_mapping_tables(t) {
        t.exec(
            "CREATE TABLE alembic_version (version_num VARCHAR(32) NOT NULL PRIMARY KEY);\
             INSERT INTO alembic_version (version_num) VALUES ('13863f4e1612');",
        );
        match t.migrate() {
            Err(Error::Migration { reason: msg, .. }) => assert!(msg.contains("cell database"), "{msg}"),
            other => panic!("{other:?}"),
        }
        assert_eq!(tables(t), vec!["alembic_version".to_owned()]);
    }

    fn migrates_an_empty_database(t) {
        assert!(tables(t).is_empty());
        t.migrate().unwrap();
        assert_eq!(describe(t), expected(t.backend()));
        assert_eq!(t.applied_migrations().unwrap(), vec![baseline()]);
        t.migrate().unwrap();
        assert_eq!(t.applied_migrations().unwrap(), vec![baseline()]);
    }
}
