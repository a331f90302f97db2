//! `save`: one cached `UPDATE` that checks what it relies on.
//!
//! A save returns the row as stored. The caller's object usually *is* the
//! stored row (it was just read or created), so the fast path writes the
//! changes with an `UPDATE` whose `WHERE` also requires every column the
//! update leaves alone to still hold the object's value, and the cell the
//! result will carry to still be stored as the object has it
//! (compare-and-set). One matched row proves the row now equals the object
//! with the changes applied, so nothing is read back: one round trip, as
//! the raw client's `UPDATE`. When anything differs (a stale object, a
//! templated cell URL, a row written in another format), nothing was
//! written, and the general path runs: the keyed `UPDATE` with its cell
//! check, then a read of the row as stored.
//!
//! diesel never caches its own `UPDATE` statements (their SQL varies with
//! the changeset), so every save was prepared, or parsed and planned, anew;
//! [`SaveUpdate`] renders the same SQL for the same shape of update and is
//! cached by its text like any query.

use diesel::backend::Backend;
use diesel::prelude::*;
use diesel::query_builder::{AstPass, QueryFragment, QueryId};
use diesel::serialize::ToSql;
use diesel::sql_types::{Bool, HasSqlType, Integer, Nullable, Text, Timestamp};
use mapping_model::{CellMapping, Error, InstanceMapping, InstanceMappingUpdate, Result, ToUuid};

use super::{constraint_error, get_by_instance_uuid};
use crate::db::Tx;
use crate::models::cell_mapping::verified;
use crate::models::on_inner;
use crate::timestamp::NovaTimestamp;
use crate::url::BackendKind;

pub(crate) fn save(
    tx: &mut Tx<'_>,
    mapping: &InstanceMapping,
    update: &InstanceMappingUpdate,
) -> Result<InstanceMapping> {
    update.validate()?;
    let instance_uuid = mapping.instance_uuid.to_canonical("instance_uuid")?;
    if update.is_empty() {
        // Nothing to write (not even updated_at, as in Nova).
        return get_by_instance_uuid(tx, &instance_uuid);
    }
    let now = tx.now();
    let new_cell = update.cell_mapping.as_ref().and_then(Option::as_ref);
    let changes = InstanceChanges::of(update, now);
    let backend = tx.conn.backend();
    let cell_uuid = new_cell
        .map(|c| c.uuid.to_canonical("cell_mapping"))
        .transpose()?;
    let key_check = new_cell.zip(cell_uuid.as_deref()).map(|(c, u)| (c.id, u));
    // Outside a transaction as it is, inside one in a savepoint.
    let run = |tx: &mut Tx<'_>, stmt: SaveUpdate<'_>| -> Result<usize> {
        tx.guarded(|tx| stmt.run(tx, &instance_uuid, new_cell))
    };

    // The fast path, when the object can be checked in SQL.
    if let Some(expect) = Expected::of(mapping, &instance_uuid, update, backend) {
        let stmt = SaveUpdate {
            changes,
            key: &instance_uuid,
            cell_key: None,
            expect: Some(&expect),
            backend,
        };
        if run(tx, stmt)? == 1 {
            return Ok(saved(mapping, update, now));
        }
    }

    tx.shared
        .save_rechecks
        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    // One statement writes the row and, when it names a cell, checks that
    // cell by id and uuid together (a stale or forged reference changes
    // nothing); the row as stored is then read back. No transaction around
    // the two: the update is keyed and to given values, so a re-run after a
    // lost connection writes the same.
    let stmt = SaveUpdate {
        changes,
        key: &instance_uuid,
        cell_key: key_check,
        expect: None,
        backend,
    };
    if run(tx, stmt)? > 0 {
        return get_by_instance_uuid(tx, &instance_uuid);
    }
    let Some(cell) = new_cell else {
        return Err(Error::InstanceMappingNotFound { instance_uuid });
    };
    // Either the mapping is gone (said first, as before), or the reference
    // is not the stored cell's, or the stored cell spells its uuid in a form
    // other than hyphenated (never written by Nova or this library): that
    // one is checked as every cell reference is, in one unit with the write.
    get_by_instance_uuid(tx, &instance_uuid)?;
    verified(tx, cell)?;
    tx.atomic(|tx| {
        let stmt = SaveUpdate {
            changes,
            key: &instance_uuid,
            cell_key: None,
            expect: None,
            backend,
        };
        if stmt.run(tx, &instance_uuid, new_cell)? == 0 {
            return Err(Error::InstanceMappingNotFound {
                instance_uuid: instance_uuid.clone(),
            });
        }
        verified(tx, cell).map(|_| ())
    })?;
    get_by_instance_uuid(tx, &instance_uuid)
}

