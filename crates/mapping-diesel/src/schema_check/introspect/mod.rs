//! Reading the shape of the mapping tables of a live database from its
//! catalog: one module per kind of catalog.

mod server;
mod sqlite;

use diesel::prelude::*;
use diesel::sql_types::Text;
use mapping_model::{Error, Result};

use super::description::SchemaDescription;
use super::MAPPING_TABLES;
use crate::connection::{DbConnection, MultiBackend};
use crate::url::BackendKind;

#[derive(QueryableByName)]
struct NameRow {
    #[diesel(sql_type = Text)]
    name: String,
}

pub(super) fn load<T>(conn: &mut DbConnection, operation: &'static str, sql: &str) -> Result<Vec<T>>
where
    T: QueryableByName<MultiBackend> + 'static,
{
    diesel::sql_query(sql)
        .load::<T>(conn)
        .map_err(|source| Error::Database { operation, source })
}

/// `'a', 'b', 'c'` for the mapping tables, for `IN (...)` lists.
pub(super) fn mapping_table_list() -> String {
    MAPPING_TABLES
        .iter()
        .map(|t| format!("'{t}'"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// A SQL string literal.
pub(super) fn quote_literal(s: &str) -> String {
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
        BackendKind::Sqlite => sqlite::introspect_sqlite(conn),
        BackendKind::Postgres => server::introspect_server(conn, server::Server::Postgres),
        BackendKind::Mysql => server::introspect_server(conn, server::Server::Mysql),
    }
}

pub(super) fn normalize_action(action: &str, backend: BackendKind) -> String {
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
