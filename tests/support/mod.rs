//! Helpers shared by the integration tests: raw-SQL reads of what is really
//! stored, raw inserts as other tools would write them, error assertions,
//! snapshots of all rows, and killing a test database's server connections.
#![allow(dead_code)]

use ::cell_mappings::model::schema::{cell_mappings, host_mappings, instance_mappings};
use ::cell_mappings::{BackendKind, ConnectionUrl, Database, Error};
use chrono::NaiveDateTime;
use diesel::prelude::*;
use diesel::sql_types::{Nullable, Text};
use mapping_testkit::TestDb;

#[derive(QueryableByName)]
struct One {
    #[diesel(sql_type = Nullable<Text>)]
    v: Option<String>,
}

/// Runs `sql`, which must select one nullable text column named `v`, and
/// returns its values.
pub fn strings(t: &TestDb, sql: &str) -> Vec<Option<String>> {
    t.db.with_connection(|c| diesel::sql_query(sql).load::<One>(c).map_err(Error::from))
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

/// Asserts that `result` is `Error::InvalidInput` naming `field`.
#[track_caller]
pub fn assert_invalid<T: std::fmt::Debug>(result: ::cell_mappings::Result<T>, field: &str) {
    match result {
        Err(Error::InvalidInput { field: got, reason }) => {
            assert_eq!(got, field, "wrong field named (reason: {reason})")
        }
        other => panic!("expected InvalidInput on `{field}`, got {other:?}"),
    }
}

type CellTuple = (
    i32,
    String,
    Option<String>,
    Option<String>,
    Option<String>,
    Option<bool>,
    Option<NaiveDateTime>,
    Option<NaiveDateTime>,
);
type InstanceTuple = (
    i32,
    String,
    Option<i32>,
    String,
    Option<String>,
    Option<bool>,
    Option<NaiveDateTime>,
    Option<NaiveDateTime>,
);
type HostTuple = (
    i32,
    i32,
    String,
    Option<NaiveDateTime>,
    Option<NaiveDateTime>,
);

/// Every row of the three tables, read raw (no joins, no object mapping), so
/// that "nothing was written" can be checked exactly.
#[derive(Debug, PartialEq)]
pub struct Snapshot {
    cells: Vec<CellTuple>,
    instances: Vec<InstanceTuple>,
    hosts: Vec<HostTuple>,
}

impl Snapshot {
    /// Number of rows in all three tables.
    pub fn rows(&self) -> usize {
        self.cells.len() + self.instances.len() + self.hosts.len()
    }
}

/// Reads every row of the three tables.
pub fn snapshot(db: &Database) -> Snapshot {
    db.with_connection(|c| {
        let cells = cell_mappings::table
            .select((
                cell_mappings::id,
                cell_mappings::uuid,
                cell_mappings::name,
                cell_mappings::transport_url,
                cell_mappings::database_connection,
                cell_mappings::disabled,
                cell_mappings::created_at,
                cell_mappings::updated_at,
            ))
            .order(cell_mappings::id)
            .load::<CellTuple>(c)?;
        let instances = instance_mappings::table
            .select((
                instance_mappings::id,
                instance_mappings::instance_uuid,
                instance_mappings::cell_id,
                instance_mappings::project_id,
                instance_mappings::user_id,
                instance_mappings::queued_for_delete,
                instance_mappings::created_at,
                instance_mappings::updated_at,
            ))
            .order(instance_mappings::id)
            .load::<InstanceTuple>(c)?;
        let hosts = host_mappings::table
            .select((
                host_mappings::id,
                host_mappings::cell_id,
                host_mappings::host,
                host_mappings::created_at,
                host_mappings::updated_at,
            ))
            .order(host_mappings::id)
            .load::<HostTuple>(c)?;
        Ok(Snapshot {
            cells,
            instances,
            hosts,
        })
    })
    .expect("snapshot of the mapping tables")
}

/// The name of the test database on its server.
pub fn database_name(t: &TestDb) -> String {
    ConnectionUrl::parse(t.url())
        .expect("test URL parses")
        .database()
        .expect("server URL names a database")
        .to_owned()
}

/// Kills, from an admin connection, every server-side connection of the test
/// database (the shared server keeps running), and waits until they are gone.
/// Returns how many were killed.
pub fn kill_server_connections(t: &TestDb) -> usize {
    #[derive(QueryableByName)]
    struct Id {
        #[diesel(sql_type = diesel::sql_types::BigInt)]
        id: i64,
    }
    let name = database_name(t);
    let admin_url = mapping_testkit::admin_url(t.backend()).expect("server backend");
    let admin = Database::open(&admin_url).expect("admin connection");
    admin
        .with_connection(|c| match t.backend() {
            BackendKind::Postgres => {
                // Pids first, then one call each: inside a single WHERE the
                // planner may evaluate pg_terminate_backend before the filter.
                let ids = diesel::sql_query(format!(
                    "SELECT CAST(pid AS BIGINT) AS id FROM pg_stat_activity \
                     WHERE datname = '{name}' AND pid <> pg_backend_pid()"
                ))
                .load::<Id>(c)?;
                for Id { id } in &ids {
                    // With a timeout, pg_terminate_backend waits until the
                    // backend has exited.
                    diesel::sql_query(format!("SELECT pg_terminate_backend({id}, 10000)"))
                        .execute(c)?;
                }
                Ok(ids.len())
            }
            BackendKind::Mysql => {
                let ids = diesel::sql_query(format!(
                    "SELECT CAST(id AS SIGNED) AS id FROM information_schema.processlist \
                     WHERE db = '{name}' AND id <> CONNECTION_ID()"
                ))
                .load::<Id>(c)?;
                for Id { id } in &ids {
                    // The connection may have ended on its own meanwhile.
                    let _ = diesel::sql_query(format!("KILL {id}")).execute(c);
                }
                // Wait (bounded) until the server has really dropped them.
                let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
                loop {
                    let left = diesel::sql_query(format!(
                        "SELECT CAST(id AS SIGNED) AS id FROM information_schema.processlist \
                         WHERE db = '{name}' AND id <> CONNECTION_ID()"
                    ))
                    .load::<Id>(c)?;
                    if !left.iter().any(|l| ids.iter().any(|i| i.id == l.id)) {
                        break;
                    }
                    assert!(
                        std::time::Instant::now() < deadline,
                        "killed connections did not go away"
                    );
                    std::thread::yield_now();
                }
                Ok(ids.len())
            }
            BackendKind::Sqlite => panic!("SQLite has no server connections"),
        })
        .map_err(|e: Error| e)
        .expect("killing the test database's connections")
}
