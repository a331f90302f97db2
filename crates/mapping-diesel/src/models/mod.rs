//! The object API: one file per mapping type, queries beside their rows.

pub mod bulk;
pub mod cell_mapping;
mod counts;
pub mod host_mapping;
pub mod instance_mapping;
mod marker;
pub mod paging;

use diesel::backend::Backend;
use diesel::expression::{
    is_aggregate, AppearsOnTable, Expression, SelectableExpression, ValidGrouping,
};
use diesel::prelude::*;
use diesel::query_builder::{AstPass, Query, QueryFragment, QueryId};
use diesel::serialize::ToSql;
use diesel::sql_types::{Bool, HasSqlType, Integer, Text};

use mapping_model::schema::instance_mappings;

use crate::timestamp::NovaTimestamp;

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

/// The lengths an `IN` list of uuids is padded to on SQLite and MySQL.
///
/// diesel renders `IN (?, ?, …)` afresh for every list and never caches the
/// statement (its length varies), so each call parsed and planned a new
/// statement: on SQLite the prepare of a 1,000-uuid lookup was 8% of the
/// call. Padded to one of these lengths (by repeating the last uuid, which
/// an `IN` list ignores), the SQL takes one of a few forms that diesel
/// caches per connection like any other statement. Each step is at most
/// 2.5×, so padding costs at most 1.5 binds per uuid; a list longer than
/// the last size (not reached: lists are cut at [`UUID_CHUNK`]) is bound as is.
/// PostgreSQL needs none of this: there a list is one array bound to one
/// statement ([`UuidInArray`]).
pub(crate) const IN_LIST_SIZES: [usize; 12] =
    [1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, UUID_CHUNK];

/// `instance_mappings.instance_uuid IN (?, …)` with the list padded to one
/// of [`IN_LIST_SIZES`], so that its statement is cached (see there). The
/// same rows as `instance_uuid.eq_any(uuids)`; an empty list matches none.
#[derive(Debug, Clone, Copy)]
pub(crate) struct UuidIn<'a> {
    uuids: &'a [String],
}

impl<'a> UuidIn<'a> {
    /// The predicate for these uuids.
    pub(crate) fn new(uuids: &'a [String]) -> Self {
        Self { uuids }
    }

    /// How many markers the list of `n` uuids is rendered with.
    pub(crate) fn padded_len(n: usize) -> usize {
        IN_LIST_SIZES.iter().copied().find(|&s| s >= n).unwrap_or(n)
    }
}

impl Expression for UuidIn<'_> {
    type SqlType = Bool;
}

impl<QS> AppearsOnTable<QS> for UuidIn<'_> where instance_mappings::instance_uuid: AppearsOnTable<QS>
{}

impl<QS> SelectableExpression<QS> for UuidIn<'_> where
    instance_mappings::instance_uuid: SelectableExpression<QS>
{
}

impl ValidGrouping<()> for UuidIn<'_> {
    type IsAggregate = is_aggregate::Never;
}

impl QueryId for UuidIn<'_> {
    type QueryId = ();
    // The SQL depends on the list's padded length: cached by its text.
    const HAS_STATIC_QUERY_ID: bool = false;
}

impl<DB> QueryFragment<DB> for UuidIn<'_>
where
    DB: Backend + HasSqlType<Text>,
    String: ToSql<Text, DB>,
{
    fn walk_ast<'b>(&'b self, mut out: AstPass<'_, 'b, DB>) -> QueryResult<()> {
        let Some(last) = self.uuids.last() else {
            out.push_sql("1 = 0");
            return Ok(());
        };
        out.push_identifier("instance_mappings")?;
        out.push_sql(".");
        out.push_identifier("instance_uuid")?;
        out.push_sql(" IN (");
        for i in 0..Self::padded_len(self.uuids.len()) {
            if i > 0 {
                out.push_sql(", ");
            }
            out.push_bind_param::<Text, String>(self.uuids.get(i).unwrap_or(last))?;
        }
        out.push_sql(")");
        Ok(())
    }
}

