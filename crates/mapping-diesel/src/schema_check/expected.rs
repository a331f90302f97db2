//! The schema Nova's own migrations produce, per backend (docs/schema.md).

use std::collections::BTreeMap;

use super::description::{
    ColumnDescription, ForeignKeyDescription, IndexDescription, SchemaDescription, TableDescription,
};
use crate::url::BackendKind;

/// The type names of one backend.
struct Types {
    datetime: &'static str,
    integer: &'static str,
    boolean: &'static str,
    text: &'static str,
    varchar: &'static str,
}

impl Types {
    fn of(backend: BackendKind) -> Self {
        match backend {
            BackendKind::Sqlite => Self {
                datetime: "datetime",
                integer: "integer",
                boolean: "boolean",
                text: "text",
                varchar: "varchar",
            },
            BackendKind::Postgres => Self {
                datetime: "timestamp without time zone",
                integer: "integer",
                boolean: "boolean",
                text: "text",
                varchar: "character varying",
            },
            BackendKind::Mysql => Self {
                datetime: "datetime",
                integer: "int",
                boolean: "tinyint(1)",
                text: "text",
                varchar: "varchar",
            },
        }
    }

    fn varchar(&self, len: u32) -> String {
        format!("{}({len})", self.varchar)
    }
}

fn column(name: &str, data_type: impl Into<String>, nullable: bool) -> ColumnDescription {
    ColumnDescription {
        name: name.to_owned(),
        data_type: data_type.into(),
        nullable,
        default: None,
        auto_increment: false,
    }
}

fn id_column(types: &Types) -> ColumnDescription {
    ColumnDescription {
        auto_increment: true,
        ..column("id", types.integer, false)
    }
}

fn names(cols: &[&str]) -> Vec<String> {
    cols.iter().map(|c| (*c).to_owned()).collect()
}

fn index(cols: &[&str]) -> IndexDescription {
    IndexDescription {
        columns: names(cols),
        unique: false,
    }
}

/// The foreign key `cell_id → cell_mappings (id)` of `table`, named as the
/// engine names an unnamed one.
fn cell_fk(table: &str, backend: BackendKind) -> ForeignKeyDescription {
    ForeignKeyDescription {
        columns: names(&["cell_id"]),
        name: match backend {
            BackendKind::Sqlite => None,
            BackendKind::Postgres => Some(format!("{table}_cell_id_fkey")),
            BackendKind::Mysql => Some(format!("{table}_ibfk_1")),
        },
        referenced_table: "cell_mappings".to_owned(),
        referenced_columns: names(&["id"]),
        on_update: "NO ACTION".to_owned(),
        on_delete: "NO ACTION".to_owned(),
    }
}

fn table_options(backend: BackendKind) -> BTreeMap<String, String> {
    match backend {
        BackendKind::Mysql => BTreeMap::from([
            ("charset".to_owned(), "utf8".to_owned()),
            ("engine".to_owned(), "InnoDB".to_owned()),
        ]),
        BackendKind::Sqlite | BackendKind::Postgres => BTreeMap::new(),
    }
}

/// The schema Nova's own migrations produce for the three tables on
/// `backend` (docs/schema.md), as `introspect` reports it.
pub fn expected(backend: BackendKind) -> SchemaDescription {
    let t = Types::of(backend);
    let timestamps = || {
        vec![
            column("created_at", t.datetime, true),
            column("updated_at", t.datetime, true),
        ]
    };
    // MySQL adds an index, named after the column, to back each unnamed
    // foreign key that no other index starts with.
    let fk_index = |indexes: &mut BTreeMap<String, IndexDescription>| {
        if backend == BackendKind::Mysql {
            indexes.insert("cell_id".to_owned(), index(&["cell_id"]));
        }
    };

    let mut cell_columns = timestamps();
    cell_columns.extend([
        id_column(&t),
        column("uuid", t.varchar(36), false),
        column("name", t.varchar(255), true),
        column("transport_url", t.text, true),
        column("database_connection", t.text, true),
        column("disabled", t.boolean, true),
    ]);
    let cells = TableDescription {
        columns: cell_columns,
        primary_key: names(&["id"]),
        indexes: BTreeMap::from([("uuid_idx".to_owned(), index(&["uuid"]))]),
        unique_constraints: BTreeMap::from([(
            "uniq_cell_mappings0uuid".to_owned(),
            names(&["uuid"]),
        )]),
        foreign_keys: Vec::new(),
        options: table_options(backend),
    };

    let mut host_columns = timestamps();
    host_columns.extend([
        id_column(&t),
        column("cell_id", t.integer, false),
        column("host", t.varchar(255), false),
    ]);
    let mut host_indexes = BTreeMap::from([("host_idx".to_owned(), index(&["host"]))]);
    fk_index(&mut host_indexes);
    let hosts = TableDescription {
        columns: host_columns,
        primary_key: names(&["id"]),
        indexes: host_indexes,
        unique_constraints: BTreeMap::from([(
            "uniq_host_mappings0host".to_owned(),
            names(&["host"]),
        )]),
        foreign_keys: vec![cell_fk("host_mappings", backend)],
        options: table_options(backend),
    };

    let mut instance_columns = timestamps();
    instance_columns.extend([
        id_column(&t),
        column("instance_uuid", t.varchar(36), false),
        column("cell_id", t.integer, true),
        column("project_id", t.varchar(255), false),
        column("queued_for_delete", t.boolean, true),
        column("user_id", t.varchar(255), true),
    ]);
    let mut instance_indexes = BTreeMap::from([
        ("instance_uuid_idx".to_owned(), index(&["instance_uuid"])),
        ("project_id_idx".to_owned(), index(&["project_id"])),
        (
            "instance_mappings_user_id_project_id_idx".to_owned(),
            index(&["user_id", "project_id"]),
        ),
    ]);
    fk_index(&mut instance_indexes);
    let instances = TableDescription {
        columns: instance_columns,
        primary_key: names(&["id"]),
        indexes: instance_indexes,
        unique_constraints: BTreeMap::from([(
            "uniq_instance_mappings0instance_uuid".to_owned(),
            names(&["instance_uuid"]),
        )]),
        foreign_keys: vec![cell_fk("instance_mappings", backend)],
        options: table_options(backend),
    };

    SchemaDescription {
        tables: BTreeMap::from([
            ("cell_mappings".to_owned(), cells),
            ("host_mappings".to_owned(), hosts),
            ("instance_mappings".to_owned(), instances),
        ]),
    }
}

// ---------------------------------------------------------------------------
// Comparison
