//! SQLite: `sqlite_master` and the `pragma_*` table-valued functions.

use std::collections::BTreeMap;

use diesel::prelude::*;
use diesel::sql_types::{BigInt, Nullable, Text};
use mapping_model::Result;

use super::{load, mapping_table_list, normalize_action, quote_literal};
use crate::connection::DbConnection;
use crate::schema_check::ddl::sqlite_named_unique_constraints;
use crate::schema_check::description::{
    ColumnDescription, ForeignKeyDescription, IndexDescription, SchemaDescription, TableDescription,
};
use crate::url::BackendKind;

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

/// SQLite: `sqlite_master` and the `pragma_*` table-valued functions.
pub(super) fn introspect_sqlite(conn: &mut DbConnection) -> Result<SchemaDescription> {
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