/// `instance_mappings.instance_uuid IN (SELECT unnest($1::text[]))`: the
/// PostgreSQL form of a uuid list, one array bound to one statement.
///
/// Not `= ANY($1)`: after five executions PostgreSQL may keep a generic
/// plan, which knows nothing of the array; on a small table that plan is a
/// sequential scan testing every row against every element of the array
/// (a hashed `ANY` needs a constant array), so 1,000 uuids on a 1,000-row
/// table took 29 ms instead of 0.6 ms. As a semi-join the generic plan
/// hashes the list (small tables) or probes the uuid index once per
/// element (large ones), and repeats in the list still match a row once.
#[cfg(feature = "postgres")]
#[derive(Debug, Clone, Copy)]
pub(crate) struct UuidInArray<'a> {
    uuids: &'a [String],
}

#[cfg(feature = "postgres")]
impl<'a> UuidInArray<'a> {
    /// The predicate for these uuids.
    pub(crate) fn new(uuids: &'a [String]) -> Self {
        Self { uuids }
    }
}

#[cfg(feature = "postgres")]
impl Expression for UuidInArray<'_> {
    type SqlType = Bool;
}

#[cfg(feature = "postgres")]
impl<QS> AppearsOnTable<QS> for UuidInArray<'_> where
    instance_mappings::instance_uuid: AppearsOnTable<QS>
{
}

#[cfg(feature = "postgres")]
impl<QS> SelectableExpression<QS> for UuidInArray<'_> where
    instance_mappings::instance_uuid: SelectableExpression<QS>
{
}

#[cfg(feature = "postgres")]
impl ValidGrouping<()> for UuidInArray<'_> {
    type IsAggregate = is_aggregate::Never;
}

#[cfg(feature = "postgres")]
impl QueryId for UuidInArray<'_> {
    type QueryId = UuidInArray<'static>;
    // Always the same SQL: one cached statement.
    const HAS_STATIC_QUERY_ID: bool = true;
}

#[cfg(feature = "postgres")]
impl QueryFragment<diesel::pg::Pg> for UuidInArray<'_> {
    fn walk_ast<'b>(&'b self, mut out: AstPass<'_, 'b, diesel::pg::Pg>) -> QueryResult<()> {
        out.push_identifier("instance_mappings")?;
        out.push_sql(".");
        out.push_identifier("instance_uuid")?;
        out.push_sql(" IN (SELECT unnest(");
        out.push_bind_param::<diesel::sql_types::Array<Text>, [String]>(self.uuids)?;
        out.push_sql("::text[]))");
        Ok(())
    }
}

/// `<insert> RETURNING id`, for the backends that have it.
#[derive(Debug, Clone, Copy, QueryId)]
pub(crate) struct ReturningId<Q>(pub(crate) Q);

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

impl<Q, C> RunQueryDsl<C> for ReturningId<Q> {}

