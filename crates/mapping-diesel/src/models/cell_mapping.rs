//! `cell_mappings`: rows, queries and the [`CellMappings`] object API.

use chrono::NaiveDateTime;
use diesel::prelude::*;
use mapping_model::schema::{cell_mappings, host_mappings, instance_mappings};
use mapping_model::{
    expand_url_template, validate, CellMapping, CellMappingUpdate, Error, NewCellMapping, Result,
    ToUuid,
};

use crate::db::{Executor, Op, Options, Tx};
use crate::errors::{db_err, is_fk_violation, is_unique_violation};
use crate::timestamp::NovaTimestamp;

/// A `cell_mappings` row as stored.
#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = cell_mappings)]
pub(crate) struct CellRow {
    #[diesel(deserialize_as = crate::timestamp::MaybeTimestamp)]
    pub created_at: Option<NaiveDateTime>,
    #[diesel(deserialize_as = crate::timestamp::MaybeTimestamp)]
    pub updated_at: Option<NaiveDateTime>,
    pub id: i32,
    pub uuid: String,
    pub name: Option<String>,
    pub transport_url: Option<String>,
    pub database_connection: Option<String>,
    pub disabled: Option<bool>,
}

impl CellRow {
    /// The object, with URL templates expanded against the options' defaults.
    /// A row whose uuid is not a UUID (never written by Nova or this API) is
    /// [`Error::BadRow`].
    pub(crate) fn into_object(self, options: &Options) -> Result<CellMapping> {
        CellObjects::new(options).object(self)
    }

    /// The stored uuid, typed; a row whose uuid is not a UUID is a bad row.
    fn parsed_uuid(&self) -> Result<mapping_model::Uuid> {
        mapping_model::Uuid::parse_str(&self.uuid).map_err(|e| Error::BadRow {
            table: "cell_mappings",
            id: self.id,
            reason: format!("its uuid {} is not a UUID: {e}", validate::echo(&self.uuid)),
        })
    }
}

/// The objects of cell rows.
fn cell_objects(rows: Vec<CellRow>, options: &Options) -> Result<Vec<CellMapping>> {
    rows.into_iter().map(|r| r.into_object(options)).collect()
}

/// A stored URL as the object shows it: NULL reads as `""`; with a default,
/// every value goes through the template formatter, as in Nova (so `}}`
/// reads as `}` even in a value with no `{`). A value with no brace at all
/// formats to itself, so it is kept as read, without a copy.
fn expand(raw: Option<String>, default: Option<&str>) -> String {
    match raw {
        None => String::new(),
        Some(raw) if default.is_some() && is_template(&raw) => expand_url_template(&raw, default),
        Some(raw) => raw,
    }
}

/// Whether the template formatter could change `raw` (it has a brace).
fn is_template(raw: &str) -> bool {
    raw.contains(['{', '}'])
}

/// Turns the cell rows of one listing into objects, expanding each distinct
/// URL template once per call rather than once per row: with a default URL
/// set, every row of a cell would otherwise parse the default again and
/// format the same template (a listing of 1,000 mappings holds a handful of
/// cells). The memo is keyed by the stored text itself, so two cells with
/// the same template share one expansion and nothing depends on ids.
pub(crate) struct CellObjects<'o> {
    options: &'o Options,
    /// (stored, expanded) per distinct template, transport URLs.
    transport: Vec<(String, String)>,
    /// (stored, expanded) per distinct template, database URLs.
    database: Vec<(String, String)>,
}

impl<'o> CellObjects<'o> {
    /// Distinct templates remembered per kind; more are expanded each time
    /// (the linear search stays short).
    const MEMO: usize = 64;

    /// Whether these options expand anything (a default URL is set); if
    /// not, a memo saves nothing and [`CellRow::into_object`] per row will do.
    pub(crate) fn expands(options: &Options) -> bool {
        options.default_transport_url.is_some() || options.default_database_connection.is_some()
    }

