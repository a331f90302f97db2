//! `host_mappings`: rows, queries and the [`HostMappings`] object API.

use chrono::NaiveDateTime;
use diesel::prelude::*;
use mapping_model::schema::{cell_mappings, host_mappings};
use mapping_model::{
    validate, CellMapping, Error, HostMapping, HostMappingUpdate, NewHostMapping, Result,
};

use super::cell_mapping::{verified, CellObjects, CellRow};
use crate::db::{Executor, Op, Options, Tx};
use crate::errors::{db_err, is_fk_violation, is_unique_violation};
use crate::timestamp::NovaTimestamp;

/// A `host_mappings` row as stored.
#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = host_mappings)]
pub(crate) struct HostRow {
    pub created_at: Option<NaiveDateTime>,
    pub updated_at: Option<NaiveDateTime>,
    pub id: i32,
    pub host: String,
}

impl HostRow {
    fn into_object(self, cell: CellRow, options: &Options) -> Result<HostMapping> {
        Ok(self.with_cell(cell.into_object(options)?))
    }

    /// The object, with its cell already made.
    fn with_cell(self, cell: CellMapping) -> HostMapping {
        HostMapping {
            id: self.id,
            host: self.host,
            cell_mapping: cell,
            created_at: self.created_at,
            updated_at: self.updated_at,
        }
    }
}

/// Every value bound (`treat_none_as_default_value = false`: a `None` is
/// written as NULL, the column's default): diesel never caches an insert
/// that may write `DEFAULT`, so the statement was prepared on every create.
#[derive(Insertable)]
#[diesel(table_name = host_mappings, treat_none_as_default_value = false)]
struct HostInsert<'a> {
    created_at: NovaTimestamp,
    cell_id: i32,
    host: &'a str,
}

#[derive(AsChangeset)]
#[diesel(table_name = host_mappings)]
struct HostChanges<'a> {
    updated_at: NovaTimestamp,
    cell_id: Option<i32>,
    host: Option<&'a str>,
}

/// The objects of a listing's rows (each distinct URL template expanded once).
fn objects(rows: Vec<(HostRow, CellRow)>, options: &Options) -> Result<Vec<HostMapping>> {
    let mut cells = CellObjects::new(options);
    rows.into_iter()
        .map(|(h, c)| Ok(h.with_cell(cells.object(c)?)))
        .collect()
}

pub(crate) fn get_by_host(tx: &mut Tx<'_>, host: &str) -> Result<HostMapping> {
    validate::required_varchar("host", host)?;
    // Outer join: a row whose cell_id points nowhere (possible where foreign
    // keys are off) is reported as a bad row, not as a missing host.
    let row = host_mappings::table
        .left_join(cell_mappings::table)
        .filter(host_mappings::host.eq(host))
        .select((HostRow::as_select(), Option::<CellRow>::as_select()))
        .first::<(HostRow, Option<CellRow>)>(tx.conn)
        .optional()
        .map_err(db_err("host_mapping.get_by_host"))?;
    match row {
        Some((h, Some(c))) => h.into_object(c, &tx.shared.options),
        Some((h, None)) => Err(Error::BadRow {
            table: "host_mappings",
            id: h.id,
            reason: "its cell_id refers to no cell mapping".into(),
        }),
        None => Err(Error::HostMappingNotFound {
            host: host.to_owned(),
        }),
    }
}

pub(crate) fn create(tx: &mut Tx<'_>, new: NewHostMapping) -> Result<HostMapping> {
    let new = new.validated()?;
    let now = tx.now();
    let insert = diesel::insert_into(host_mappings::table).values(HostInsert {
        created_at: NovaTimestamp(now),
        cell_id: new.cell_mapping.id,
        host: &new.host,
    });
    let written = tx.atomic(|tx| {
        let id = super::insert_returning_id!(tx.conn, &tx.shared.mysql_returning, insert).map_err(
            |e| constraint_error(e, &new.host, &new.cell_mapping, "host_mapping.create"),
        )?;
        let cell = verified(tx, &new.cell_mapping)?;
        Ok((id, cell))
    });
    let (id, cell) = written?;
    HostRow {
        created_at: Some(now),
        updated_at: None,
        id,
        host: new.host,
    }
    .into_object(cell, &tx.shared.options)
}

/// A failed write of a host mapping as the typed error it stands for.
fn constraint_error(
    e: diesel::result::Error,
    host: &str,
    cell: &mapping_model::CellMapping,
    operation: &'static str,
) -> Error {
    if is_unique_violation(&e) {
        Error::HostMappingExists {
            host: host.to_owned(),
        }
    } else if is_fk_violation(&e) {
        Error::CellMappingNotFound {
            uuid: cell.uuid.to_string(),
        }
    } else {
        db_err(operation)(e)
    }
}

/// The host mapping with this id, as stored.
fn get_by_id(tx: &mut Tx<'_>, id: i32, host: &str) -> Result<HostMapping> {
    let row = host_mappings::table
        .inner_join(cell_mappings::table)
        .filter(host_mappings::id.eq(id))
        .select((HostRow::as_select(), CellRow::as_select()))
        .first::<(HostRow, CellRow)>(tx.conn)
        .optional()
        .map_err(db_err("host_mapping.save"))?;
    match row {
        Some((h, c)) => h.into_object(c, &tx.shared.options),
        None => Err(Error::HostMappingNotFound {
            host: host.to_owned(),
        }),
    }
}

