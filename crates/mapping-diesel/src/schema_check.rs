//! Checking an existing database's tables against SPEC §2, and adopting a
//! database that Nova's own migrations created.
//!
//! The shape of the three mapping tables is captured in a
//! [`SchemaDescription`]: per table, the columns in physical order (type as
//! the engine reports it, nullability, default, auto-increment), the primary
//! key, the indexes, the unique constraints, the foreign keys and, on MySQL,
//! the engine and character set. [`expected`] gives the description of the
//! schema Nova's migrations produce on a backend, [`introspect`] reads the
//! description of a live database from its catalog, and [`differences`]
//! compares the two line by line. [`check`] puts the three together.
//!
//! [`adopt_nova_schema`] runs before our migrations: a `nova_api` database
//! made by Nova (it has Nova's `alembic_version` table) is checked and, when
//! its tables have the expected shape, our baseline migration is recorded as
//! applied without touching the tables.

use std::collections::BTreeMap;
use std::fmt;

use diesel::prelude::*;
use diesel::sql_types::{BigInt, Nullable, Text};
use diesel_migrations::MigrationHarness;
use mapping_model::{Error, Result};

use crate::connection::{DbConnection, MultiBackend};
use crate::url::BackendKind;

/// The tables this library owns, in creation order.
pub const MAPPING_TABLES: [&str; 3] = ["cell_mappings", "host_mappings", "instance_mappings"];

/// The table in which Nova's migration tool (alembic) records its version.
pub const ALEMBIC_VERSION_TABLE: &str = "alembic_version";

/// The table in which diesel records applied migrations.
pub const DIESEL_MIGRATIONS_TABLE: &str = "__diesel_schema_migrations";

/// The shape of the mapping tables of one database.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SchemaDescription {
    /// The tables present, by name.
    pub tables: BTreeMap<String, TableDescription>,
}

/// The shape of one table.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TableDescription {
    /// The columns, in physical order.
    pub columns: Vec<ColumnDescription>,
    /// The primary-key columns, in key order.
    pub primary_key: Vec<String>,
    /// Indexes that do not back the primary key or a unique constraint, by name.
    pub indexes: BTreeMap<String, IndexDescription>,
    /// Unique constraints, by name, with their columns in order. (On MySQL
    /// every unique index is a unique constraint.)
    pub unique_constraints: BTreeMap<String, Vec<String>>,
    /// Foreign keys, sorted by columns.
    pub foreign_keys: Vec<ForeignKeyDescription>,
    /// Table options: `engine` and `charset` on MySQL, nothing elsewhere.
    pub options: BTreeMap<String, String>,
}

/// One column.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ColumnDescription {
    /// Column name.
    pub name: String,
    /// The type as the engine reports it, lower-cased (`varchar(36)`,
    /// `character varying(36)`, `tinyint(1)`, …; MySQL integer display widths
    /// are dropped, so `int(11)` is `int`).
    pub data_type: String,
    /// Whether NULL is allowed.
    pub nullable: bool,
    /// The server default, if any (auto-increment is not a default).
    pub default: Option<String>,
    /// Whether the database numbers new rows itself (MySQL `AUTO_INCREMENT`,
    /// PostgreSQL `serial`/identity, SQLite rowid alias).
    pub auto_increment: bool,
}

/// One index.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IndexDescription {
    /// The indexed columns, in order.
    pub columns: Vec<String>,
    /// Whether the index is unique (an index made by `CREATE UNIQUE INDEX`).
    pub unique: bool,
}

/// One foreign key.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct ForeignKeyDescription {
    /// The referencing columns, in order.
    pub columns: Vec<String>,
    /// The constraint name as stored (SQLite keeps none).
    pub name: Option<String>,
    /// The referenced table.
    pub referenced_table: String,
    /// The referenced columns, in order.
    pub referenced_columns: Vec<String>,
    /// `ON UPDATE` action (`NO ACTION` when none was given).
    pub on_update: String,
    /// `ON DELETE` action (`NO ACTION` when none was given).
    pub on_delete: String,
}

impl fmt::Display for ColumnDescription {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.data_type)?;
        f.write_str(if self.nullable { " NULL" } else { " NOT NULL" })?;
        if self.auto_increment {
            f.write_str(" AUTO_INCREMENT")?;
        }
        if let Some(d) = &self.default {
            write!(f, " DEFAULT {d}")?;
        }
        Ok(())
    }
}

impl fmt::Display for IndexDescription {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.unique {
            f.write_str("UNIQUE ")?;
        }
        write!(f, "({})", self.columns.join(", "))
    }
}

impl fmt::Display for ForeignKeyDescription {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(name) = &self.name {
            write!(f, "{name} ")?;
        }
        write!(
            f,
            "({}) REFERENCES {} ({}) ON UPDATE {} ON DELETE {}",
            self.columns.join(", "),
            self.referenced_table,
            self.referenced_columns.join(", "),
            self.on_update,
            self.on_delete
        )
    }
}

// ---------------------------------------------------------------------------
// The expected schema
// ---------------------------------------------------------------------------

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
/// `backend` (SPEC §2), as [`introspect`] reports it.
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
// ---------------------------------------------------------------------------