    /// An empty memo for one call.
    pub(crate) fn new(options: &'o Options) -> Self {
        Self {
            options,
            transport: Vec::new(),
            database: Vec::new(),
        }
    }

    /// The object of `row`, with URL templates expanded against the options' defaults.
    pub(crate) fn object(&mut self, row: CellRow) -> Result<CellMapping> {
        let options = self.options;
        let uuid = row.parsed_uuid()?;
        Ok(CellMapping {
            id: row.id,
            uuid,
            name: row.name,
            transport_url: Self::expand_memo(
                &mut self.transport,
                row.transport_url,
                options.default_transport_url.as_deref(),
            ),
            database_connection: Self::expand_memo(
                &mut self.database,
                row.database_connection,
                options.default_database_connection.as_deref(),
            ),
            disabled: row.disabled.unwrap_or(false),
            created_at: row.created_at,
            updated_at: row.updated_at,
        })
    }

    /// [`expand`], through the memo for templates.
    fn expand_memo(
        memo: &mut Vec<(String, String)>,
        raw: Option<String>,
        default: Option<&str>,
    ) -> String {
        match raw {
            Some(raw) if default.is_some() && is_template(&raw) => {
                if let Some((_, expanded)) = memo.iter().find(|(stored, _)| *stored == raw) {
                    return expanded.clone();
                }
                let expanded = expand_url_template(&raw, default);
                if memo.len() < Self::MEMO {
                    memo.push((raw, expanded.clone()));
                }
                expanded
            }
            other => expand(other, default),
        }
    }
}

/// Every value bound (`treat_none_as_default_value = false`: a `None` is
/// written as NULL, the column's default): diesel never caches an insert
/// that may write `DEFAULT`, so the statement was prepared on every create.
#[derive(Insertable)]
#[diesel(table_name = cell_mappings, treat_none_as_default_value = false)]
struct CellInsert<'a> {
    created_at: NovaTimestamp,
    uuid: &'a str,
    name: Option<&'a str>,
    transport_url: &'a str,
    database_connection: &'a str,
    disabled: bool,
}

#[derive(AsChangeset)]
#[diesel(table_name = cell_mappings)]
struct CellChanges<'a> {
    updated_at: NovaTimestamp,
    name: Option<Option<&'a str>>,
    transport_url: Option<&'a str>,
    database_connection: Option<&'a str>,
    disabled: Option<bool>,
}

/// The cell stored under `uuid` (canonical).
fn get_row(tx: &mut Tx<'_>, uuid: &str) -> Result<CellMapping> {
    cell_mappings::table
        .filter(cell_mappings::uuid.eq(&uuid))
        .select(CellRow::as_select())
        .first(tx.conn)
        .optional()
        .map_err(db_err("cell_mapping.get_by_uuid"))?
        .ok_or_else(|| Error::CellMappingNotFound {
            uuid: uuid.to_owned(),
        })?
        .into_object(&tx.shared.options)
}

/// The stored row of the cell an object names, checked by id and uuid
/// together: a stale object (its row destroyed, the id reused by another
/// cell, as SQLite does) or a hand-built one (a real id with a made-up uuid)
/// is [`Error::CellMappingNotFound`]. Run after the write that references
/// the cell, in the same transaction: the write has locked the row against
/// deletion (the foreign-key check on PostgreSQL and MySQL, the database
/// write lock on SQLite), so what is checked is what was referenced. The
/// uuids are compared as UUIDs, so a row stored in another spelling (upper
/// case) is still its own cell.
pub(crate) fn verified(tx: &mut Tx<'_>, cell: &CellMapping) -> Result<CellRow> {
    let not_found = || Error::CellMappingNotFound {
        uuid: cell.uuid.to_string(),
    };
    let row = cell_mappings::table
        .filter(cell_mappings::id.eq(cell.id))
        .select(CellRow::as_select())
        .first::<CellRow>(tx.conn)
        .optional()
        .map_err(db_err("cell_mapping.verify"))?
        .ok_or_else(not_found)?;
    match mapping_model::Uuid::parse_str(&row.uuid) {
        Ok(stored) if stored == cell.uuid => Ok(row),
        _ => Err(not_found()),
    }
}

