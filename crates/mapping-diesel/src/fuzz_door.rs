//! The entry points of the fuzz targets in `fuzz/` (feature `fuzzing`).
//!
//! Not part of the API: it exists so that the targets reach the hand-written
//! parsers however private their modules are, and re-exports exactly what the
//! targets use.

use chrono::NaiveDateTime;
use diesel::prelude::*;
use diesel::sql_types::Timestamp;

use crate::connection::DbConnection;
use crate::timestamp::ReadTimestamp;

pub use crate::timestamp::SQLITE_FORMAT;
pub use crate::url::{BackendKind, ConnectionUrl, UrlError};
pub use mapping_model::expand_url_template;

/// The URL with its secrets in place, in the normalised form that parses
/// back to the same value.
pub fn unredacted(url: &ConnectionUrl) -> String {
    url.unredacted()
}

/// The secrets the redacted form of `url` must not show.
pub fn secrets(url: &ConnectionUrl) -> Vec<&str> {
    url.secrets()
}

/// Nova's SQLite timestamp text, read by the fast path alone.
pub fn parse_nova_timestamp(text: &str) -> Option<NaiveDateTime> {
    crate::timestamp::parse_nova_text(text)
}

/// A fresh in-memory SQLite connection.
pub fn sqlite_memory() -> ConnectionResult<DbConnection> {
    diesel::SqliteConnection::establish(":memory:").map(DbConnection::Sqlite)
}

#[derive(QueryableByName)]
struct TimestampRow {
    #[diesel(sql_type = Timestamp)]
    t: ReadTimestamp,
}

/// Reads `text` as a timestamp column value stored as SQLite text, the way
/// the row structs read one (fast path, then diesel's parser).
pub fn read_sqlite_timestamp(conn: &mut DbConnection, text: &str) -> Option<NaiveDateTime> {
    diesel::sql_query("SELECT ? AS t")
        .bind::<diesel::sql_types::Text, _>(text)
        .get_result::<TimestampRow>(conn)
        .ok()
        .map(|row| row.t.0)
}

/// The named unique constraints the SQLite DDL tokenizer finds.
pub fn sqlite_named_unique_constraints(create_sql: &str) -> Vec<(String, Vec<String>)> {
    crate::schema_check::ddl::sqlite_named_unique_constraints(create_sql)
}

/// True for a statement the schema-check target runs: `CREATE TABLE`,
/// `CREATE INDEX` or `CREATE UNIQUE INDEX`, with no `SELECT` (so no
/// `CREATE TABLE … AS SELECT`, whose query could run for ever).
fn is_plain_create(statement: &str) -> bool {
    let words: Vec<String> = without_leading_comments(statement)
        .split_whitespace()
        .take(3)
        .map(str::to_ascii_uppercase)
        .collect();
    let head: Vec<&str> = words.iter().map(String::as_str).collect();
    let create = matches!(
        head.as_slice(),
        ["CREATE", "TABLE", ..] | ["CREATE", "INDEX", ..] | ["CREATE", "UNIQUE", "INDEX"]
    );
    create && !statement.to_ascii_uppercase().contains("SELECT")
}

/// `statement` after any leading whitespace, `-- …` and `/* … */` comments.
fn without_leading_comments(mut statement: &str) -> &str {
    loop {
        statement = statement.trim_start();
        if let Some(comment) = statement.strip_prefix("--") {
            statement = comment.split_once('\n').map_or("", |(_, rest)| rest);
        } else if let Some(comment) = statement.strip_prefix("/*") {
            statement = comment.split_once("*/").map_or("", |(_, rest)| rest);
        } else {
            return statement;
        }
    }
}

/// Runs the `;`-separated `CREATE TABLE` / `CREATE [UNIQUE] INDEX`
/// statements of `ddl` on a fresh in-memory SQLite database (others are
/// skipped, as are statements SQLite refuses), then the schema check and the
/// adoption on it. Returns the differences from Nova's schema, or why the
/// schema could not be read.
pub fn sqlite_schema_check(ddl: &str) -> Result<Vec<String>, String> {
    let mut conn = sqlite_memory().map_err(|e| e.to_string())?;
    for statement in ddl.split(';').filter(|s| is_plain_create(s)) {
        let _refused_or_created = diesel::sql_query(statement).execute(&mut conn);
    }
    let found = crate::schema_check::introspect(&mut conn).map_err(|e| e.to_string())?;
    let differences = crate::schema_check::differences(
        &crate::schema_check::expected(BackendKind::Sqlite),
        &found,
    );
    let _adopted_or_refused = crate::schema_check::adopt_nova_schema(&mut conn);
    Ok(differences)
}