/// The values a save writes (`updated_at` always; the rest when given).
#[derive(Debug, Clone, Copy)]
struct InstanceChanges<'a> {
    updated_at: NovaTimestamp,
    cell_id: Option<Option<i32>>,
    project_id: Option<&'a str>,
    user_id: Option<&'a str>,
    queued_for_delete: Option<bool>,
}

impl<'a> InstanceChanges<'a> {
    /// What saving `update` at `now` writes.
    fn of(update: &'a InstanceMappingUpdate, now: chrono::NaiveDateTime) -> Self {
        Self {
            updated_at: NovaTimestamp(now),
            cell_id: update
                .cell_mapping
                .as_ref()
                .map(|c| c.as_ref().map(|c| c.id)),
            project_id: update.project_id.as_deref(),
            user_id: update.user_id.as_deref(),
            queued_for_delete: update.queued_for_delete,
        }
    }
}

/// The text of the one statement that saves `update` over `mapping` on
/// `backend` when `mapping` is the stored row, or `None` where a save of
/// that pair could not take one statement (see [`Expected::of`]). For the
/// benchmark's raw baseline, which runs the very same statement through the
/// bare driver; the values bound are the caller's to supply.
pub(crate) fn fast_path_sql(
    backend: BackendKind,
    mapping: &InstanceMapping,
    update: &InstanceMappingUpdate,
) -> Result<Option<String>> {
    update.validate()?;
    let key = mapping.instance_uuid.to_canonical("instance_uuid")?;
    if update.is_empty() {
        return Ok(None);
    }
    let Some(expect) = Expected::of(mapping, &key, update, backend) else {
        return Ok(None);
    };
    let stmt = SaveUpdate {
        changes: InstanceChanges::of(update, chrono::NaiveDateTime::default()),
        key: &key,
        cell_key: None,
        expect: Some(&expect),
        backend,
    };
    fn render<DB>(stmt: &SaveUpdate<'_>, db: DB) -> QueryResult<String>
    where
        DB: Backend,
        DB::QueryBuilder: Default,
        for<'s> SaveUpdate<'s>: QueryFragment<DB>,
    {
        use diesel::query_builder::QueryBuilder;
        let mut out = DB::QueryBuilder::default();
        stmt.to_sql(&mut out, &db)?;
        Ok(out.finish())
    }
    let sql = match backend {
        BackendKind::Sqlite => render(&stmt, diesel::sqlite::Sqlite),
        #[cfg(feature = "postgres")]
        BackendKind::Postgres => render(&stmt, diesel::pg::Pg),
        #[cfg(feature = "mysql")]
        BackendKind::Mysql => render(&stmt, diesel::mysql::Mysql),
        #[allow(unreachable_patterns)]
        other => {
            return Err(Error::InvalidInput {
                field: "backend",
                reason: format!("{other:?} is not compiled in"),
            })
        }
    };
    sql.map(Some).map_err(|source| Error::Database {
        operation: "instance_mapping.save",
        source,
    })
}

/// What the caller's object says is stored, for the fast path: the columns
/// the update leaves alone, and the cell the saved object will carry.
#[derive(Debug)]
struct Expected<'a> {
    id: i32,
    /// The instance's cell, when the update leaves it alone: `Some(None)`
    /// for an unscheduled mapping.
    cell_id: Option<Option<i32>>,
    /// The cell the result carries (the update's or the object's own), to
    /// be found stored exactly as the object has it.
    cell: Option<ExpectedCell<'a>>,
    project_id: Option<&'a str>,
    user_id: Option<Option<&'a str>>,
    queued_for_delete: Option<bool>,
    created_at: Option<NovaTimestamp>,
    updated_at: Option<NovaTimestamp>,
}

/// A cell as the object has it, to compare with the stored row.
#[derive(Debug)]
struct ExpectedCell<'a> {
    cell: &'a CellMapping,
    uuid: String,
    /// The URLs as compared: on the servers their SHA-256 digests (hex), so
    /// that no statement a server may log carries their passwords; on
    /// SQLite (in-process, nothing logged) the URLs themselves.
    transport_url: String,
    database_connection: String,
    created_at: Option<NovaTimestamp>,
    updated_at: Option<NovaTimestamp>,
}

/// The lowercase hex SHA-256 digest of `text`'s UTF-8 bytes.
pub(crate) fn sha256_hex(text: &str) -> String {
    use sha2::{Digest, Sha256};
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut hex = String::with_capacity(64);
    for b in Sha256::digest(text.as_bytes()) {
        hex.push(char::from(HEX[usize::from(b >> 4)]));
        hex.push(char::from(HEX[usize::from(b & 0xf)]));
    }
    hex
}