pub(crate) fn create(tx: &mut Tx<'_>, new: NewCellMapping) -> Result<CellMapping> {
    let new = new.validated()?;
    let now = tx.now();
    let insert = diesel::insert_into(cell_mappings::table).values(CellInsert {
        created_at: NovaTimestamp(now),
        uuid: &new.uuid,
        name: new.name.as_deref(),
        transport_url: &new.transport_url,
        database_connection: &new.database_connection,
        disabled: new.disabled,
    });
    let id = match tx.guarded(|tx| {
        super::insert_returning_id!(tx.conn, &tx.shared.mysql_returning, insert)
            .map_err(db_err("cell_mapping.create"))
    }) {
        Ok(id) => id,
        Err(Error::Database { source, .. }) if is_unique_violation(&source) => {
            return Err(Error::CellMappingExists { uuid: new.uuid })
        }
        Err(e) => return Err(e),
    };
    CellRow {
        created_at: Some(now),
        updated_at: None,
        id,
        uuid: new.uuid,
        name: new.name,
        transport_url: Some(new.transport_url),
        database_connection: Some(new.database_connection),
        disabled: Some(new.disabled),
    }
    .into_object(&tx.shared.options)
}

pub(crate) fn save(
    tx: &mut Tx<'_>,
    cell: &CellMapping,
    update: &CellMappingUpdate,
) -> Result<CellMapping> {
    update.validate()?;
    let uuid = cell.uuid.to_string();
    if update.is_empty() {
        // Nothing to write (not even updated_at, as in Nova).
        return get_row(tx, &uuid);
    }
    let now = tx.now();
    let changes = CellChanges {
        updated_at: NovaTimestamp(now),
        name: update.name.as_ref().map(|n| n.as_deref()),
        transport_url: update.transport_url.as_deref(),
        database_connection: update.database_connection.as_deref(),
        disabled: update.disabled,
    };
    tx.atomic(|tx| {
        let n = diesel::update(cell_mappings::table.filter(cell_mappings::uuid.eq(&uuid)))
            .set(changes)
            .execute(tx.conn)
            .map_err(db_err("cell_mapping.save"))?;
        if n == 0 {
            return Err(Error::CellMappingNotFound { uuid: uuid.clone() });
        }
        get_row(tx, &uuid)
    })
}

/// Counts the instance and host mappings that point at a cell.
fn usage(tx: &mut Tx<'_>, id: i32) -> Result<(i64, i64)> {
    let instances = instance_mappings::table
        .filter(instance_mappings::cell_id.eq(id))
        .count()
        .get_result::<i64>(tx.conn)
        .map_err(db_err("cell_mapping.destroy"))?;
    let hosts = host_mappings::table
        .filter(host_mappings::cell_id.eq(id))
        .count()
        .get_result::<i64>(tx.conn)
        .map_err(db_err("cell_mapping.destroy"))?;
    Ok((instances, hosts))
}