/// Runs an insert of one row and returns the new row's id, for a write that
/// finds its own row when its outcome is unknown (an instance-mapping
/// create): `RETURNING id`, one round trip, on PostgreSQL, SQLite and
/// MariaDB (see [`mysql_insert_returning_id`]); on a MySQL server without
/// it the insert and `LAST_INSERT_ID()` (a per-session value, no work for
/// the server), two round trips. Outside a transaction the insert is
/// committed on its own; if the connection is lost before the id is read,
/// the create's outcome is unknown and its re-run finds the row.
///
/// `$returning` is the handle's [`MysqlReturning`]. A macro, so that
/// `$insert` (an expression, evaluated in the arm of the backend at hand)
/// runs on the inner connection: diesel's `MultiConnection` renders a
/// statement's whole SQL again on every execution, the inner connection
/// finds its cached statement by type (see [`on_inner`]).
macro_rules! insert_returning_id_findable {
    ($conn:expr, $returning:expr, $insert:expr) => {
        $crate::models::insert_returning_id_findable!(@run false, $conn, $returning, $insert)
    };
    (@run $atomic:expr, $conn:expr, $returning:expr, $insert:expr) => {{
        #[allow(unused_variables)]
        let returning: &$crate::models::MysqlReturning = $returning;
        match $conn {
            $crate::connection::DbConnection::Sqlite(c) => {
                $crate::models::sqlite_insert_returning_id(c, $insert)
            }
            #[cfg(feature = "postgres")]
            $crate::connection::DbConnection::Postgres(c) => {
                diesel::RunQueryDsl::get_result::<i32>($crate::models::ReturningId($insert), c)
            }
            #[cfg(feature = "mysql")]
            $crate::connection::DbConnection::Mysql(c) => {
                $crate::models::mysql_insert_returning_id(c, returning, &$insert, $atomic)
            }
        }
    }};
}
pub(crate) use insert_returning_id_findable;

/// The new row's id from `<insert> RETURNING id` on SQLite, the statement
/// stepped to its end.
///
/// SQLite runs a connection's WAL auto-checkpoint only when a statement's
/// step reports that it is done. Read for its first row alone (diesel's
/// `get_result`) and then reset, an autocommit insert commits without that
/// step, so no create ever checkpointed: the WAL file grew by about 24 kB
/// per create without bound (434 MB after 20,000 creates), every reader
/// had to search it, and the next statement that did finish (a save) paid
/// for the whole backlog at once (0.4 s). `tests/sqlite_wal.rs` checks that
/// the WAL stays bounded. The last step is also where the insert commits:
/// a failed commit is now this call's error, where `sqlite3_reset` (whose
/// result diesel discards) used to be the only one told.
pub(crate) fn sqlite_insert_returning_id<'q, Q>(
    c: &mut diesel::SqliteConnection,
    insert: Q,
) -> QueryResult<i32>
where
    ReturningId<Q>: diesel::query_dsl::LoadQuery<'q, diesel::SqliteConnection, i32>,
{
    let ids: Vec<i32> = RunQueryDsl::load(ReturningId(insert), c)?;
    match ids[..] {
        [id] => Ok(id),
        [] => Err(diesel::result::Error::NotFound),
        _ => Err(diesel::result::Error::DeserializationError(
            "an insert of one row returned more than one id".into(),
        )),
    }
}

/// Whether this handle's MySQL-protocol server takes `INSERT … RETURNING`
/// (MariaDB 10.5 and later do, MySQL does not). Assumed until a server
/// refuses the syntax; from then on, creates on the handle read
/// `LAST_INSERT_ID()` instead.
#[derive(Debug, Default)]
#[cfg_attr(not(feature = "mysql"), allow(dead_code))]
pub(crate) struct MysqlReturning {
    unsupported: std::sync::atomic::AtomicBool,
}

impl MysqlReturning {
    /// From now on, read `LAST_INSERT_ID()` (a server refused the syntax).
    pub(crate) fn set_unsupported(&self) {
        self.unsupported
            .store(true, std::sync::atomic::Ordering::Relaxed);
    }
}