impl<'a> ExpectedCell<'a> {
    /// `None` when the stored row cannot be compared in SQL: URLs with a
    /// template's braces are stored raw and read expanded.
    fn of(cell: &'a CellMapping, backend: BackendKind) -> Option<Self> {
        let templated = |url: &str| url.contains(['{', '}']);
        if templated(&cell.transport_url) || templated(&cell.database_connection) {
            return None;
        }
        let compared = |url: &str| match backend {
            BackendKind::Sqlite => url.to_owned(),
            BackendKind::Postgres | BackendKind::Mysql => sha256_hex(url),
        };
        Some(Self {
            cell,
            uuid: cell.uuid.to_canonical("cell_mapping").ok()?,
            transport_url: compared(&cell.transport_url),
            database_connection: compared(&cell.database_connection),
            created_at: cell.created_at.map(NovaTimestamp),
            updated_at: cell.updated_at.map(NovaTimestamp),
        })
    }
}

impl<'a> Expected<'a> {
    /// The checks for saving `update` over `mapping`, or `None` when the
    /// fast path cannot prove the result (the object's uuid is not spelled
    /// as the key, or a cell cannot be compared).
    fn of(
        mapping: &'a InstanceMapping,
        key: &str,
        update: &'a InstanceMappingUpdate,
        backend: BackendKind,
    ) -> Option<Self> {
        if mapping.instance_uuid.as_str() != key {
            return None;
        }
        let (cell_id, cell) = match &update.cell_mapping {
            Some(None) => (None, None),
            Some(Some(c)) => (None, Some(ExpectedCell::of(c, backend)?)),
            None => match &mapping.cell_mapping {
                None => (Some(None), None),
                Some(c) => (Some(Some(c.id)), Some(ExpectedCell::of(c, backend)?)),
            },
        };
        Some(Self {
            id: mapping.id,
            cell_id,
            cell,
            project_id: update
                .project_id
                .is_none()
                .then_some(&mapping.project_id[..]),
            user_id: update
                .user_id
                .is_none()
                .then_some(mapping.user_id.as_deref()),
            queued_for_delete: update
                .queued_for_delete
                .is_none()
                .then_some(mapping.queued_for_delete),
            created_at: mapping.created_at.map(NovaTimestamp),
            updated_at: mapping.updated_at.map(NovaTimestamp),
        })
    }
}

/// The object as stored once the checked update matched its row: `mapping`
/// with the update's fields and `updated_at` written.
fn saved(
    mapping: &InstanceMapping,
    update: &InstanceMappingUpdate,
    now: chrono::NaiveDateTime,
) -> InstanceMapping {
    let mut saved = mapping.clone();
    if let Some(cell) = &update.cell_mapping {
        saved.cell_mapping = cell.clone();
    }
    if let Some(p) = &update.project_id {
        saved.project_id = p.clone();
    }
    if let Some(u) = &update.user_id {
        saved.user_id = Some(u.clone());
    }
    if let Some(q) = update.queued_for_delete {
        saved.queued_for_delete = q;
    }
    saved.updated_at = Some(now);
    saved
}

