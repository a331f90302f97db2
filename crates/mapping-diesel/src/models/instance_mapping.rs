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

#[derive(AsChangeset, Clone, Copy)]
#[diesel(table_name = instance_mappings)]
struct InstanceChanges<'a> {
    updated_at: NovaTimestamp,
    cell_id: Option<Option<i32>>,
    project_id: Option<&'a str>,
    user_id: Option<&'a str>,
    queued_for_delete: Option<bool>,
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

/// An instance-mapping create whose connection was lost around its commit
/// (see [`Error::OutcomeUnknown`]): what it tried to write.
#[derive(Debug, Clone)]
pub(crate) struct PendingCreate {
    instance_uuid: String,
    cell_id: Option<i32>,
    project_id: String,
    user_id: String,
    queued_for_delete: bool,
    /// The `created_at` it wrote: the mark of its own row.
    created_at: NaiveDateTime,
}

impl PendingCreate {
    /// The instance it creates a mapping for.
    pub(crate) fn instance_uuid(&self) -> &str {
        &self.instance_uuid
    }

    /// Whether `found` is the row this create wrote, with the content that
    /// `new` asks for.
    fn is_own_row(&self, found: &InstanceMapping) -> bool {
        found.created_at == Some(self.created_at)
            && found.cell_mapping.as_ref().map(|c| c.id) == self.cell_id
            && found.project_id == self.project_id
            && found.user_id.as_deref() == Some(self.user_id.as_str())
            && found.queued_for_delete == self.queued_for_delete
    }

    fn same_request(&self, other: &PendingCreate) -> bool {
        self.cell_id == other.cell_id
            && self.project_id == other.project_id
            && self.user_id == other.user_id
            && self.queued_for_delete == other.queued_for_delete
    }
}

/// The creates of a [`crate::Database`] whose outcome is unknown, by
/// instance uuid, until a later create or a committed write of the same uuid
/// settles them (bounded).
///
/// An entry stays until it is settled, across every attempt of a re-run: on
/// a Galera cluster the row a lost node committed may reach the node a retry
/// reads from only after that read, so the retry's insert then fails on the
/// unique key (or its commit on certification) and the next look must still
/// know what it is looking for.
#[derive(Debug, Default)]
pub(crate) struct UncertainCreates {
    /// Non-zero while anything is remembered: the common path takes no lock.
    len: std::sync::atomic::AtomicUsize,
    map: std::sync::Mutex<std::collections::HashMap<String, Vec<PendingCreate>>>,
}

impl UncertainCreates {
    /// At most this many uuids are remembered (an arbitrary one is forgotten).
    const MAX: usize = 10_000;
    /// At most this many attempts per uuid (the oldest is forgotten).
    const MAX_PER_UUID: usize = 8;

    pub(crate) fn remember(&self, creates: Vec<PendingCreate>) {
        if creates.is_empty() {
            return;
        }
        if let Ok(mut map) = self.map.lock() {
            for c in creates {
                if map.len() >= Self::MAX && !map.contains_key(&c.instance_uuid) {
                    if let Some(k) = map.keys().next().cloned() {
                        map.remove(&k);
                    }
                }
                let attempts = map.entry(c.instance_uuid.clone()).or_default();
                if attempts.len() >= Self::MAX_PER_UUID {
                    attempts.remove(0);
                }
                attempts.push(c);
            }
            self.len
                .store(map.len(), std::sync::atomic::Ordering::Release);
        }
    }

    /// The creates of `instance_uuid` whose outcome is unknown.
    fn pending(&self, instance_uuid: &str) -> Vec<PendingCreate> {
        if self.len.load(std::sync::atomic::Ordering::Acquire) == 0 {
            return Vec::new();
        }
        self.map
            .lock()
            .ok()
            .and_then(|m| m.get(instance_uuid).cloned())
            .unwrap_or_default()
    }

    /// Settles every create of these uuids: a write of them committed.
    pub(crate) fn forget<'a>(&self, instance_uuids: impl IntoIterator<Item = &'a str>) {
        if self.len.load(std::sync::atomic::Ordering::Acquire) == 0 {
            return;
        }
        if let Ok(mut map) = self.map.lock() {
            for u in instance_uuids {
                map.remove(u);
            }
            self.len
                .store(map.len(), std::sync::atomic::Ordering::Release);
        }
    }
}

