//! [`InstanceMappings`]: the object API over `instance_mappings`.

use super::*;

/// Instance mappings: Nova's `InstanceMapping` and `InstanceMappingList`.
///
/// Obtained from [`Database::instance_mappings`](crate::Database::instance_mappings)
/// or [`Tx::instance_mappings`](crate::Tx::instance_mappings).
pub struct InstanceMappings<E> {
    pub(in crate::models) exec: E,
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
        let batch = crate::models::bulk::BulkCreate::prepare(news)?;
        self.exec
            .run(Op::write("instance_mapping_list.create_bulk"), &mut |tx| {
                tx.writes.instances(batch.uuids());
                crate::models::bulk::create_bulk(tx, &batch)
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