/// Every way `found` differs from `expected`, one readable line each (empty
/// when they are the same).
pub fn differences(expected: &SchemaDescription, found: &SchemaDescription) -> Vec<String> {
    let mut out = Vec::new();
    for (name, want) in &expected.tables {
        match found.tables.get(name) {
            None => out.push(format!("missing table {name}")),
            Some(have) => table_differences(name, want, have, &mut out),
        }
    }
    for name in found.tables.keys() {
        if !expected.tables.contains_key(name) {
            out.push(format!("unexpected table {name}"));
        }
    }
    out
}

fn table_differences(
    table: &str,
    want: &TableDescription,
    have: &TableDescription,
    out: &mut Vec<String>,
) {
    for w in &want.columns {
        match have.columns.iter().find(|h| h.name == w.name) {
            None => out.push(format!("{table}.{}: missing column ({w})", w.name)),
            Some(h) if h != w => {
                out.push(format!("{table}.{}: expected {w}, found {h}", w.name));
            }
            Some(_) => {}
        }
    }
    for h in &have.columns {
        if !want.columns.iter().any(|w| w.name == h.name) {
            out.push(format!("{table}.{}: unexpected column ({h})", h.name));
        }
    }
    let want_order: Vec<&str> = want.columns.iter().map(|c| c.name.as_str()).collect();
    let have_order: Vec<&str> = have.columns.iter().map(|c| c.name.as_str()).collect();
    let mut want_sorted = want_order.clone();
    let mut have_sorted = have_order.clone();
    want_sorted.sort_unstable();
    have_sorted.sort_unstable();
    if want_sorted == have_sorted && want_order != have_order {
        out.push(format!(
            "{table}: expected column order ({}), found ({})",
            want_order.join(", "),
            have_order.join(", ")
        ));
    }

    if want.primary_key != have.primary_key {
        out.push(format!(
            "{table}: expected primary key ({}), found ({})",
            want.primary_key.join(", "),
            have.primary_key.join(", ")
        ));
    }

    for (name, w) in &want.indexes {
        match have.indexes.get(name) {
            None => out.push(format!("{table}: missing index {name} {w}")),
            Some(h) if h != w => {
                out.push(format!("{table}: index {name}: expected {w}, found {h}"));
            }
            Some(_) => {}
        }
    }
    for (name, h) in &have.indexes {
        if !want.indexes.contains_key(name) {
            out.push(format!("{table}: unexpected index {name} {h}"));
        }
    }

    for (name, w) in &want.unique_constraints {
        match have.unique_constraints.get(name) {
            None => out.push(format!(
                "{table}: missing unique constraint {name} ({})",
                w.join(", ")
            )),
            Some(h) if h != w => out.push(format!(
                "{table}: unique constraint {name}: expected ({}), found ({})",
                w.join(", "),
                h.join(", ")
            )),
            Some(_) => {}
        }
    }
    for (name, h) in &have.unique_constraints {
        if !want.unique_constraints.contains_key(name) {
            out.push(format!(
                "{table}: unexpected unique constraint {name} ({})",
                h.join(", ")
            ));
        }
    }

    for w in &want.foreign_keys {
        match have.foreign_keys.iter().find(|h| h.columns == w.columns) {
            None => out.push(format!("{table}: missing foreign key {w}")),
            Some(h) if h != w => {
                out.push(format!("{table}: foreign key: expected {w}, found {h}"));
            }
            Some(_) => {}
        }
    }
    for h in &have.foreign_keys {
        if !want.foreign_keys.iter().any(|w| w.columns == h.columns) {
            out.push(format!("{table}: unexpected foreign key {h}"));
        }
    }

    for (key, w) in &want.options {
        match have.options.get(key) {
            Some(h) if h == w => {}
            Some(h) => out.push(format!("{table}: expected {key} {w}, found {h}")),
            None => out.push(format!("{table}: expected {key} {w}, found none")),
        }
    }
    for (key, h) in &have.options {
        if !want.options.contains_key(key) {
            out.push(format!("{table}: unexpected {key} {h}"));
        }
    }
}

// ---------------------------------------------------------------------------
// Introspection
// ---------------------------------------------------------------------------

#[derive(QueryableByName)]
struct NameRow {
    #[diesel(sql_type = Text)]
    name: String,
}

#[derive(QueryableByName)]
struct ColumnRow {
    #[diesel(sql_type = Text)]
    table_name: String,
    #[diesel(sql_type = Text)]
    column_name: String,
    #[diesel(sql_type = Text)]
    data_type: String,
    #[diesel(sql_type = BigInt)]
    nullable: i64,
    #[diesel(sql_type = Nullable<Text>)]
    default_value: Option<String>,
    #[diesel(sql_type = Text)]
    extra: String,
}

#[derive(QueryableByName)]
struct IndexRow {
    #[diesel(sql_type = Text)]
    table_name: String,
    #[diesel(sql_type = Text)]
    index_name: String,
    /// `primary`, `unique` (constraint), `unique_index` or `index`.
    #[diesel(sql_type = Text)]
    kind: String,
    #[diesel(sql_type = Text)]
    column_name: String,
}

#[derive(QueryableByName)]
struct ForeignKeyRow {
    #[diesel(sql_type = Text)]
    table_name: String,
    #[diesel(sql_type = Text)]
    constraint_name: String,
    #[diesel(sql_type = Text)]
    column_name: String,
    #[diesel(sql_type = Text)]
    ref_table: String,
    #[diesel(sql_type = Text)]
    ref_column: String,
    #[diesel(sql_type = Text)]
    on_update: String,
    #[diesel(sql_type = Text)]
    on_delete: String,
}

