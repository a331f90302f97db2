//! Raw-SQL reads for the integration tests: what is really stored, seen
//! without the object API.

#![allow(dead_code)]

use diesel::sql_types::{Nullable, Text};
use diesel::{QueryableByName, RunQueryDsl};
use mapping_testkit::TestDb;

#[derive(QueryableByName)]
struct One {
    #[diesel(sql_type = Nullable<Text>)]
    v: Option<String>,
}

/// Runs `sql`, which must select one nullable text column named `v`, and
/// returns its values.
pub fn strings(t: &TestDb, sql: &str) -> Vec<Option<String>> {
    t.db.with_connection(|c| {
        diesel::sql_query(sql)
            .load::<One>(c)
            .map_err(|e| cell_mappings::Error::Migration(e.to_string()))
    })
    .unwrap_or_else(|e| panic!("raw query failed on {:?}: {e}\n{sql}", t.backend()))
    .into_iter()
    .map(|r| r.v)
    .collect()
}

/// The single value `sql` selects as `v`.
pub fn string(t: &TestDb, sql: &str) -> Option<String> {
    let mut all = strings(t, sql);
    assert_eq!(all.len(), 1, "expected one row from {sql}, got {all:?}");
    all.remove(0)
}

/// How a boolean column of one row is stored: `"NULL"`, `"false"` or `"true"`.
pub fn stored_bool(t: &TestDb, table: &str, column: &str, where_clause: &str) -> String {
    string(
        t,
        &format!(
            "SELECT CASE WHEN {column} IS NULL THEN 'NULL' WHEN {column} = {f} THEN 'false' \
             ELSE 'true' END AS v FROM {table} WHERE {where_clause}",
            f = t.sql_bool(false)
        ),
    )
    .unwrap_or_else(|| panic!("CASE gave NULL"))
}

/// Inserts an instance mapping by raw SQL, as an old release or a tool would,
/// with `NULL` wherever an argument is `None`.
pub fn raw_instance(
    t: &TestDb,
    instance_uuid: &str,
    cell_id: Option<i32>,
    project_id: &str,
    user_id: Option<&str>,
    queued_for_delete: Option<bool>,
) {
    let cell = cell_id.map_or_else(|| "NULL".to_owned(), |id| id.to_string());
    let user = user_id.map_or_else(|| "NULL".to_owned(), |u| format!("'{u}'"));
    let queued = queued_for_delete.map_or("NULL", |q| t.sql_bool(q));
    t.exec(&format!(
        "INSERT INTO instance_mappings (instance_uuid, cell_id, project_id, user_id, queued_for_delete) \
         VALUES ('{instance_uuid}', {cell}, '{project_id}', {user}, {queued})"
    ));
}

/// Sorted copy of some strings, for comparing sets.
pub fn sorted<I, S>(items: I) -> Vec<String>
where
    I: IntoIterator<Item = S>,
    S: Into<String>,
{
    let mut v: Vec<String> = items.into_iter().map(Into::into).collect();
    v.sort();
    v
}
