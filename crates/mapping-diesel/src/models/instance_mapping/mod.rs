//! `instance_mappings`: rows, queries and the [`InstanceMappings`] object API.

use chrono::NaiveDateTime;
use diesel::prelude::*;
use mapping_model::schema::{cell_mappings, instance_mappings};
use mapping_model::{
    validate, CellMapping, Error, InstanceMapping, InstanceMappingUpdate, InstanceUuid,
    NewInstanceMapping, Result, ToUuid,
};

use super::cell_mapping::{verified, CellObjects, CellRow};
use super::{on_inner, InstanceInsert, UuidIn, UUID_CHUNK};
use crate::connection::DbConnection;
use crate::db::{Executor, Op, Options, Tx};
use crate::errors::{db_err, is_fk_violation, is_unique_violation};
use crate::timestamp::NovaTimestamp;

mod repo;
mod save;
mod uncertain;
pub use repo::InstanceMappings;
pub(crate) use save::{fast_path_sql, save, sha256_hex};
use uncertain::settle;
pub(crate) use uncertain::{PendingCreate, UncertainCreates};

/// An `instance_mappings` row as stored.
#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = instance_mappings)]
pub(crate) struct InstanceRow {
    #[diesel(deserialize_as = crate::timestamp::MaybeTimestamp)]
    pub created_at: Option<NaiveDateTime>,
    #[diesel(deserialize_as = crate::timestamp::MaybeTimestamp)]
    pub updated_at: Option<NaiveDateTime>,
    pub id: i32,
    pub instance_uuid: String,
    pub cell_id: Option<i32>,
    pub project_id: String,
    pub user_id: Option<String>,
    pub queued_for_delete: Option<bool>,
}

impl InstanceRow {
    fn into_object(self, cell: Option<CellRow>, options: &Options) -> Result<InstanceMapping> {
        if self.cell_id.is_some() && cell.is_none() {
            Self::warn_dangling(self.id, self.cell_id);
        }
        Ok(InstanceMapping {
            id: self.id,
            instance_uuid: InstanceUuid::from_stored(self.instance_uuid),
            cell_mapping: cell.map(|c| c.into_object(options)).transpose()?,
            project_id: self.project_id,
            user_id: self.user_id,
            queued_for_delete: self.queued_for_delete.unwrap_or(false),
            created_at: self.created_at,
            updated_at: self.updated_at,
        })
    }

    /// Logs a row whose `cell_id` names no stored cell.
    fn warn_dangling(id: i32, cell_id: Option<i32>) {
        tracing::warn!(
            id,
            cell_id,
            "instance mapping points at a cell that does not exist; read as unscheduled"
        );
    }

    /// The object, with its cell already made.
    fn with_cell(self, cell: Option<CellMapping>) -> InstanceMapping {
        if self.cell_id.is_some() && cell.is_none() {
            Self::warn_dangling(self.id, self.cell_id);
        }
        InstanceMapping {
            id: self.id,
            instance_uuid: InstanceUuid::from_stored(self.instance_uuid),
            cell_mapping: cell,
            project_id: self.project_id,
            user_id: self.user_id,
            queued_for_delete: self.queued_for_delete.unwrap_or(false),
            created_at: self.created_at,
            updated_at: self.updated_at,
        }
    }
}

type Joined = (InstanceRow, Option<CellRow>);

/// The objects of a listing's rows (each distinct URL template expanded once).
pub(super) fn objects(rows: Vec<Joined>, options: &Options) -> Result<Vec<InstanceMapping>> {
    if !CellObjects::expands(options) {
        // Nothing to expand: each row's cell moves into its object as read.
        return rows
            .into_iter()
            .map(|(im, cell)| im.into_object(cell, options))
            .collect();
    }
    let mut cells = CellObjects::new(options);
    rows.into_iter()
        .map(|(im, cell)| Ok(im.with_cell(cell.map(|c| cells.object(c)).transpose()?)))
        .collect()
}

/// Checks and canonicalises the uuids and, when they take more than one
/// statement ([`UUID_CHUNK`]), drops repeats (in any spelling), so that a
/// uuid given twice is never matched twice across chunks: no duplicate
/// objects, no double counts, as a single SQL `IN` would behave. Within one
/// statement the `IN` list itself ignores repeats, so a list that fits one
/// is left as given (hashing 1,000 uuids was 6% of a 1,000-uuid lookup).
pub(super) fn canonical_uuids(uuids: &[impl ToUuid]) -> Result<Vec<String>> {
    let out = uuids
        .iter()
        .map(|u| u.to_canonical("instance_uuid"))
        .collect::<Result<Vec<String>>>()?;
    if out.len() <= UUID_CHUNK {
        return Ok(out);
    }
    let mut seen = std::collections::HashSet::with_capacity(out.len());
    Ok(out.into_iter().filter(|u| seen.insert(u.clone())).collect())
}

