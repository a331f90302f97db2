//! [`SaveUpdate`]: the save's `UPDATE`, rendered the same for the same
//! shape of update so that it is cached by its text.

use diesel::backend::Backend;
use diesel::prelude::*;
use diesel::query_builder::{AstPass, QueryFragment, QueryId};
use diesel::serialize::ToSql;
use diesel::sql_types::{Bool, HasSqlType, Integer, Nullable, Text, Timestamp};
use mapping_model::{CellMapping, Result};

use super::{constraint_error, Expected, InstanceChanges};
use crate::db::Tx;
use crate::models::on_inner;
use crate::timestamp::NovaTimestamp;
use crate::url::BackendKind;

/// `UPDATE instance_mappings SET … WHERE …` (the fast path by `id` with the
/// uuid compared exactly, the general path by `instance_uuid`), cached by its
/// text (see the module's note).
pub(super) struct SaveUpdate<'a> {
    pub(super) changes: InstanceChanges<'a>,
    pub(super) key: &'a str,
    /// The general path's check of the assigned cell: id and uuid (any case).
    pub(super) cell_key: Option<(i32, &'a str)>,
    /// The fast path's checks.
    pub(super) expect: Option<&'a Expected<'a>>,
    /// The backend: MySQL compares text case- and trailing-space-
    /// insensitively (the fast path's checks there compare bytes), and the
    /// servers compare cell URLs by digest.
    pub(super) backend: BackendKind,
}

impl QueryId for SaveUpdate<'_> {
    type QueryId = ();
    // The SQL depends on the update's shape: cached by its text.
    const HAS_STATIC_QUERY_ID: bool = false;
}

impl<C> RunQueryDsl<C> for SaveUpdate<'_> {}

impl SaveUpdate<'_> {
    /// Runs the statement on the inner connection (found in its cache by
    /// text); returns the rows it matched.
    pub(super) fn run(
        self,
        tx: &mut Tx<'_>,
        instance_uuid: &str,
        new_cell: Option<&CellMapping>,
    ) -> Result<usize> {
        on_inner!(tx.conn, |c| self.execute(c))
            .map_err(|e| constraint_error(e, instance_uuid, new_cell, "instance_mapping.save"))
    }
}

/// Renders `<table>.<column>`. The statement's identifiers are this
/// module's constants (lower case, no keyword of any of the three
/// dialects), written unquoted: diesel quotes an identifier by copying it
/// through `str::replace`, and the statement is rendered on every save to
/// find its cached form, so quoting its forty-odd names cost more than the
/// rest of the rendering.
fn column<DB: Backend>(out: &mut AstPass<'_, '_, DB>, table: &str, col: &str) -> QueryResult<()> {
    out.push_sql(table);
    out.push_sql(".");
    out.push_sql(col);
    Ok(())
}

/// ` AND <col> = ?` for text, byte for byte where `binary` (MySQL).
fn text_eq<'b, DB>(
    out: &mut AstPass<'_, 'b, DB>,
    binary: bool,
    table: &str,
    col: &str,
    value: &'b str,
) -> QueryResult<()>
where
    DB: Backend + HasSqlType<Text>,
    str: ToSql<Text, DB>,
{
    out.push_sql(" AND ");
    if binary {
        out.push_sql("CAST(");
        column(out, table, col)?;
        out.push_sql(" AS BINARY)");
    } else {
        column(out, table, col)?;
    }
    out.push_sql(" = ");
    out.push_bind_param::<Text, str>(value)
}

/// ` AND <col> = ?`, or ` AND <col> IS NULL` for `None`.
fn opt_eq<'b, DB, ST, T>(
    out: &mut AstPass<'_, 'b, DB>,
    table: &str,
    col: &str,
    value: Option<&'b T>,
) -> QueryResult<()>
where
    DB: Backend + HasSqlType<ST>,
    ST: diesel::sql_types::SqlType,
    T: ToSql<ST, DB> + ?Sized,
{
    out.push_sql(" AND ");
    column(out, table, col)?;
    match value {
        Some(v) => {
            out.push_sql(" = ");
            out.push_bind_param::<ST, T>(v)
        }
        None => {
            out.push_sql(" IS NULL");
            Ok(())
        }
    }
}

