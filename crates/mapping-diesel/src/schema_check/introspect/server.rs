//! PostgreSQL and MySQL: one catalog query each for columns, indexes,
//! foreign keys and (MySQL) table options.

use std::collections::BTreeMap;

use diesel::prelude::*;
use diesel::sql_types::{BigInt, Nullable, Text};
use mapping_model::Result;

use super::{load, mapping_table_list, normalize_action};
use crate::connection::DbConnection;
use crate::schema_check::description::{
    ColumnDescription, ForeignKeyDescription, IndexDescription, SchemaDescription,
};
use crate::url::BackendKind;

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

/// The server backends, whose catalogs are read with plain queries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Server {
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
pub(super) fn introspect_server(
    conn: &mut DbConnection,
    server: Server,
) -> Result<SchemaDescription> {
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
}
