//! The object API: one file per mapping type, queries beside their rows.

pub mod bulk;
pub mod cell_mapping;
mod counts;
pub mod host_mapping;
pub mod instance_mapping;
mod marker;
pub mod paging;

use diesel::backend::Backend;
use diesel::prelude::*;
use diesel::query_builder::{AstPass, Query, QueryFragment, QueryId};
use diesel::sql_types::Integer;

use mapping_model::schema::instance_mappings;

use crate::connection::{DbConnection, MultiBackend};
use crate::timestamp::NovaTimestamp;
use crate::url::BackendKind;

/// Most uuids bound in one statement: far below the smallest bind-parameter
/// limit of the three engines (SQLite's 32,766), so any number of uuids is
/// handled in chunks.
pub const UUID_CHUNK: usize = 5_000;

/// One row to insert, already validated (single and bulk creates). A `None`
/// cell is written as NULL, so rows of a multi-row insert all bind alike.
#[derive(Insertable)]
#[diesel(table_name = instance_mappings, treat_none_as_default_value = false)]
pub(crate) struct InstanceInsert<'a> {
    pub created_at: NovaTimestamp,
    pub instance_uuid: &'a str,
    pub cell_id: Option<i32>,
    pub project_id: &'a str,
    pub user_id: &'a str,
    pub queued_for_delete: bool,
}

/// Runs the same diesel expression on the inner connection of whichever
/// backend `conn` holds: `on_inner!(tx.conn, |c| query.load::<Row>(c))`.
///
/// The hot read paths use it because diesel's `MultiConnection` renders the
/// full SQL text of a query again on every execution (to look the statement
/// up and to collect its binds), which costs more than the lookup itself on
/// SQLite; an inner connection finds its cached statement by the query's
/// type. The expression is the one shared code path, compiled per backend.
macro_rules! on_inner {
    ($conn:expr, |$c:ident| $body:expr) => {
        match $conn {
            $crate::connection::DbConnection::Sqlite($c) => $body,
            #[cfg(feature = "postgres")]
            $crate::connection::DbConnection::Postgres($c) => $body,
            #[cfg(feature = "mysql")]
            $crate::connection::DbConnection::Mysql($c) => $body,
        }
    };
}
pub(crate) use on_inner;

/// `<insert> RETURNING id`, for the backends that have it.
#[derive(Debug, Clone, Copy, QueryId)]
struct ReturningId<Q>(Q);

impl<Q, DB> QueryFragment<DB> for ReturningId<Q>
where
    DB: Backend,
    Q: QueryFragment<DB>,
{
    fn walk_ast<'b>(&'b self, mut out: AstPass<'_, 'b, DB>) -> QueryResult<()> {
        self.0.walk_ast(out.reborrow())?;
        out.push_sql(" RETURNING id");
        Ok(())
    }
}

impl<Q> Query for ReturningId<Q> {
    type SqlType = Integer;
}

impl<Q> RunQueryDsl<DbConnection> for ReturningId<Q> {}

#[derive(QueryableByName)]
struct LastId {
    #[diesel(sql_type = Integer)]
    id: i32,
}

/// Runs an insert of one row and returns the new row's id: `RETURNING id` on
/// PostgreSQL and SQLite (one round trip). MySQL has no `RETURNING`, and
/// MariaDB's cannot be used through diesel (which reads a prepared
/// statement's result metadata before executing it, and MariaDB 10.11's
/// prepare reply for `INSERT … RETURNING` has none: "No metadata exists"),
/// so there the insert and `LAST_INSERT_ID()` run in one transaction (a
/// savepoint inside a caller's): a connection lost between them can never
/// leave a committed row whose create reported a failure. The one
/// per-backend step of every create.
pub(crate) fn insert_returning_id<Q>(conn: &mut DbConnection, insert: Q) -> QueryResult<i32>
where
    Q: QueryFragment<MultiBackend> + QueryId + RunQueryDsl<DbConnection>,
    Q: diesel::query_dsl::methods::ExecuteDsl<DbConnection>,
{
    match conn.backend() {
        BackendKind::Mysql => conn.transaction(|conn| {
            insert.execute(conn)?;
            last_insert_id(conn)
        }),
        BackendKind::Sqlite | BackendKind::Postgres => ReturningId(insert).get_result(conn),
    }
}

/// [`insert_returning_id`] for a write that finds its own row when its
/// outcome is unknown (an instance-mapping create): on MySQL the insert and
/// `LAST_INSERT_ID()` (a per-session value, no work for the server) run as
/// they are, two round trips instead of four. Outside a transaction the
/// insert is committed on its own; if the connection is lost before the id
/// is read, the create's outcome is unknown and its re-run finds the row.
pub(crate) fn insert_returning_id_findable<Q>(
    conn: &mut DbConnection,
    insert: Q,
) -> QueryResult<i32>
where
    Q: QueryFragment<MultiBackend> + QueryId + RunQueryDsl<DbConnection>,
    Q: diesel::query_dsl::methods::ExecuteDsl<DbConnection>,
{
    match conn.backend() {
        BackendKind::Mysql => {
            insert.execute(conn)?;
            last_insert_id(conn)
        }
        BackendKind::Sqlite | BackendKind::Postgres => ReturningId(insert).get_result(conn),
    }
}

/// `LAST_INSERT_ID()` of this MySQL session.
fn last_insert_id(conn: &mut DbConnection) -> QueryResult<i32> {
    diesel::sql_query("SELECT CAST(LAST_INSERT_ID() AS SIGNED) AS id")
        .get_result::<LastId>(conn)
        .map(|r| r.id)
}