pub(crate) fn save(
    tx: &mut Tx<'_>,
    mapping: &HostMapping,
    update: &HostMappingUpdate,
) -> Result<HostMapping> {
    update.validate()?;
    if update.is_empty() {
        // Nothing to write (not even updated_at, as in Nova).
        return get_by_id(tx, mapping.id, &mapping.host);
    }
    let now = tx.now();
    let changes = HostChanges {
        updated_at: NovaTimestamp(now),
        cell_id: update.cell_mapping.as_ref().map(|c| c.id),
        host: update.host.as_deref(),
    };
    tx.atomic(|tx| {
        let n = diesel::update(host_mappings::table.filter(host_mappings::id.eq(mapping.id)))
            .set(changes)
            .execute(tx.conn)
            .map_err(|e| {
                let host = update.host.as_deref().unwrap_or(&mapping.host);
                let cell = update
                    .cell_mapping
                    .as_ref()
                    .unwrap_or(&mapping.cell_mapping);
                constraint_error(e, host, cell, "host_mapping.save")
            })?;
        if n == 0 {
            return Err(Error::HostMappingNotFound {
                host: mapping.host.clone(),
            });
        }
        if let Some(cell) = &update.cell_mapping {
            verified(tx, cell)?;
        }
        get_by_id(tx, mapping.id, &mapping.host)
    })
}

pub(crate) fn destroy(tx: &mut Tx<'_>, host: &str) -> Result<()> {
    validate::required_varchar("host", host)?;
    let n = diesel::delete(host_mappings::table.filter(host_mappings::host.eq(host)))
        .execute(tx.conn)
        .map_err(db_err("host_mapping.destroy"))?;
    if n == 0 {
        return Err(Error::HostMappingNotFound {
            host: host.to_owned(),
        });
    }
    Ok(())
}

pub(crate) fn get_all(tx: &mut Tx<'_>) -> Result<Vec<HostMapping>> {
    let rows = host_mappings::table
        .inner_join(cell_mappings::table)
        .order(host_mappings::id.asc())
        .select((HostRow::as_select(), CellRow::as_select()))
        .load(tx.conn)
        .map_err(db_err("host_mapping_list.get_all"))?;
    objects(rows, &tx.shared.options)
}

pub(crate) fn get_by_cell_id(tx: &mut Tx<'_>, cell_id: i32) -> Result<Vec<HostMapping>> {
    let rows = host_mappings::table
        .inner_join(cell_mappings::table)
        .filter(host_mappings::cell_id.eq(cell_id))
        .order(host_mappings::id.asc())
        .select((HostRow::as_select(), CellRow::as_select()))
        .load(tx.conn)
        .map_err(db_err("host_mapping_list.get_by_cell_id"))?;
    objects(rows, &tx.shared.options)
}

/// Host mappings: Nova's `HostMapping` and `HostMappingList`.
///
/// Obtained from [`Database::host_mappings`](crate::Database::host_mappings)
/// or [`Tx::host_mappings`](crate::Tx::host_mappings).
pub struct HostMappings<E> {
    exec: E,
}

impl<E: Executor> HostMappings<E> {
    pub(crate) fn new(exec: E) -> Self {
        Self { exec }
    }

    /// The mapping of the host with its cell, or [`Error::HostMappingNotFound`].
    pub fn get_by_host(&mut self, host: &str) -> Result<HostMapping> {
        self.exec
            .run(Op::read("host_mapping.get_by_host"), &mut |tx| {
                get_by_host(tx, host)
            })
    }

    /// Creates a mapping; [`Error::HostMappingExists`] if the host has one,
    /// [`Error::CellMappingNotFound`] unless the cell is a stored cell (id
    /// and uuid both match: a stale or hand-built cell object is refused).
    /// The returned mapping carries the cell as stored.
    pub fn create(&mut self, new: NewHostMapping) -> Result<HostMapping> {
        self.exec.run(Op::write("host_mapping.create"), &mut |tx| {
            create(tx, new.clone())
        })
    }

    /// Writes the fields set in `update` (and `updated_at`), keyed by the
    /// mapping's id, and returns the mapping as stored afterwards (`mapping`
    /// itself is not changed);
    /// [`Error::HostMappingNotFound`] if the mapping is gone,
    /// [`Error::HostMappingExists`] on a rename to a taken host. An empty
    /// update writes nothing and only checks that the mapping exists.
    /// The cell named by `update` must be a stored cell (id and uuid both
    /// match), else [`Error::CellMappingNotFound`].
    pub fn save(
        &mut self,
        mapping: &HostMapping,
        update: &HostMappingUpdate,
    ) -> Result<HostMapping> {
        self.exec
            .run(Op::rerunnable_write("host_mapping.save"), &mut |tx| {
                save(tx, mapping, update)
            })
    }

    /// Deletes the mapping of the host; [`Error::HostMappingNotFound`] if none.
    pub fn destroy(&mut self, host: &str) -> Result<()> {
        self.exec.run(Op::write("host_mapping.destroy"), &mut |tx| {
            destroy(tx, host)
        })
    }

    /// Every host mapping with its cell, in id order.
    pub fn get_all(&mut self) -> Result<Vec<HostMapping>> {
        self.exec
            .run(Op::read("host_mapping_list.get_all"), &mut get_all)
    }

    /// The host mappings of the cell with this id, in id order.
    pub fn get_by_cell_id(&mut self, cell_id: i32) -> Result<Vec<HostMapping>> {
        self.exec
            .run(Op::read("host_mapping_list.get_by_cell_id"), &mut |tx| {
                get_by_cell_id(tx, cell_id)
            })
    }
}
