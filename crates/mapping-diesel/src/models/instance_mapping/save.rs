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
use diesel::query_builder::QueryFragment;
use mapping_model::{CellMapping, Error, InstanceMapping, InstanceMappingUpdate, Result, ToUuid};

use super::{constraint_error, get_by_instance_uuid};
use crate::db::Tx;
use crate::models::cell_mapping::verified;
use crate::timestamp::NovaTimestamp;
use crate::url::BackendKind;

mod statement;
use statement::SaveUpdate;

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