/// What an earlier create of unknown outcome means for a new create of the
/// same uuid, now that a row of that uuid is `found`.
fn settle(
    tx: &mut Tx<'_>,
    earlier: &[PendingCreate],
    attempt: &PendingCreate,
    found: InstanceMapping,
) -> Result<InstanceMapping> {
    match earlier.iter().find(|e| e.is_own_row(&found)) {
        Some(own) if own.same_request(attempt) => {
            tracing::info!(instance_uuid = %attempt.instance_uuid, "create of unknown outcome had been applied");
            tx.shared.uncertain.forget([attempt.instance_uuid.as_str()]);
            Ok(found)
        }
        // Its own row, asked for with other content: the original request
        // may still come to claim it, so it stays remembered.
        Some(_) => Err(Error::InstanceMappingExists {
            instance_uuid: attempt.instance_uuid.clone(),
        }),
        None => {
            // Someone else's row: none of the earlier creates was applied.
            tx.shared.uncertain.forget([attempt.instance_uuid.as_str()]);
            Err(Error::InstanceMappingExists {
                instance_uuid: attempt.instance_uuid.clone(),
            })
        }
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
        let id = super::insert_returning_id_findable(tx.conn, insert).map_err(|e| {
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
    let changes = InstanceChanges {
        updated_at: NovaTimestamp(now),
        cell_id: update
            .cell_mapping
            .as_ref()
            .map(|c| c.as_ref().map(|c| c.id)),
        project_id: update.project_id.as_deref(),
        user_id: update.user_id.as_deref(),
        queued_for_delete: update.queued_for_delete,
    };
    // One statement writes the row and, when it names a cell, checks that
    // cell by id and uuid together (a stale or forged reference changes
    // nothing); the row as stored is then read back. No transaction around
    // the two: the update is keyed and to given values, so a re-run after a
    // lost connection writes the same (two round trips instead of five).
    let cell_key = new_cell.map(|c| (c.id, c.uuid.hyphenated().to_string()));
    let target =
        instance_mappings::table.filter(instance_mappings::instance_uuid.eq(&instance_uuid));
    let n = tx.guarded(|tx| {
        match &cell_key {
            Some((id, uuid)) => diesel::update(
                target.filter(diesel::dsl::exists(
                    cell_mappings::table
                        .filter(cell_mappings::id.eq(*id))
                        .filter(lower(cell_mappings::uuid).eq(uuid)),
                )),
            )
            .set(changes)
            .execute(tx.conn),
            None => diesel::update(target).set(changes).execute(tx.conn),
        }
        .map_err(|e| constraint_error(e, &instance_uuid, new_cell, "instance_mapping.save"))
    })?;
    if n > 0 {
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
        let n = diesel::update(target)
            .set(changes)
            .execute(tx.conn)
            .map_err(|e| constraint_error(e, &instance_uuid, new_cell, "instance_mapping.save"))?;
        if n == 0 {
            return Err(Error::InstanceMappingNotFound {
                instance_uuid: instance_uuid.clone(),
            });
        }
        verified(tx, cell).map(|_| ())
    })?;
    get_by_instance_uuid(tx, &instance_uuid)
}

diesel::define_sql_function! {
    /// SQL `LOWER` of a text.
    fn lower(x: diesel::sql_types::Text) -> diesel::sql_types::Text;
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

/// Instance mappings: Nova's `InstanceMapping` and `InstanceMappingList`.
///
/// Obtained from [`Database::instance_mappings`](crate::Database::instance_mappings)
/// or [`Tx::instance_mappings`](crate::Tx::instance_mappings).
pub struct InstanceMappings<E> {
    pub(super) exec: E,
}

impl<E: Executor> InstanceMappings<E> {
    pub(crate) fn new(exec: E) -> Self {
        Self { exec }
    }

    /// The mapping of the instance with its cell (none while unscheduled),
    /// or [`Error::InstanceMappingNotFound`].
    ///
    /// With a cache tier on ([`Options::cache`], [`Options::memcached`]) and
    /// outside a transaction, a mapping with a cell may come from the cache.
    ///
    /// ```
    /// # use mapping_diesel::Database;
    /// # use mapping_model::{Error, NewCellMapping, NewInstanceMapping};
    /// let db = Database::open("sqlite://")?;
    /// db.migrate()?;
    /// let cell = db.cells().create(NewCellMapping::new(
    ///     "6a1a7a3c-1d0e-4a55-9d49-3f0a1c2b3d4e", "rabbit://mq/", "mysql://db/nova_cell1"))?;
    /// let uuid = "0b9f4a36-59b8-4b8e-bf0b-4e1c9f6d2a10";
    /// db.instance_mappings().create(NewInstanceMapping::new(uuid, "project", "user").cell(&cell))?;
    ///
    /// let im = db.instance_mappings().get_by_instance_uuid(uuid)?;
    /// assert_eq!(im.cell_mapping, Some(cell));
    /// let missing = db.instance_mappings().get_by_instance_uuid("5f0c2a0e-6f56-4a7d-8e1b-2d0c9a8b7e61");
    /// assert!(matches!(missing, Err(Error::InstanceMappingNotFound { .. })));
    /// # Ok::<(), Error>(())
    /// ```
    pub fn get_by_instance_uuid(&mut self, instance_uuid: impl ToUuid) -> Result<InstanceMapping> {
        let op = Op::read("instance_mapping.get_by_instance_uuid");
        let key = instance_uuid.to_canonical("instance_uuid")?;
        let ticket = match self.exec.mapping_cache() {
            None => return self.exec.run(op, &mut |tx| get_by_instance_uuid(tx, &key)),
            Some(cache) => match cache.get(&key) {
                Ok(hit) => return Ok(hit),
                Err(ticket) => ticket,
            },
        };
        let found = self
            .exec
            .run(op, &mut |tx| get_by_instance_uuid(tx, &key))?;
        if let Some(cache) = self.exec.mapping_cache() {
            cache.fill(ticket, &found);
        }
        Ok(found)
    }

    /// Creates a mapping (`queued_for_delete` false unless given);
    /// [`Error::InstanceMappingExists`] if the instance already has one.
    ///
    /// The API creates the mapping before scheduling, with no cell:
    ///
    /// ```
    /// # use mapping_diesel::Database;
    /// # use mapping_model::{Error, NewInstanceMapping};
    /// let db = Database::open("sqlite://")?;
    /// db.migrate()?;
    /// let new = NewInstanceMapping::new("0b9f4a36-59b8-4b8e-bf0b-4e1c9f6d2a10", "project", "user");
    /// let im = db.instance_mappings().create(new.clone())?;
    /// assert!(im.cell_mapping.is_none());
    /// assert!(!im.queued_for_delete);
    /// assert!(matches!(
    ///     db.instance_mappings().create(new),
    ///     Err(Error::InstanceMappingExists { .. })
    /// ));
    /// # Ok::<(), Error>(())
    /// ```
    pub fn create(&mut self, new: NewInstanceMapping) -> Result<InstanceMapping> {
        self.exec
            .run(Op::rerunnable_write("instance_mapping.create"), &mut |tx| {
                note_write(tx, &new.instance_uuid);
                create(tx, new.clone())
            })
    }

    /// Creates many mappings in one transaction, in multi-row inserts sized
    /// to the backend's bind-parameter limit; returns how many were written.
    /// All or nothing: if one instance already has a mapping (or appears
    /// twice in `news`), nothing is written and the error is
    /// [`Error::InstanceMappingExists`] naming one such uuid; a cell that
    /// does not exist gives [`Error::CellMappingNotFound`]. Read the new
    /// rows back with [`Self::get_by_instance_uuids`] when their ids are needed.
    pub fn create_bulk(&mut self, news: Vec<NewInstanceMapping>) -> Result<usize> {
        let batch = super::bulk::BulkCreate::prepare(news)?;
        self.exec
            .run(Op::write("instance_mapping_list.create_bulk"), &mut |tx| {
                tx.writes.instances(batch.uuids());
                super::bulk::create_bulk(tx, &batch)
            })
    }

    /// Writes the fields set in `update` (and `updated_at`), keyed by the
    /// instance uuid, and returns the mapping as stored afterwards; a
    /// mapping deleted meanwhile gives [`Error::InstanceMappingNotFound`].
    /// `mapping` itself is not changed: inside a transaction that may still
    /// roll back or be retried, no object shows uncommitted values. A cell
    /// named by `update` must be a stored cell (id and uuid both match),
    /// else [`Error::CellMappingNotFound`]. An empty update writes nothing
    /// and returns the stored mapping.
    ///
    /// The conductor assigns the cell once the instance is scheduled; a
    /// delete queues the mapping, a restore unqueues it:
    ///
    /// ```
    /// # use mapping_diesel::Database;
    /// # use mapping_model::{Error, InstanceMappingUpdate, NewCellMapping, NewInstanceMapping};
    /// # let db = Database::open("sqlite://")?;
    /// # db.migrate()?;
    /// # let cell = db.cells().create(NewCellMapping::new(
    /// #     "6a1a7a3c-1d0e-4a55-9d49-3f0a1c2b3d4e", "rabbit://mq/", "mysql://db/nova_cell1"))?;
    /// let uuid = "0b9f4a36-59b8-4b8e-bf0b-4e1c9f6d2a10";
    /// let mut im = db.instance_mappings().create(NewInstanceMapping::new(uuid, "project", "user"))?;
    /// im = db.instance_mappings().save(&im, &InstanceMappingUpdate::new().cell(Some(&cell)))?;
    /// im = db.instance_mappings().save(&im, &InstanceMappingUpdate::new().queued_for_delete(true))?;
    ///
    /// let stored = db.instance_mappings().get_by_instance_uuid(uuid)?;
    /// assert_eq!(stored.cell_mapping.as_ref(), Some(&cell));
    /// assert!(stored.queued_for_delete);
    /// assert_eq!(stored, im);
    /// # Ok::<(), Error>(())
    /// ```
    pub fn save(
        &mut self,
        mapping: &InstanceMapping,
        update: &InstanceMappingUpdate,
    ) -> Result<InstanceMapping> {
        self.exec
            .run(Op::rerunnable_write("instance_mapping.save"), &mut |tx| {
                note_write(tx, &mapping.instance_uuid);
                save(tx, mapping, update)
            })
    }

    /// Deletes the mapping; [`Error::InstanceMappingNotFound`] if there is none.
    pub fn destroy(&mut self, instance_uuid: impl ToUuid) -> Result<()> {
        let instance_uuid = instance_uuid.to_canonical("instance_uuid")?;
        self.exec
            .run(Op::write("instance_mapping.destroy"), &mut |tx| {
                note_write(tx, &instance_uuid);
                destroy(tx, &instance_uuid)
            })
    }

    /// Every mapping of the project, with cells.
    pub fn get_by_project_id(&mut self, project_id: &str) -> Result<Vec<InstanceMapping>> {
        self.exec.run(
            Op::read("instance_mapping_list.get_by_project_id"),
            &mut |tx| get_by_project_id(tx, project_id),
        )
    }

    /// Every mapping in the cell with this id.
    pub fn get_by_cell_id(&mut self, cell_id: i32) -> Result<Vec<InstanceMapping>> {
        self.exec.run(
            Op::read("instance_mapping_list.get_by_cell_id"),
            &mut |tx| get_by_cell_id(tx, cell_id),
        )
    }

    /// The mappings of these instances (unknown uuids are ignored; unscheduled
    /// mappings are included), in any order.
    pub fn get_by_instance_uuids(&mut self, uuids: &[impl ToUuid]) -> Result<Vec<InstanceMapping>> {
        let uuids = canonical_uuids(uuids)?;
        self.exec.run(
            Op::read("instance_mapping_list.get_by_instance_uuids"),
            &mut |tx| get_by_instance_uuids(tx, &uuids),
        )
    }

    /// Deletes the mappings of these instances in one transaction; returns
    /// how many rows went (unknown uuids are fine).
    pub fn destroy_bulk(&mut self, uuids: &[impl ToUuid]) -> Result<usize> {
        let uuids = canonical_uuids(uuids)?;
        self.exec
            .run(Op::write("instance_mapping_list.destroy_bulk"), &mut |tx| {
                tx.writes.instances(uuids.iter().map(String::as_str));
                destroy_bulk(tx, &uuids)
            })
    }

    /// Mappings in the cell not queued for delete (false or NULL), of one
    /// project or of all (`None`), at most `limit` of them, each with its
    /// cell; no order is promised. A negative limit is
    /// [`Error::InvalidInput`].
    ///
    /// ```
    /// # use mapping_diesel::Database;
    /// # use mapping_model::{Error, NewCellMapping, NewInstanceMapping};
    /// # let db = Database::open("sqlite://")?;
    /// # db.migrate()?;
    /// let cell_uuid = "6a1a7a3c-1d0e-4a55-9d49-3f0a1c2b3d4e";
    /// let cell = db.cells().create(NewCellMapping::new(cell_uuid, "rabbit://mq/", "mysql://db/c1"))?;
    /// let new = |u: &str| NewInstanceMapping::new(u, "project", "user").cell(&cell);
    /// db.instance_mappings().create(new("0b9f4a36-59b8-4b8e-bf0b-4e1c9f6d2a10"))?;
    /// db.instance_mappings().create(new("5f0c2a0e-6f56-4a7d-8e1b-2d0c9a8b7e61").queued_for_delete(true))?;
    ///
    /// let live = db.instance_mappings()
    ///     .get_not_deleted_by_cell_and_project(cell_uuid, Some("project"), None)?;
    /// assert_eq!(live.len(), 1);
    /// assert_eq!(live[0].cell_mapping.as_ref(), Some(&cell));
    /// let any_project = db.instance_mappings()
    ///     .get_not_deleted_by_cell_and_project(cell_uuid, None, Some(10))?;
    /// assert_eq!(any_project, live);
    /// # Ok::<(), Error>(())
    /// ```
    pub fn get_not_deleted_by_cell_and_project(
        &mut self,
        cell_uuid: impl ToUuid,
        project_id: Option<&str>,
        limit: Option<i64>,
    ) -> Result<Vec<InstanceMapping>> {
        let cell_uuid = cell_uuid.to_canonical("cell_uuid")?;
        self.exec.run(
            Op::read("instance_mapping_list.get_not_deleted_by_cell_and_project"),
            &mut |tx| get_not_deleted_by_cell_and_project(tx, &cell_uuid, project_id, limit),
        )
    }
}