pub(crate) fn destroy(tx: &mut Tx<'_>, uuid: &str) -> Result<()> {
    let uuid = validate::uuid("cell_uuid", uuid)?;
    let in_use = |tx: &mut Tx<'_>, id: i32| -> Result<Error> {
        let (instance_mappings, host_mappings) = usage(tx, id)?;
        Ok(Error::CellMappingInUse {
            uuid: uuid.clone(),
            instance_mappings,
            host_mappings,
        })
    };
    // Set when a mapping was added between the count and the delete: the
    // delete then failed on the foreign key, and PostgreSQL refuses further
    // statements until the rollback, so the mappings are counted after it.
    let mut raced: Option<i32> = None;
    let outcome = tx.atomic(|tx| {
        let id = cell_mappings::table
            .filter(cell_mappings::uuid.eq(&uuid))
            .select(cell_mappings::id)
            .first::<i32>(tx.conn)
            .optional()
            .map_err(db_err("cell_mapping.destroy"))?
            .ok_or_else(|| Error::CellMappingNotFound { uuid: uuid.clone() })?;
        let usage_error = in_use(tx, id)?;
        if let Error::CellMappingInUse {
            instance_mappings: 0,
            host_mappings: 0,
            ..
        } = usage_error
        {
            match diesel::delete(cell_mappings::table.filter(cell_mappings::id.eq(id)))
                .execute(tx.conn)
            {
                Ok(0) => Err(Error::CellMappingNotFound { uuid: uuid.clone() }),
                Ok(_) => Ok(()),
                Err(e) if is_fk_violation(&e) => {
                    raced = Some(id);
                    Err(db_err("cell_mapping.destroy")(e))
                }
                Err(e) => Err(db_err("cell_mapping.destroy")(e)),
            }
        } else {
            Err(usage_error)
        }
    });
    match (outcome, raced) {
        (Err(_), Some(id)) => Err(in_use(tx, id)?),
        (outcome, _) => outcome,
    }
}

pub(crate) fn get_all(tx: &mut Tx<'_>) -> Result<Vec<CellMapping>> {
    let rows = cell_mappings::table
        .order(cell_mappings::id.asc())
        .select(CellRow::as_select())
        .load(tx.conn)
        .map_err(db_err("cell_mapping_list.get_all"))?;
    cell_objects(rows, &tx.shared.options)
}

pub(crate) fn get_by_disabled(tx: &mut Tx<'_>, disabled: bool) -> Result<Vec<CellMapping>> {
    let q = cell_mappings::table
        .order(cell_mappings::id.asc())
        .into_boxed();
    // NULL counts as enabled, as it reads on the object.
    let q = if disabled {
        q.filter(cell_mappings::disabled.eq(true))
    } else {
        q.filter(
            cell_mappings::disabled
                .eq(false)
                .or(cell_mappings::disabled.is_null()),
        )
    };
    let rows = q
        .select(CellRow::as_select())
        .load(tx.conn)
        .map_err(db_err("cell_mapping_list.get_by_disabled"))?;
    cell_objects(rows, &tx.shared.options)
}

pub(crate) fn get_by_project_id(tx: &mut Tx<'_>, project_id: &str) -> Result<Vec<CellMapping>> {
    validate::required_varchar("project_id", project_id)?;
    let cell_ids = instance_mappings::table
        .filter(instance_mappings::project_id.eq(project_id))
        .filter(instance_mappings::cell_id.is_not_null())
        .select(instance_mappings::cell_id.assume_not_null())
        .distinct();
    let rows = cell_mappings::table
        .filter(cell_mappings::id.eq_any(cell_ids))
        .order(cell_mappings::id.asc())
        .select(CellRow::as_select())
        .load(tx.conn)
        .map_err(db_err("cell_mapping_list.get_by_project_id"))?;
    cell_objects(rows, &tx.shared.options)
}

/// Cell mappings: Nova's `CellMapping` and `CellMappingList`.
///
/// Obtained from [`Database::cells`](crate::Database::cells) or
/// [`Tx::cells`](crate::Tx::cells).
pub struct CellMappings<E> {
    exec: E,
}

impl<E: Executor> CellMappings<E> {
    pub(crate) fn new(exec: E) -> Self {
        Self { exec }
    }

    /// The cell with this uuid, or [`Error::CellMappingNotFound`].
    pub fn get_by_uuid(&mut self, uuid: impl ToUuid) -> Result<CellMapping> {
        let uuid = uuid.to_canonical("cell_uuid")?;
        self.exec
            .run(Op::read("cell_mapping.get_by_uuid"), &mut |tx| {
                get_row(tx, &uuid)
            })
    }