pub(crate) fn get_by_instance_uuid(
    tx: &mut Tx<'_>,
    instance_uuid: &str,
) -> Result<InstanceMapping> {
    let instance_uuid = validate::uuid("instance_uuid", instance_uuid)?;
    let row = on_inner!(tx.conn, |c| {
        instance_mappings::table
            .left_join(cell_mappings::table)
            .filter(instance_mappings::instance_uuid.eq(&instance_uuid))
            .select((InstanceRow::as_select(), Option::<CellRow>::as_select()))
            // Not `first()`: its bound `LIMIT ?` makes SQLite re-prepare the
            // statement on every step (about 4x the cost of the lookup); the
            // uuid is unique, so the first row is the only one.
            .get_result::<Joined>(c)
            .optional()
    })
    .map_err(db_err("instance_mapping.get_by_instance_uuid"))?;
    match row {
        Some((im, cell)) => im.into_object(cell, &tx.shared.options),
        None => Err(Error::InstanceMappingNotFound { instance_uuid }),
    }
}

pub(crate) fn create(tx: &mut Tx<'_>, new: NewInstanceMapping) -> Result<InstanceMapping> {
    let new = new.validated()?;
    let now = tx.now();
    let queued_for_delete = new.queued_for_delete.unwrap_or(false);
    let attempt = PendingCreate {
        instance_uuid: new.instance_uuid.clone(),
        cell_id: new.cell_mapping.as_ref().map(|c| c.id),
        project_id: new.project_id.clone(),
        user_id: new.user_id.clone(),
        queued_for_delete,
        created_at: now,
    };
    // An earlier create of this uuid ended with its outcome unknown: if it
    // was written, this is the same request finding its own row.
    let earlier = tx.shared.uncertain.pending(&new.instance_uuid);
    if !earlier.is_empty() {
        match get_by_instance_uuid(tx, &new.instance_uuid) {
            Ok(found) => return settle(tx, &earlier, &attempt, found),
            Err(Error::InstanceMappingNotFound { .. }) => {}
            Err(e) => return Err(e),
        }
    }
    let insert = diesel::insert_into(instance_mappings::table).values(InstanceInsert {
        created_at: NovaTimestamp(now),
        instance_uuid: &new.instance_uuid,
        cell_id: attempt.cell_id,
        project_id: &new.project_id,
        user_id: &new.user_id,
        queued_for_delete,
    });
    let write = |tx: &mut Tx<'_>| -> Result<(i32, Option<CellRow>)> {
        let id =
            super::insert_returning_id_findable!(&mut *tx.conn, &tx.shared.mysql_returning, insert)
                .map_err(|e| {
                    constraint_error(
                        e,
                        &new.instance_uuid,
                        new.cell_mapping.as_ref(),
                        "instance_mapping.create",
                    )
                })?;
        let cell = match &new.cell_mapping {
            Some(c) => Some(verified(tx, c)?),
            None => None,
        };
        Ok((id, cell))
    };
    // Remembered until the commit: if the commit's outcome is unknown, a
    // retry of this create through the same handle finds its own row.
    tx.run.creates.borrow_mut().push(attempt.clone());
    // With a cell, the insert and the check of the cell are one unit; a
    // plain insert needs a savepoint only inside a caller's transaction.
    let written = if new.cell_mapping.is_some() {
        tx.atomic(write)
    } else {
        tx.guarded(write)
    };
    let (id, cell) = match written {
        Ok(written) => written,
        Err(e) => {
            // Not written, unless the connection was lost: then it may have
            // been, and the run decides from where the write stood.
            if crate::errors::transience(&e) != crate::errors::Transience::ConnectionLost {
                tx.run.creates.borrow_mut().pop();
            }
            // The row appeared since the look above: an earlier create of
            // ours may have reached this node only now (Galera).
            if matches!(e, Error::InstanceMappingExists { .. }) && !earlier.is_empty() {
                if let Ok(found) = get_by_instance_uuid(tx, &new.instance_uuid) {
                    return settle(tx, &earlier, &attempt, found);
                }
            }
            return Err(e);
        }
    };
    InstanceRow {
        created_at: Some(now),
        updated_at: None,
        id,
        instance_uuid: new.instance_uuid,
        cell_id: cell.as_ref().map(|c| c.id),
        project_id: new.project_id,
        user_id: Some(new.user_id),
        queued_for_delete: Some(queued_for_delete),
    }
    .into_object(cell, &tx.shared.options)
}

/// A failed write of an instance mapping as the typed error it stands for.
fn constraint_error(
    e: diesel::result::Error,
    instance_uuid: &str,
    cell: Option<&CellMapping>,
    operation: &'static str,
) -> Error {
    if is_unique_violation(&e) {
        Error::InstanceMappingExists {
            instance_uuid: instance_uuid.to_owned(),
        }
    } else if is_fk_violation(&e) {
        Error::CellMappingNotFound {
            uuid: cell.map(|c| c.uuid.to_string()).unwrap_or_default(),
        }
    } else {
        db_err(operation)(e)
    }
}

pub(crate) fn destroy(tx: &mut Tx<'_>, instance_uuid: &str) -> Result<()> {
    let instance_uuid = validate::uuid("instance_uuid", instance_uuid)?;
    let n = diesel::delete(
        instance_mappings::table.filter(instance_mappings::instance_uuid.eq(&instance_uuid)),
    )
    .execute(tx.conn)
    .map_err(db_err("instance_mapping.destroy"))?;
    if n == 0 {
        return Err(Error::InstanceMappingNotFound { instance_uuid });
    }
    Ok(())
}