#[derive(QueryableByName)]
struct OptionRow {
    #[diesel(sql_type = Text)]
    table_name: String,
    #[diesel(sql_type = Text)]
    engine: String,
    #[diesel(sql_type = Text)]
    collation: String,
}

#[derive(QueryableByName)]
struct SqliteColumnRow {
    #[diesel(sql_type = Text)]
    column_name: String,
    #[diesel(sql_type = Text)]
    data_type: String,
    #[diesel(sql_type = BigInt)]
    notnull: i64,
    #[diesel(sql_type = Nullable<Text>)]
    default_value: Option<String>,
    #[diesel(sql_type = BigInt)]
    pk: i64,
}

#[derive(QueryableByName)]
struct SqliteIndexRow {
    #[diesel(sql_type = Text)]
    index_name: String,
    #[diesel(sql_type = BigInt)]
    is_unique: i64,
    #[diesel(sql_type = Text)]
    origin: String,
}

#[derive(QueryableByName)]
struct SqliteIndexColumnRow {
    #[diesel(sql_type = Nullable<Text>)]
    column_name: Option<String>,
}

#[derive(QueryableByName)]
struct SqliteForeignKeyRow {
    #[diesel(sql_type = BigInt)]
    id: i64,
    #[diesel(sql_type = Text)]
    ref_table: String,
    #[diesel(sql_type = Text)]
    column_name: String,
    #[diesel(sql_type = Nullable<Text>)]
    ref_column: Option<String>,
    #[diesel(sql_type = Text)]
    on_update: String,
    #[diesel(sql_type = Text)]
    on_delete: String,
}

#[derive(QueryableByName)]
struct SqlRow {
    #[diesel(sql_type = Text)]
    name: String,
    #[diesel(sql_type = Nullable<Text>)]
    sql: Option<String>,
}