    /// Creates a cell (`disabled` false unless given); the URLs are stored
    /// as given, templates included, and the returned object has them
    /// expanded. [`Error::CellMappingExists`] if the uuid is taken.
    ///
    /// ```
    /// # use mapping_diesel::Database;
    /// # use mapping_model::{Error, NewCellMapping, CELL0_UUID};
    /// let db = Database::open("sqlite://")?;
    /// db.migrate()?;
    /// let cell0 = db.cells().create(
    ///     NewCellMapping::new(CELL0_UUID, "none:///", "mysql+pymysql://nova:pw@db/nova_cell0").name("cell0"),
    /// )?;
    /// assert!(cell0.is_cell0());
    /// assert_eq!(cell0.identity(), format!("{CELL0_UUID}(cell0)"));
    /// assert_eq!(db.cells().get_by_uuid(CELL0_UUID)?, cell0);
    /// # Ok::<(), Error>(())
    /// ```
    pub fn create(&mut self, new: NewCellMapping) -> Result<CellMapping> {
        self.exec.run(Op::write("cell_mapping.create"), &mut |tx| {
            create(tx, new.clone())
        })
    }

    /// Writes the fields set in `update` (and `updated_at`), keyed by the
    /// cell's uuid, and returns the cell as stored afterwards;
    /// [`Error::CellMappingNotFound`] if the cell is gone. `cell` itself is
    /// not changed (inside a transaction that may still roll back, it must
    /// not show uncommitted values). Fields not in `update` are not
    /// written, so the expanded URLs of `cell` never replace stored
    /// templates. An empty update writes nothing and returns the stored cell.
    ///
    /// ```
    /// # use mapping_diesel::Database;
    /// # use mapping_model::{CellMappingUpdate, Error, NewCellMapping};
    /// # let db = Database::open("sqlite://")?;
    /// # db.migrate()?;
    /// let mut cell = db.cells().create(NewCellMapping::new(
    ///     "6a1a7a3c-1d0e-4a55-9d49-3f0a1c2b3d4e", "rabbit://mq/", "mysql://db/nova_cell1"))?;
    /// cell = db.cells().save(&cell, &CellMappingUpdate::new().disabled(true))?;
    /// assert!(cell.disabled);
    /// assert!(db.cells().get_by_disabled(true)?.contains(&cell));
    /// # Ok::<(), Error>(())
    /// ```
    pub fn save(&mut self, cell: &CellMapping, update: &CellMappingUpdate) -> Result<CellMapping> {
        self.exec
            .run(Op::rerunnable_write("cell_mapping.save"), &mut |tx| {
                tx.writes.cell(&cell.uuid.to_string());
                save(tx, cell, update)
            })
    }

    /// Deletes the cell; [`Error::CellMappingInUse`] while mappings point at it.
    pub fn destroy(&mut self, uuid: impl ToUuid) -> Result<()> {
        let uuid = uuid.to_canonical("cell_uuid")?;
        self.exec.run(Op::write("cell_mapping.destroy"), &mut |tx| {
            tx.writes.cell(&uuid);
            destroy(tx, &uuid)
        })
    }

    /// Every cell, in id order.
    pub fn get_all(&mut self) -> Result<Vec<CellMapping>> {
        self.exec
            .run(Op::read("cell_mapping_list.get_all"), &mut get_all)
    }

    /// The cells whose disabled flag is `disabled` (NULL counts as enabled), in id order.
    pub fn get_by_disabled(&mut self, disabled: bool) -> Result<Vec<CellMapping>> {
        self.exec
            .run(Op::read("cell_mapping_list.get_by_disabled"), &mut |tx| {
                get_by_disabled(tx, disabled)
            })
    }

    /// The distinct cells holding at least one instance mapping of the project, in id order.
    pub fn get_by_project_id(&mut self, project_id: &str) -> Result<Vec<CellMapping>> {
        self.exec
            .run(Op::read("cell_mapping_list.get_by_project_id"), &mut |tx| {
                get_by_project_id(tx, project_id)
            })
    }
}