/// ` AND <col> IS [NOT] TRUE` for a flag whose NULL reads as false.
fn flag<DB: Backend>(
    out: &mut AstPass<'_, '_, DB>,
    table: &str,
    col: &str,
    value: bool,
) -> QueryResult<()> {
    out.push_sql(" AND ");
    column(out, table, col)?;
    out.push_sql(if value { " IS TRUE" } else { " IS NOT TRUE" });
    Ok(())
}

const IM: &str = "instance_mappings";
const CM: &str = "cell_mappings";

impl SaveUpdate<'_> {
    /// Whether the statement checks a cell row.
    fn checks_cell(&self) -> bool {
        self.cell_key.is_some() || self.expect.is_some_and(|e| e.cell.is_some())
    }

    /// The conditions on the cell row, from `cell_mappings.id = ?` on.
    fn cell_conditions<'b, DB>(&'b self, out: &mut AstPass<'_, 'b, DB>) -> QueryResult<()>
    where
        DB: Backend + HasSqlType<Text> + HasSqlType<Integer> + HasSqlType<Timestamp>,
        str: ToSql<Text, DB>,
        i32: ToSql<Integer, DB>,
        NovaTimestamp: ToSql<Timestamp, DB>,
    {
        let binary = self.backend == BackendKind::Mysql;
        if let Some((id, uuid)) = &self.cell_key {
            column(out, CM, "id")?;
            out.push_sql(" = ");
            out.push_bind_param::<Integer, i32>(id)?;
            out.push_sql(" AND LOWER(");
            column(out, CM, "uuid")?;
            out.push_sql(") = ");
            return out.push_bind_param::<Text, str>(uuid);
        }
        let Some(cell) = self.expect.and_then(|e| e.cell.as_ref()) else {
            return Ok(());
        };
        let m = cell.cell;
        column(out, CM, "id")?;
        out.push_sql(" = ");
        out.push_bind_param::<Integer, i32>(&m.id)?;
        text_eq(out, binary, CM, "uuid", &cell.uuid)?;
        match &m.name {
            Some(name) => text_eq(out, binary, CM, "name", name)?,
            None => opt_eq::<_, Text, str>(out, CM, "name", None)?,
        }
        // NULL URLs read as "".
        for (col, value) in [
            ("transport_url", &cell.transport_url),
            ("database_connection", &cell.database_connection),
        ] {
            out.push_sql(match self.backend {
                BackendKind::Sqlite => " AND COALESCE(",
                // `textsend` gives the text's bytes in the client encoding
                // (UTF-8, as diesel sets it) without `convert_to`'s look-up
                // of a conversion, which cost about 10 µs more per save.
                BackendKind::Postgres => " AND sha256(textsend(COALESCE(",
                BackendKind::Mysql => " AND SHA2(COALESCE(",
            });
            column(out, CM, col)?;
            out.push_sql(match self.backend {
                BackendKind::Sqlite => ", '') = ",
                BackendKind::Postgres => ", ''))) = decode(",
                BackendKind::Mysql => ", ''), 256) = ",
            });
            out.push_bind_param::<Text, str>(value)?;
            if self.backend == BackendKind::Postgres {
                out.push_sql(", 'hex')");
            }
        }
        flag(out, CM, "disabled", m.disabled)?;
        opt_eq::<_, Timestamp, NovaTimestamp>(out, CM, "created_at", cell.created_at.as_ref())?;
        opt_eq::<_, Timestamp, NovaTimestamp>(out, CM, "updated_at", cell.updated_at.as_ref())
    }
}