/// `UPDATE instance_mappings SET … WHERE …` (the fast path by `id` with the
/// uuid compared exactly, the general path by `instance_uuid`), cached by its
/// text (see the module's note).
struct SaveUpdate<'a> {
    changes: InstanceChanges<'a>,
    key: &'a str,
    /// The general path's check of the assigned cell: id and uuid (any case).
    cell_key: Option<(i32, &'a str)>,
    /// The fast path's checks.
    expect: Option<&'a Expected<'a>>,
    /// The backend: MySQL compares text case- and trailing-space-
    /// insensitively (the fast path's checks there compare bytes), and the
    /// servers compare cell URLs by digest.
    backend: BackendKind,
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
    fn run(
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
        // docs/benchmarks.md, "Saves since the compare-and-set UPDATE"): there
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

#[cfg(test)]
mod tests {
    use super::*;
    use mapping_model::InstanceUuid;

    fn cell(url: &str) -> CellMapping {
        CellMapping {
            id: 3,
            uuid: mapping_model::Uuid::nil(),
            name: None,
            transport_url: url.into(),
            database_connection: "sqlite://".into(),
            disabled: false,
            created_at: None,
            updated_at: None,
        }
    }

    fn mapping(uuid: &str, cell: Option<CellMapping>) -> InstanceMapping {
        InstanceMapping {
            id: 1,
            instance_uuid: InstanceUuid::from_stored(uuid),
            cell_mapping: cell,
            project_id: "p".into(),
            user_id: Some("u".into()),
            queued_for_delete: false,
            created_at: None,
            updated_at: None,
        }
    }

    const KEY: &str = "0b9f4a36-59b8-4b8e-bf0b-4e1c9f6d2a10";

    #[test]
    fn fast_path_only_where_sql_can_prove_the_result() {
        let update = InstanceMappingUpdate::new().queued_for_delete(true);
        assert!(Expected::of(&mapping(KEY, None), KEY, &update, BackendKind::Sqlite).is_some());
        // Another spelling of the key: the stored text is not known.
        let upper = KEY.to_uppercase();
        assert!(Expected::of(&mapping(&upper, None), KEY, &update, BackendKind::Sqlite).is_none());
        // A templated URL is stored raw and read expanded.
        let templated = mapping(KEY, Some(cell("rabbit://{username}@mq/")));
        assert!(Expected::of(&templated, KEY, &update, BackendKind::Sqlite).is_none());
        // ...unless the update replaces that cell.
        let plain = cell("rabbit://mq/");
        let moved = InstanceMappingUpdate::new().cell(Some(&plain));
        assert!(Expected::of(&templated, KEY, &moved, BackendKind::Sqlite).is_some());
        let into_templated = InstanceMappingUpdate::new().cell(Some(&cell("{scheme}://mq/")));
        assert!(Expected::of(
            &mapping(KEY, None),
            KEY,
            &into_templated,
            BackendKind::Sqlite
        )
        .is_none());
    }

    #[test]
    fn the_benchmarks_statement_is_the_fast_paths() {
        let unscheduled = mapping(KEY, None);
        let plain = cell("rabbit://mq/");
        let schedule = InstanceMappingUpdate::new().cell(Some(&plain));
        let sql = fast_path_sql(BackendKind::Sqlite, &unscheduled, &schedule)
            .expect("rendered")
            .expect("one statement");
        assert!(sql.starts_with("UPDATE instance_mappings SET updated_at = ?, cell_id = ?"));
        assert!(sql.contains(" WHERE instance_mappings.id = ? AND "));
        assert!(sql.contains(" AND EXISTS (SELECT 1 FROM cell_mappings WHERE "));
        #[cfg(feature = "mysql")]
        {
            let sql = fast_path_sql(BackendKind::Mysql, &unscheduled, &schedule)
                .expect("rendered")
                .expect("one statement");
            assert!(sql.starts_with("UPDATE instance_mappings INNER JOIN cell_mappings ON "));
            assert!(sql.contains("SHA2(COALESCE(cell_mappings.transport_url, ''), 256) = ?"));
        }
        #[cfg(feature = "postgres")]
        {
            let sql = fast_path_sql(BackendKind::Postgres, &unscheduled, &schedule)
                .expect("rendered")
                .expect("one statement");
            assert!(sql.contains("cell_id = $2 WHERE instance_mappings.id = $3"));
        }
        // A save that takes the general path has no single statement.
        let templated = cell("{scheme}://mq/");
        let into_templated = InstanceMappingUpdate::new().cell(Some(&templated));
        assert!(
            fast_path_sql(BackendKind::Sqlite, &unscheduled, &into_templated)
                .expect("rendered")
                .is_none()
        );
    }

    #[test]
    fn saved_changes_only_what_the_update_names() {
        let before = mapping(KEY, Some(cell("rabbit://mq/")));
        let update = InstanceMappingUpdate::new().cell(None).user_id("v");
        let now = chrono::DateTime::from_timestamp(1_700_000_000, 0)
            .expect("a time")
            .naive_utc();
        let after = saved(&before, &update, now);
        assert_eq!(after.cell_mapping, None);
        assert_eq!(after.user_id.as_deref(), Some("v"));
        assert_eq!(after.project_id, "p");
        assert_eq!(after.updated_at, Some(now));
        assert_eq!(after.created_at, before.created_at);
    }

    #[test]
    fn urls_are_compared_by_digest_on_the_servers() {
        assert_eq!(
            sha256_hex(""),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
        let secret = cell("rabbit://nova:s3cret@mq/");
        let before = mapping(KEY, Some(secret));
        let update = InstanceMappingUpdate::new().queued_for_delete(true);
        for backend in [BackendKind::Postgres, BackendKind::Mysql] {
            let e = Expected::of(&before, KEY, &update, backend).expect("checkable");
            let c = e.cell.as_ref().expect("the cell is checked");
            assert!(!c.transport_url.contains("s3cret"));
            assert_eq!(c.transport_url, sha256_hex("rabbit://nova:s3cret@mq/"));
        }
    }
}