pub(crate) fn get_by_project_id(tx: &mut Tx<'_>, project_id: &str) -> Result<Vec<InstanceMapping>> {
    validate::required_varchar("project_id", project_id)?;
    let rows = on_inner!(tx.conn, |c| {
        instance_mappings::table
            .left_join(cell_mappings::table)
            .filter(instance_mappings::project_id.eq(project_id))
            .select((InstanceRow::as_select(), Option::<CellRow>::as_select()))
            .load::<Joined>(c)
    })
    .map_err(db_err("instance_mapping_list.get_by_project_id"))?;
    objects(rows, &tx.shared.options)
}

pub(crate) fn get_by_cell_id(tx: &mut Tx<'_>, cell_id: i32) -> Result<Vec<InstanceMapping>> {
    let rows = instance_mappings::table
        .left_join(cell_mappings::table)
        .filter(instance_mappings::cell_id.eq(cell_id))
        .select((InstanceRow::as_select(), Option::<CellRow>::as_select()))
        .load::<Joined>(tx.conn)
        .map_err(db_err("instance_mapping_list.get_by_cell_id"))?;
    objects(rows, &tx.shared.options)
}

pub(crate) fn get_by_instance_uuids(
    tx: &mut Tx<'_>,
    uuids: &[String],
) -> Result<Vec<InstanceMapping>> {
    let mut out = Vec::with_capacity(uuids.len());
    for chunk in uuids.chunks(UUID_CHUNK) {
        macro_rules! joined {
            () => {
                instance_mappings::table
                    .left_join(cell_mappings::table)
                    .select((InstanceRow::as_select(), Option::<CellRow>::as_select()))
            };
        }
        // A padded `IN` list on SQLite and MySQL (a cached statement, see
        // `UuidIn`), one array bound to a semi-join on PostgreSQL (see
        // `UuidInArray`).
        let rows = match tx.conn {
            DbConnection::Sqlite(c) => joined!().filter(UuidIn::new(chunk)).load::<Joined>(c),
            #[cfg(feature = "postgres")]
            DbConnection::Postgres(c) => joined!()
                .filter(super::UuidInArray::new(chunk))
                .load::<Joined>(c),
            #[cfg(feature = "mysql")]
            DbConnection::Mysql(c) => joined!().filter(UuidIn::new(chunk)).load::<Joined>(c),
        }
        .map_err(db_err("instance_mapping_list.get_by_instance_uuids"))?;
        out.extend(objects(rows, &tx.shared.options)?);
    }
    Ok(out)
}

pub(crate) fn destroy_bulk(tx: &mut Tx<'_>, uuids: &[String]) -> Result<usize> {
    tx.atomic(|tx| {
        let mut removed = 0;
        for chunk in uuids.chunks(UUID_CHUNK) {
            removed += diesel::delete(
                instance_mappings::table.filter(instance_mappings::instance_uuid.eq_any(chunk)),
            )
            .execute(tx.conn)
            .map_err(db_err("instance_mapping_list.destroy_bulk"))?;
        }
        Ok(removed)
    })
}

pub(crate) fn get_not_deleted_by_cell_and_project(
    tx: &mut Tx<'_>,
    cell_uuid: &str,
    project_id: Option<&str>,
    limit: Option<i64>,
) -> Result<Vec<InstanceMapping>> {
    let cell_uuid = validate::uuid("cell_uuid", cell_uuid)?;
    if let Some(p) = project_id {
        validate::required_varchar("project_id", p)?;
    }
    if let Some(l) = limit {
        if l < 0 {
            return Err(Error::InvalidInput {
                field: "limit",
                reason: format!("{l} is negative"),
            });
        }
    }
    let mut q = instance_mappings::table
        .inner_join(cell_mappings::table)
        .filter(cell_mappings::uuid.eq(&cell_uuid))
        .filter(
            instance_mappings::queued_for_delete
                .eq(false)
                .or(instance_mappings::queued_for_delete.is_null()),
        )
        .select((InstanceRow::as_select(), CellRow::as_select()))
        .into_boxed();
    if let Some(p) = project_id {
        q = q.filter(instance_mappings::project_id.eq(p));
    }
    if let Some(l) = limit {
        q = q.limit(l);
    }
    let rows = q.load::<(InstanceRow, CellRow)>(tx.conn).map_err(db_err(
        "instance_mapping_list.get_not_deleted_by_cell_and_project",
    ))?;
    let mut cells = CellObjects::new(&tx.shared.options);
    rows.into_iter()
        .map(|(im, cell)| Ok(im.with_cell(Some(cells.object(cell)?))))
        .collect()
}

/// Records, for the cache, that the mapping of `instance_uuid` is written.
fn note_write(tx: &mut Tx<'_>, instance_uuid: &(impl ToUuid + ?Sized)) {
    if let Ok(u) = instance_uuid.to_canonical("instance_uuid") {
        tx.writes.instances([u.as_str()]);
    }
}