impl<DB> QueryFragment<DB> for SaveUpdate<'_>
where
    DB: Backend + HasSqlType<Text> + HasSqlType<Integer> + HasSqlType<Bool> + HasSqlType<Timestamp>,
    str: ToSql<Text, DB>,
    i32: ToSql<Integer, DB>,
    bool: ToSql<Bool, DB>,
    NovaTimestamp: ToSql<Timestamp, DB>,
{
    fn walk_ast<'b>(&'b self, mut out: AstPass<'_, 'b, DB>) -> QueryResult<()> {
        let binary = self.backend == BackendKind::Mysql;
        // MariaDB evaluates a subquery inside a write at a cost (see
        // docs/notes/benchmarks-history.md, "Saves since the compare-and-set UPDATE"): there
        // the cell is joined (`UPDATE … JOIN cell_mappings ON …`, its SET
        // columns qualified); elsewhere it is an `EXISTS` (PostgreSQL and
        // SQLite have no multi-table UPDATE of this form).
        let join = binary && self.checks_cell();
        out.push_sql("UPDATE ");
        out.push_sql(IM);
        if join {
            out.push_sql(" INNER JOIN ");
            out.push_sql(CM);
            out.push_sql(" ON ");
            self.cell_conditions(&mut out)?;
        }
        let c = &self.changes;
        let set = |out: &mut AstPass<'_, 'b, DB>, first: bool, col: &str| -> QueryResult<()> {
            out.push_sql(if first { " SET " } else { ", " });
            if join {
                column(out, IM, col)?;
            } else {
                out.push_sql(col);
            }
            out.push_sql(" = ");
            Ok(())
        };
        set(&mut out, true, "updated_at")?;
        out.push_bind_param::<Timestamp, NovaTimestamp>(&c.updated_at)?;
        if let Some(cell_id) = &c.cell_id {
            set(&mut out, false, "cell_id")?;
            out.push_bind_param::<Nullable<Integer>, Option<i32>>(cell_id)?;
        }
        if let Some(project_id) = c.project_id {
            set(&mut out, false, "project_id")?;
            out.push_bind_param::<Text, str>(project_id)?;
        }
        if let Some(user_id) = c.user_id {
            set(&mut out, false, "user_id")?;
            out.push_bind_param::<Text, str>(user_id)?;
        }
        if let Some(q) = &c.queued_for_delete {
            set(&mut out, false, "queued_for_delete")?;
            out.push_bind_param::<Bool, bool>(q)?;
        }

        out.push_sql(" WHERE ");
        if let Some(e) = self.expect {
            // Found by its primary key, the uuid compared exactly: on
            // MariaDB a lookup by the uuid's index as well cost the server
            // about 18 µs more per save (each execution is optimised anew,
            // with every usable index weighed; docs/benchmarks.md).
            column(&mut out, IM, "id")?;
            out.push_sql(" = ");
            out.push_bind_param::<Integer, i32>(&e.id)?;
            text_eq(&mut out, binary, IM, "instance_uuid", self.key)?;
            if let Some(cell_id) = &e.cell_id {
                opt_eq::<_, Integer, i32>(&mut out, IM, "cell_id", cell_id.as_ref())?;
            }
            if let Some(p) = e.project_id {
                text_eq(&mut out, binary, IM, "project_id", p)?;
            }
            match e.user_id {
                Some(Some(u)) => text_eq(&mut out, binary, IM, "user_id", u)?,
                Some(None) => opt_eq::<_, Text, str>(&mut out, IM, "user_id", None)?,
                None => {}
            }
            if let Some(q) = e.queued_for_delete {
                flag(&mut out, IM, "queued_for_delete", q)?;
            }
            opt_eq::<_, Timestamp, NovaTimestamp>(
                &mut out,
                IM,
                "created_at",
                e.created_at.as_ref(),
            )?;
            opt_eq::<_, Timestamp, NovaTimestamp>(
                &mut out,
                IM,
                "updated_at",
                e.updated_at.as_ref(),
            )?;
        } else {
            column(&mut out, IM, "instance_uuid")?;
            out.push_sql(" = ");
            out.push_bind_param::<Text, str>(self.key)?;
        }
        if self.checks_cell() && !join {
            out.push_sql(" AND EXISTS (SELECT 1 FROM ");
            out.push_sql(CM);
            out.push_sql(" WHERE ");
            self.cell_conditions(&mut out)?;
            out.push_sql(")");
        }
        Ok(())
    }
}