fn load<T>(conn: &mut DbConnection, operation: &'static str, sql: &str) -> Result<Vec<T>>
where
    T: QueryableByName<MultiBackend> + 'static,
{
    diesel::sql_query(sql)
        .load::<T>(conn)
        .map_err(|source| Error::Database { operation, source })
}

/// `'a', 'b', 'c'` for the mapping tables, for `IN (...)` lists.
fn mapping_table_list() -> String {
    MAPPING_TABLES
        .iter()
        .map(|t| format!("'{t}'"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// A SQL string literal.
fn quote_literal(s: &str) -> String {
    format!("'{}'", s.replace('\'', "''"))
}

/// The names of every table of the connected database (the current schema
/// on PostgreSQL), sorted.
pub fn table_names(conn: &mut DbConnection) -> Result<Vec<String>> {
    let sql = match conn.backend() {
        BackendKind::Sqlite => {
            "SELECT name AS name FROM sqlite_master WHERE type = 'table' ORDER BY name"
        }
        BackendKind::Postgres => {
            "SELECT c.relname::text AS name FROM pg_class c \
             JOIN pg_namespace n ON n.oid = c.relnamespace \
             WHERE n.nspname = current_schema() AND c.relkind IN ('r', 'p') ORDER BY 1"
        }
        BackendKind::Mysql => {
            "SELECT TABLE_NAME AS name FROM information_schema.TABLES \
             WHERE TABLE_SCHEMA = DATABASE() AND TABLE_TYPE = 'BASE TABLE' ORDER BY 1"
        }
    };
    let mut names: Vec<String> = load::<NameRow>(conn, "listing tables", sql)?
        .into_iter()
        .map(|r| r.name)
        .collect();
    names.sort();
    Ok(names)
}

/// Reads the shape of the mapping tables that exist in the connected
/// database from its catalog (tables that do not exist are left out).
pub fn introspect(conn: &mut DbConnection) -> Result<SchemaDescription> {
    match conn.backend() {
        BackendKind::Sqlite => introspect_sqlite(conn),
        BackendKind::Postgres => introspect_server(conn, Server::Postgres),
        BackendKind::Mysql => introspect_server(conn, Server::Mysql),
    }
}

/// MySQL reports integer display widths (`int(11)`) on some versions only;
/// they mean nothing, so they are dropped. `tinyint(1)`, the boolean, stays.
fn normalize_mysql_type(t: &str) -> String {
    let t = t.trim().to_ascii_lowercase();
    for int in ["bigint", "mediumint", "smallint", "int"] {
        if let Some(rest) = t.strip_prefix(int) {
            if let Some(close) = rest.strip_prefix('(').and_then(|r| r.find(')')) {
                let after = rest.get(close + 2..).unwrap_or("");
                return format!("{int}{after}");
            }
        }
    }
    t
}

/// `utf8_general_ci` → `utf8`; MySQL's `utf8mb3` is the same as `utf8`.
fn charset_of_collation(collation: &str) -> String {
    let charset = collation.split('_').next().unwrap_or(collation);
    if charset.eq_ignore_ascii_case("utf8mb3") {
        "utf8".to_owned()
    } else {
        charset.to_ascii_lowercase()
    }
}

fn normalize_action(action: &str, backend: BackendKind) -> String {
    let upper = match action {
        // PostgreSQL's one-letter codes.
        "a" => "NO ACTION",
        "r" => "RESTRICT",
        "c" => "CASCADE",
        "n" => "SET NULL",
        "d" => "SET DEFAULT",
        other => other,
    }
    .to_ascii_uppercase();
    // InnoDB treats RESTRICT and NO ACTION alike, and MariaDB reports an
    // omitted clause as RESTRICT.
    if backend == BackendKind::Mysql && upper == "RESTRICT" {
        "NO ACTION".to_owned()
    } else {
        upper
    }
}

/// The server backends, whose catalogs are read with plain queries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Server {
    Postgres,
    Mysql,
}

impl Server {
    fn backend(self) -> BackendKind {
        match self {
            Server::Postgres => BackendKind::Postgres,
            Server::Mysql => BackendKind::Mysql,
        }
    }
}

/// The catalog queries of a server backend: columns, indexes, foreign keys,
/// table options (none on PostgreSQL).
fn server_sql(server: Server) -> [String; 4] {
    let tables = mapping_table_list();
    match server {
        Server::Postgres => [
            format!(
                "SELECT c.relname::text AS table_name, a.attname::text AS column_name, \
                 format_type(a.atttypid, a.atttypmod) AS data_type, \
                 CAST(CASE WHEN a.attnotnull THEN 0 ELSE 1 END AS BIGINT) AS nullable, \
                 pg_get_expr(d.adbin, d.adrelid) AS default_value, \
                 a.attidentity::text AS extra \
                 FROM pg_attribute a \
                 JOIN pg_class c ON c.oid = a.attrelid \
                 JOIN pg_namespace n ON n.oid = c.relnamespace \
                 LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum \
                 WHERE n.nspname = current_schema() AND c.relkind IN ('r', 'p') \
                 AND a.attnum > 0 AND NOT a.attisdropped AND c.relname IN ({tables}) \
                 ORDER BY c.relname, a.attnum"
            ),
            format!(
                "SELECT t.relname::text AS table_name, i.relname::text AS index_name, \
                 CASE WHEN con.contype = 'p' THEN 'primary' WHEN con.contype = 'u' THEN 'unique' \
                 WHEN ix.indisunique THEN 'unique_index' ELSE 'index' END AS kind, \
                 COALESCE(a.attname::text, pg_get_indexdef(ix.indexrelid, k.ord::int, true)) \
                 AS column_name \
                 FROM pg_index ix \
                 JOIN pg_class t ON t.oid = ix.indrelid \
                 JOIN pg_class i ON i.oid = ix.indexrelid \
                 JOIN pg_namespace n ON n.oid = t.relnamespace \
                 CROSS JOIN LATERAL unnest(ix.indkey::smallint[]) WITH ORDINALITY AS k(attnum, ord) \
                 LEFT JOIN pg_attribute a ON a.attrelid = t.oid AND a.attnum = k.attnum \
                 AND k.attnum > 0 \
                 LEFT JOIN pg_constraint con ON con.conindid = ix.indexrelid \
                 AND con.conrelid = t.oid AND con.contype IN ('p', 'u') \
                 WHERE n.nspname = current_schema() AND k.ord <= ix.indnkeyatts \
                 AND t.relname IN ({tables}) \
                 ORDER BY 1, 2, k.ord"
            ),
            format!(
                "SELECT t.relname::text AS table_name, c.conname::text AS constraint_name, \
                 a.attname::text AS column_name, rt.relname::text AS ref_table, \
                 ra.attname::text AS ref_column, \
                 c.confupdtype::text AS on_update, c.confdeltype::text AS on_delete \
                 FROM pg_constraint c \
                 JOIN pg_class t ON t.oid = c.conrelid \
                 JOIN pg_namespace n ON n.oid = t.relnamespace \
                 JOIN pg_class rt ON rt.oid = c.confrelid \
                 CROSS JOIN LATERAL unnest(c.conkey, c.confkey) \
                 WITH ORDINALITY AS k(attnum, refnum, ord) \
                 JOIN pg_attribute a ON a.attrelid = c.conrelid AND a.attnum = k.attnum \
                 JOIN pg_attribute ra ON ra.attrelid = c.confrelid AND ra.attnum = k.refnum \
                 WHERE c.contype = 'f' AND n.nspname = current_schema() \
                 AND t.relname IN ({tables}) \
                 ORDER BY 1, 2, k.ord"
            ),
            // No table options on PostgreSQL.
            String::new(),
        ],
        Server::Mysql => [
            format!(
                "SELECT TABLE_NAME AS table_name, COLUMN_NAME AS column_name, \
                 COLUMN_TYPE AS data_type, \
                 CAST(CASE WHEN IS_NULLABLE = 'YES' THEN 1 ELSE 0 END AS SIGNED) AS nullable, \
                 COLUMN_DEFAULT AS default_value, EXTRA AS extra \
                 FROM information_schema.COLUMNS \
                 WHERE TABLE_SCHEMA = DATABASE() AND TABLE_NAME IN ({tables}) \
                 ORDER BY TABLE_NAME, ORDINAL_POSITION"
            ),
            format!(
                "SELECT TABLE_NAME AS table_name, INDEX_NAME AS index_name, \
                 CASE WHEN INDEX_NAME = 'PRIMARY' THEN 'primary' \
                 WHEN NON_UNIQUE = 0 THEN 'unique' ELSE 'index' END AS kind, \
                 COALESCE(CASE WHEN SUB_PART IS NULL THEN COLUMN_NAME \
                 ELSE CONCAT(COLUMN_NAME, '(', SUB_PART, ')') END, '(expression)') AS column_name \
                 FROM information_schema.STATISTICS \
                 WHERE TABLE_SCHEMA = DATABASE() AND TABLE_NAME IN ({tables}) \
                 ORDER BY TABLE_NAME, INDEX_NAME, SEQ_IN_INDEX"
            ),
            format!(
                "SELECT k.TABLE_NAME AS table_name, k.CONSTRAINT_NAME AS constraint_name, \
                 k.COLUMN_NAME AS column_name, k.REFERENCED_TABLE_NAME AS ref_table, \
                 k.REFERENCED_COLUMN_NAME AS ref_column, \
                 r.UPDATE_RULE AS on_update, r.DELETE_RULE AS on_delete \
                 FROM information_schema.KEY_COLUMN_USAGE k \
                 JOIN information_schema.REFERENTIAL_CONSTRAINTS r \
                 ON r.CONSTRAINT_SCHEMA = k.CONSTRAINT_SCHEMA \
                 AND r.CONSTRAINT_NAME = k.CONSTRAINT_NAME AND r.TABLE_NAME = k.TABLE_NAME \
                 WHERE k.TABLE_SCHEMA = DATABASE() AND k.REFERENCED_TABLE_NAME IS NOT NULL \
                 AND k.TABLE_NAME IN ({tables}) \
                 ORDER BY k.TABLE_NAME, k.CONSTRAINT_NAME, k.ORDINAL_POSITION"
            ),
            format!(
                "SELECT TABLE_NAME AS table_name, COALESCE(ENGINE, '') AS engine, \
                 COALESCE(TABLE_COLLATION, '') AS collation \
                 FROM information_schema.TABLES \
                 WHERE TABLE_SCHEMA = DATABASE() AND TABLE_NAME IN ({tables})"
            ),
        ],
    }
}

/// PostgreSQL and MySQL: one catalog query each for columns, indexes,
/// foreign keys and (MySQL) table options; only the SQL differs.
fn introspect_server(conn: &mut DbConnection, server: Server) -> Result<SchemaDescription> {
    let [columns_sql, indexes_sql, fks_sql, options_sql] = server_sql(server);
    let backend = server.backend();
    let op = "reading the schema";
    let mut out = SchemaDescription::default();

    for row in load::<ColumnRow>(conn, op, &columns_sql)? {
        let mut default = row
            .default_value
            .filter(|d| !d.eq_ignore_ascii_case("NULL"));
        let extra = row.extra.trim().to_ascii_lowercase();
        let mut auto_increment = false;
        let data_type = match server {
            Server::Postgres => {
                // `serial` is a nextval() default; identity columns count too.
                if default
                    .as_deref()
                    .is_some_and(|d| d.starts_with("nextval("))
                {
                    default = None;
                    auto_increment = true;
                }
                if extra == "a" || extra == "d" {
                    auto_increment = true;
                }
                row.data_type.to_ascii_lowercase()
            }
            Server::Mysql => {
                let mut rest: Vec<&str> = Vec::new();
                for part in extra.split_whitespace() {
                    if part == "auto_increment" {
                        auto_increment = true;
                    } else {
                        rest.push(part);
                    }
                }
                // e.g. `on update current_timestamp()`: shown with the default.
                if !rest.is_empty() {
                    let rest = rest.join(" ");
                    default = Some(match default {
                        Some(d) => format!("{d} {rest}"),
                        None => rest,
                    });
                }
                normalize_mysql_type(&row.data_type)
            }
        };
        out.tables
            .entry(row.table_name)
            .or_default()
            .columns
            .push(ColumnDescription {
                name: row.column_name,
                data_type,
                nullable: row.nullable != 0,
                default,
                auto_increment,
            });
    }

    for row in load::<IndexRow>(conn, op, &indexes_sql)? {
        let table = out.tables.entry(row.table_name).or_default();
        match row.kind.as_str() {
            "primary" => table.primary_key.push(row.column_name),
            "unique" => table
                .unique_constraints
                .entry(row.index_name)
                .or_default()
                .push(row.column_name),
            kind => table
                .indexes
                .entry(row.index_name)
                .or_insert_with(|| IndexDescription {
                    columns: Vec::new(),
                    unique: kind == "unique_index",
                })
                .columns
                .push(row.column_name),
        }
    }

    let mut fks: BTreeMap<(String, String), ForeignKeyDescription> = BTreeMap::new();
    for row in load::<ForeignKeyRow>(conn, op, &fks_sql)? {
        let fk = fks
            .entry((row.table_name, row.constraint_name.clone()))
            .or_insert_with(|| ForeignKeyDescription {
                columns: Vec::new(),
                name: Some(row.constraint_name),
                referenced_table: row.ref_table,
                referenced_columns: Vec::new(),
                on_update: normalize_action(&row.on_update, backend),
                on_delete: normalize_action(&row.on_delete, backend),
            });
        fk.columns.push(row.column_name);
        fk.referenced_columns.push(row.ref_column);
    }
    for ((table, _), fk) in fks {
        out.tables.entry(table).or_default().foreign_keys.push(fk);
    }

    if !options_sql.is_empty() {
        for row in load::<OptionRow>(conn, op, &options_sql)? {
            let table = out.tables.entry(row.table_name).or_default();
            table.options.insert("engine".to_owned(), row.engine);
            table
                .options
                .insert("charset".to_owned(), charset_of_collation(&row.collation));
        }
    }

    for table in out.tables.values_mut() {
        table.foreign_keys.sort();
    }
    Ok(out)
}

/// SQLite: `sqlite_master` and the `pragma_*` table-valued functions.
fn introspect_sqlite(conn: &mut DbConnection) -> Result<SchemaDescription> {
    let op = "reading the schema";
    let tables = load::<SqlRow>(
        conn,
        op,
        &format!(
            "SELECT name AS name, sql AS sql FROM sqlite_master \
             WHERE type = 'table' AND name IN ({}) ORDER BY name",
            mapping_table_list()
        ),
    )?;
    let mut out = SchemaDescription::default();
    for SqlRow { name, sql } in tables {
        let lit = quote_literal(&name);
        let mut table = TableDescription::default();

        let columns = load::<SqliteColumnRow>(
            conn,
            op,
            &format!(
                "SELECT name AS column_name, type AS data_type, \"notnull\" AS \"notnull\", \
                 dflt_value AS default_value, pk AS pk FROM pragma_table_info({lit}) ORDER BY cid"
            ),
        )?;
        let mut pk: Vec<(i64, String)> = columns
            .iter()
            .filter(|c| c.pk > 0)
            .map(|c| (c.pk, c.column_name.clone()))
            .collect();
        pk.sort();
        let rowid_alias = pk.len() == 1;
        for c in columns {
            // A lone INTEGER primary key is the rowid: SQLite numbers rows.
            let auto_increment =
                rowid_alias && c.pk == 1 && c.data_type.eq_ignore_ascii_case("INTEGER");
            table.columns.push(ColumnDescription {
                name: c.column_name,
                data_type: c
                    .data_type
                    .split_whitespace()
                    .collect::<Vec<_>>()
                    .join(" ")
                    .to_ascii_lowercase(),
                nullable: c.notnull == 0,
                default: c.default_value,
                auto_increment,
            });
        }
        table.primary_key = pk.into_iter().map(|(_, c)| c).collect();

        let named_uniques = sql
            .as_deref()
            .map(sqlite_named_unique_constraints)
            .unwrap_or_default();
        let indexes = load::<SqliteIndexRow>(
            conn,
            op,
            &format!(
                "SELECT name AS index_name, \"unique\" AS is_unique, origin AS origin \
                 FROM pragma_index_list({lit}) ORDER BY name"
            ),
        )?;
        for ix in indexes {
            let cols: Vec<String> = load::<SqliteIndexColumnRow>(
                conn,
                op,
                &format!(
                    "SELECT name AS column_name FROM pragma_index_info({}) ORDER BY seqno",
                    quote_literal(&ix.index_name)
                ),
            )?
            .into_iter()
            .map(|r| r.column_name.unwrap_or_else(|| "(expression)".to_owned()))
            .collect();
            match ix.origin.as_str() {
                // The primary key is read from table_info.
                "pk" => {}
                "u" => {
                    // SQLite keeps a constraint's name only in the CREATE TABLE text.
                    let name = named_uniques
                        .iter()
                        .find(|(_, c)| *c == cols)
                        .map(|(n, _)| n.clone())
                        .unwrap_or_else(|| format!("(unnamed {})", ix.index_name));
                    table.unique_constraints.insert(name, cols);
                }
                _ => {
                    table.indexes.insert(
                        ix.index_name,
                        IndexDescription {
                            columns: cols,
                            unique: ix.is_unique != 0,
                        },
                    );
                }
            }
        }

        let fk_rows = load::<SqliteForeignKeyRow>(
            conn,
            op,
            &format!(
                "SELECT id AS id, \"table\" AS ref_table, \"from\" AS column_name, \
                 \"to\" AS ref_column, on_update AS on_update, on_delete AS on_delete \
                 FROM pragma_foreign_key_list({lit}) ORDER BY id, seq"
            ),
        )?;
        let mut fks: BTreeMap<i64, ForeignKeyDescription> = BTreeMap::new();
        for r in fk_rows {
            let fk = fks.entry(r.id).or_insert_with(|| ForeignKeyDescription {
                columns: Vec::new(),
                name: None,
                referenced_table: r.ref_table,
                referenced_columns: Vec::new(),
                on_update: normalize_action(&r.on_update, BackendKind::Sqlite),
                on_delete: normalize_action(&r.on_delete, BackendKind::Sqlite),
            });
            fk.columns.push(r.column_name);
            fk.referenced_columns
                .push(r.ref_column.unwrap_or_else(|| "(primary key)".to_owned()));
        }
        table.foreign_keys = fks.into_values().collect();
        table.foreign_keys.sort();
        out.tables.insert(name, table);
    }
    Ok(out)
}

/// A token of SQLite DDL.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Token {
    /// A bare or quoted identifier or keyword (quotes removed).
    Word(String),
    /// Any other single character that matters: `(`, `)`, `,`.
    Punct(char),
    /// A string literal or other character (ignored).
    Other,
}

fn tokenize(sql: &str) -> Vec<Token> {
    let chars: Vec<char> = sql.chars().collect();
    let mut out = Vec::new();
    let mut i = 0;
    let at = |i: usize| chars.get(i).copied();
    while let Some(c) = at(i) {
        if c.is_whitespace() {
            i += 1;
        } else if c == '-' && at(i + 1) == Some('-') {
            while at(i).is_some_and(|c| c != '\n') {
                i += 1;
            }
        } else if c == '/' && at(i + 1) == Some('*') {
            i += 2;
            while at(i).is_some() && !(at(i) == Some('*') && at(i + 1) == Some('/')) {
                i += 1;
            }
            i += 2;
        } else if matches!(c, '"' | '`' | '[' | '\'') {
            let close = if c == '[' { ']' } else { c };
            let mut word = String::new();
            i += 1;
            while let Some(d) = at(i) {
                if d == close {
                    // A doubled quote stands for itself.
                    if close != ']' && at(i + 1) == Some(close) {
                        word.push(d);
                        i += 2;
                        continue;
                    }
                    break;
                }
                word.push(d);
                i += 1;
            }
            i += 1;
            out.push(if c == '\'' {
                Token::Other
            } else {
                Token::Word(word)
            });
        } else if c.is_alphanumeric() || c == '_' || c == '$' {
            let mut word = String::new();
            while let Some(d) = at(i).filter(|d| d.is_alphanumeric() || *d == '_' || *d == '$') {
                word.push(d);
                i += 1;
            }
            out.push(Token::Word(word));
        } else if matches!(c, '(' | ')' | ',') {
            out.push(Token::Punct(c));
            i += 1;
        } else {
            out.push(Token::Other);
            i += 1;
        }
    }
    out
}

fn is_keyword(t: Option<&Token>, kw: &str) -> bool {
    matches!(t, Some(Token::Word(w)) if w.eq_ignore_ascii_case(kw))
}

/// The named unique constraints (`CONSTRAINT name UNIQUE (cols)` as a table
/// constraint, or `col … CONSTRAINT name UNIQUE` on a column) of a
/// `CREATE TABLE` statement, with their columns.
fn sqlite_named_unique_constraints(create_sql: &str) -> Vec<(String, Vec<String>)> {
    let tokens = tokenize(create_sql);
    let mut out = Vec::new();
    let mut depth = 0usize;
    // Index of the first token of the current column or constraint definition.
    let mut element_start: Option<usize> = None;
    let mut i = 0;
    while let Some(tok) = tokens.get(i) {
        match tok {
            Token::Punct('(') => {
                depth += 1;
                if depth == 1 {
                    element_start = Some(i + 1);
                }
            }
            Token::Punct(')') => depth = depth.saturating_sub(1),
            Token::Punct(',') if depth == 1 => element_start = Some(i + 1),
            Token::Word(w) if depth == 1 && w.eq_ignore_ascii_case("CONSTRAINT") => {
                if let (Some(Token::Word(name)), true) =
                    (tokens.get(i + 1), is_keyword(tokens.get(i + 2), "UNIQUE"))
                {
                    let mut j = i + 3;
                    let mut cols = Vec::new();
                    if tokens.get(j) == Some(&Token::Punct('(')) {
                        // Table constraint: the first word of each element.
                        j += 1;
                        let mut inner = 0usize;
                        let mut want_name = true;
                        while let Some(t) = tokens.get(j) {
                            match t {
                                Token::Punct('(') => inner += 1,
                                Token::Punct(')') if inner == 0 => break,
                                Token::Punct(')') => inner -= 1,
                                Token::Punct(',') if inner == 0 => want_name = true,
                                Token::Word(c) if want_name && inner == 0 => {
                                    cols.push(c.clone());
                                    want_name = false;
                                }
                                _ => {}
                            }
                            j += 1;
                        }
                    } else if let Some(Token::Word(c)) = element_start.and_then(|s| tokens.get(s)) {
                        // Column constraint: the column being defined.
                        cols.push(c.clone());
                    }
                    if !cols.is_empty() {
                        out.push((name.clone(), cols));
                    }
                    i = j;
                    continue;
                }
            }
            _ => {}
        }
        i += 1;
    }
    out
}

// ---------------------------------------------------------------------------
// check and adoption
// ---------------------------------------------------------------------------

/// Checks the shape of the three tables without changing anything: `Ok` when
/// the database holds exactly Nova's schema for them, else
/// [`Error::SchemaMismatch`] with one line per difference.
pub fn check(conn: &mut DbConnection) -> Result<()> {
    let found = introspect(conn)?;
    let differences = differences(&expected(conn.backend()), &found);
    if differences.is_empty() {
        Ok(())
    } else {
        for d in &differences {
            tracing::warn!(difference = %d, "schema differs from Nova's");
        }
        Err(Error::SchemaMismatch { differences })
    }
}

#[derive(QueryableByName)]
struct VersionRow {
    #[diesel(sql_type = Text)]
    version: String,
}

/// When Nova's migrations made the tables, records our baseline as applied.
///
/// Runs before our migrations. Nothing happens when none of the three tables
/// exists (a new database) or when our baseline is already recorded. When
/// they exist, Nova's `alembic_version` table exists and our baseline is not
/// recorded, the tables are [`check`]ed: if they have Nova's shape, diesel's
/// migrations table is created if needed and the baseline is recorded as
/// applied, leaving the tables and their rows untouched; if not, the
/// [`Error::SchemaMismatch`] is returned and nothing is changed. Tables of
/// unknown origin (no `alembic_version`, no record of ours), and a Nova
/// database without the mapping tables (a cell database rather than
/// `nova_api`), are refused with [`Error::Migration`].
pub fn adopt_nova_schema(conn: &mut DbConnection) -> Result<()> {
    let Some(baseline) = crate::migrations::MIGRATIONS.first() else {
        return Ok(());
    };
    let version = baseline.version();
    let tables = table_names(conn)?;
    let has = |t: &str| tables.iter().any(|n| n == t);
    let present: Vec<&str> = MAPPING_TABLES.iter().copied().filter(|t| has(t)).collect();
    let nova = has(ALEMBIC_VERSION_TABLE);

    let recorded = has(DIESEL_MIGRATIONS_TABLE)
        && load::<VersionRow>(
            conn,
            "reading applied migrations",
            &format!("SELECT version AS version FROM {DIESEL_MIGRATIONS_TABLE}"),
        )?
        .iter()
        .any(|r| r.version == version);
    if recorded {
        return Ok(());
    }

    if present.is_empty() {
        if nova {
            return Err(Error::Migration(format!(
                "the database has Nova's {ALEMBIC_VERSION_TABLE} table but none of the mapping \
                 tables: it looks like a Nova cell database, not nova_api; refusing to create \
                 the mapping tables in it"
            )));
        }
        return Ok(());
    }

    if !nova {
        return Err(Error::Migration(format!(
            "table(s) {} exist but were not made by Nova (no {ALEMBIC_VERSION_TABLE} table) nor \
             by this library (migration {version} not recorded in {DIESEL_MIGRATIONS_TABLE}); \
             refusing to touch tables of unknown origin",
            present.join(", ")
        )));
    }

    check(conn)?;

    let alembic = load::<VersionRow>(
        conn,
        "reading Nova's schema version",
        &format!("SELECT version_num AS version FROM {ALEMBIC_VERSION_TABLE}"),
    )
    .map(|rows| {
        rows.into_iter()
            .map(|r| r.version)
            .collect::<Vec<_>>()
            .join(",")
    })
    .unwrap_or_default();

    diesel::migration::MigrationConnection::setup(conn).map_err(|source| Error::Database {
        operation: "creating the migrations table",
        source,
    })?;
    conn.run_migration(&crate::migrations::record_only(baseline))
        .map_err(|e| Error::Migration(e.to_string()))?;
    tracing::info!(
        baseline = %version,
        alembic_version = %alembic,
        "adopted the mapping tables made by Nova's migrations"
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mysql_types_lose_display_width_but_keep_tinyint_1() {
        assert_eq!(normalize_mysql_type("int(11)"), "int");
        assert_eq!(normalize_mysql_type("INT"), "int");
        assert_eq!(normalize_mysql_type("int(10) unsigned"), "int unsigned");
        assert_eq!(normalize_mysql_type("bigint(20)"), "bigint");
        assert_eq!(normalize_mysql_type("tinyint(1)"), "tinyint(1)");
        assert_eq!(normalize_mysql_type("varchar(255)"), "varchar(255)");
    }

    #[test]
    fn charsets() {
        assert_eq!(charset_of_collation("utf8mb3_general_ci"), "utf8");
        assert_eq!(charset_of_collation("utf8_general_ci"), "utf8");
        assert_eq!(charset_of_collation("utf8mb4_unicode_ci"), "utf8mb4");
        assert_eq!(charset_of_collation("latin1_swedish_ci"), "latin1");
    }

    #[test]
    fn named_unique_constraints_are_found_in_sqlite_ddl() {
        let sql = "CREATE TABLE \"t\" (\n  id INTEGER NOT NULL, -- the key, (really)\n  \
                   a VARCHAR(36) CONSTRAINT \"one\" UNIQUE,\n  b TEXT DEFAULT 'x,(y',\n  \
                   c TEXT,\n  PRIMARY KEY (id),\n  CONSTRAINT [two] UNIQUE (b, c COLLATE NOCASE),\n  \
                   UNIQUE (c)\n)";
        assert_eq!(
            sqlite_named_unique_constraints(sql),
            vec![
                ("one".to_owned(), vec!["a".to_owned()]),
                ("two".to_owned(), vec!["b".to_owned(), "c".to_owned()]),
            ]
        );
    }

    #[test]
    fn differences_name_what_differs() {
        let want = expected(BackendKind::Mysql);
        assert!(differences(&want, &want).is_empty());

        let mut have = want.clone();
        let im = have.tables.get_mut("instance_mappings").unwrap();
        im.columns
            .iter_mut()
            .find(|c| c.name == "user_id")
            .unwrap()
            .data_type = "varchar(64)".into();
        im.indexes.remove("project_id_idx");
        im.options.insert("charset".into(), "utf8mb4".into());
        have.tables.remove("host_mappings");
        let d = differences(&want, &have);
        assert_eq!(
            d,
            vec![
                "missing table host_mappings",
                "instance_mappings.user_id: expected varchar(255) NULL, found varchar(64) NULL",
                "instance_mappings: missing index project_id_idx (project_id)",
                "instance_mappings: expected charset utf8, found utf8mb4",
            ]
        );
    }

    #[test]
    fn column_order_is_reported() {
        let want = expected(BackendKind::Sqlite);
        let mut have = want.clone();
        let cols = &mut have.tables.get_mut("instance_mappings").unwrap().columns;
        let n = cols.len();
        cols.swap(n - 1, n - 2);
        let d = differences(&want, &have);
        assert_eq!(d.len(), 1, "{d:?}");
        assert!(
            d[0].starts_with("instance_mappings: expected column order ("),
            "{d:?}"
        );
    }
}