/// The new row's id from `<insert> RETURNING id` on MariaDB: one round trip,
/// as the raw client reading the id from the insert's OK packet.
///
/// MariaDB's prepare reply for `INSERT … RETURNING` announces no columns
/// (MDEV-27013); diesel 2.4 reads them from the first execution's result,
/// so every create is one round trip, the first on a connection included.
///
/// After a failed execution (a duplicate uuid, a missing cell, a deadlock)
/// MariaDB Connector/C may leave such a statement waiting for the rest of a
/// result that never comes, and its next execution would block for good; so
/// on any failure the connection's statement cache is emptied (its
/// statements closed, prepared again as they are next used). A server that
/// does not know the syntax (MySQL, MariaDB before 10.5) refuses it at
/// prepare, before anything is written: the handle then uses
/// `LAST_INSERT_ID()`.
///
/// Where the insert is followed by `LAST_INSERT_ID()`, `atomic` runs the
/// two in one transaction (a savepoint inside a caller's).
#[cfg(feature = "mysql")]
pub(crate) fn mysql_insert_returning_id<Q>(
    c: &mut diesel::MysqlConnection,
    returning: &MysqlReturning,
    insert: &Q,
    atomic: bool,
) -> QueryResult<i32>
where
    Q: QueryFragment<diesel::mysql::Mysql> + QueryId,
{
    use std::sync::atomic::Ordering;

    if returning.unsupported.load(Ordering::Relaxed) {
        return mysql_execute_then_last_id(c, insert, atomic);
    }
    let result = match ReturningId(insert).get_result::<i32>(c) {
        Err(e)
            if crate::errors::error_code(&e)
                == Some(crate::errors::ErrorCode::MysqlErrno(1064)) =>
        {
            // Refused at prepare: nothing was written.
            tracing::info!("the server does not take INSERT … RETURNING; reading LAST_INSERT_ID()");
            returning.set_unsupported();
            return mysql_execute_then_last_id(c, insert, atomic);
        }
        other => other,
    };
    if result.is_err() {
        use diesel::connection::{CacheSize, Connection};
        c.set_prepared_statement_cache_size(CacheSize::Disabled);
        c.set_prepared_statement_cache_size(CacheSize::Unbounded);
    }
    result
}

/// Executes `insert`, then reads `LAST_INSERT_ID()`; in one transaction
/// (a savepoint inside a caller's) when `atomic`.
#[cfg(feature = "mysql")]
fn mysql_execute_then_last_id<Q>(
    c: &mut diesel::MysqlConnection,
    insert: Q,
    atomic: bool,
) -> QueryResult<i32>
where
    Q: QueryFragment<diesel::mysql::Mysql> + QueryId,
{
    use diesel::query_dsl::methods::ExecuteDsl;
    let run = |c: &mut diesel::MysqlConnection| {
        ExecuteDsl::execute(insert, c).and_then(|_| mysql_last_insert_id_of(c))
    };
    if atomic {
        diesel::Connection::transaction(c, run)
    } else {
        run(c)
    }
}

/// [`insert_returning_id_findable`] for the other creates (cells, hosts):
/// where MySQL needs `LAST_INSERT_ID()` after the insert (a server without
/// `INSERT … RETURNING`, or its first use on a connection), the two run in
/// one transaction (a savepoint inside a caller's), so a connection lost
/// between them can never leave a committed row whose create reported a
/// failure.
macro_rules! insert_returning_id {
    ($conn:expr, $returning:expr, $insert:expr) => {
        $crate::models::insert_returning_id_findable!(@run true, $conn, $returning, $insert)
    };
}
pub(crate) use insert_returning_id;

/// `LAST_INSERT_ID()` of this MySQL session, through diesel's query builder
/// on the MySQL connection itself, so that the statement is prepared once
/// per connection and cached (an `sql_query` is prepared, run and closed on
/// every call: one more round trip per create).
#[cfg(feature = "mysql")]
pub(crate) fn mysql_last_insert_id_of(c: &mut diesel::MysqlConnection) -> QueryResult<i32> {
    let id: u64 = diesel::select(mysql_last_insert_id()).get_result(c)?;
    i32::try_from(id).map_err(|e| diesel::result::Error::DeserializationError(Box::new(e)))
}

#[cfg(feature = "mysql")]
diesel::define_sql_function! {
    /// MySQL's `LAST_INSERT_ID()` of this session.
    #[sql_name = "LAST_INSERT_ID"]
    fn mysql_last_insert_id() -> diesel::sql_types::Unsigned<diesel::sql_types::BigInt>;
}
