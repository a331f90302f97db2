//! The instance mapping: which cell an instance lives in.

use chrono::NaiveDateTime;

use crate::cell_mapping::CellMapping;
use crate::error::Result;
use crate::ident::InstanceUuid;
use crate::validate;

/// The project_id and user_id of the resume-point row that Nova's
/// `nova-manage cell_v2 map_instances` keeps in `instance_mappings` (docs/tables.md,
/// docs/cellv2.md). Read and write it with `InstanceMappings::marker` and friends.
pub const INSTANCE_MIGRATION_MARKER: &str = "INSTANCE_MIGRATION_MARKER";

/// A row of `instance_mappings` with its cell loaded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InstanceMapping {
    /// Surrogate key (read-only).
    pub id: i32,
    /// The instance's uuid: the stored text, and the [`Uuid`](uuid::Uuid)
    /// it names (none for a row such as Nova's `map_instances` marker).
    pub instance_uuid: InstanceUuid,
    /// The cell, or `None` while the instance is not scheduled.
    pub cell_mapping: Option<CellMapping>,
    /// Owning project.
    pub project_id: String,
    /// Owning user; `None` for rows from before user_id existed.
    pub user_id: Option<String>,
    /// Whether the instance is queued for deletion (NULL reads as false).
    pub queued_for_delete: bool,
    /// Creation time (naive UTC).
    pub created_at: Option<NaiveDateTime>,
    /// Last update time (naive UTC).
    pub updated_at: Option<NaiveDateTime>,
}

/// What is needed to create an instance mapping.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewInstanceMapping {
    /// The instance's uuid.
    pub instance_uuid: String,
    /// The cell, or `None` for a mapping not yet scheduled.
    pub cell_mapping: Option<CellMapping>,
    /// Owning project.
    pub project_id: String,
    /// Owning user.
    pub user_id: String,
    /// Queued-for-delete flag; written as false when not given.
    pub queued_for_delete: Option<bool>,
}

impl NewInstanceMapping {
    /// An unscheduled mapping for the instance.
    pub fn new(
        instance_uuid: impl Into<String>,
        project_id: impl Into<String>,
        user_id: impl Into<String>,
    ) -> Self {
        Self {
            instance_uuid: instance_uuid.into(),
            cell_mapping: None,
            project_id: project_id.into(),
            user_id: user_id.into(),
            queued_for_delete: None,
        }
    }

    /// Places the mapping in a cell.
    pub fn cell(mut self, cell: &CellMapping) -> Self {
        self.cell_mapping = Some(cell.clone());
        self
    }

    /// Sets the queued-for-delete flag.
    pub fn queued_for_delete(mut self, queued: bool) -> Self {
        self.queued_for_delete = Some(queued);
        self
    }

    /// Checks every field and canonicalises the uuid.
    pub fn validated(mut self) -> Result<Self> {
        self.instance_uuid = validate::uuid("instance_uuid", &self.instance_uuid)?;
        validate::required_varchar("project_id", &self.project_id)?;
        validate::required_varchar("user_id", &self.user_id)?;
        Ok(self)
    }
}

/// The fields of an instance mapping to change on save; `None` leaves a field as it is.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct InstanceMappingUpdate {
    /// New cell (`Some(None)` unschedules).
    pub cell_mapping: Option<Option<CellMapping>>,
    /// New project.
    pub project_id: Option<String>,
    /// New user.
    pub user_id: Option<String>,
    /// New queued-for-delete flag.
    pub queued_for_delete: Option<bool>,
}

impl InstanceMappingUpdate {
    /// An update that changes nothing.
    pub fn new() -> Self {
        Self::default()
    }

    /// Moves the mapping to a cell (scheduling), or `None` to unschedule.
    pub fn cell(mut self, cell: Option<&CellMapping>) -> Self {
        self.cell_mapping = Some(cell.cloned());
        self
    }

    /// Changes the project.
    pub fn project_id(mut self, project_id: impl Into<String>) -> Self {
        self.project_id = Some(project_id.into());
        self
    }

    /// Changes the user.
    pub fn user_id(mut self, user_id: impl Into<String>) -> Self {
        self.user_id = Some(user_id.into());
        self
    }

    /// Changes the queued-for-delete flag.
    pub fn queued_for_delete(mut self, queued: bool) -> Self {
        self.queued_for_delete = Some(queued);
        self
    }

    /// True when nothing would change.
    pub fn is_empty(&self) -> bool {
        self == &Self::default()
    }

    /// Checks every field that is set.
    pub fn validate(&self) -> Result<()> {
        if let Some(p) = &self.project_id {
            validate::required_varchar("project_id", p)?;
        }
        if let Some(u) = &self.user_id {
            validate::required_varchar("user_id", u)?;
        }
        Ok(())
    }
}

/// Instance counts of a project and, when asked for, one of its users.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InstanceCounts {
    /// Mappings of the project not queued for delete.
    pub project: i64,
    /// Mappings of the project and user not queued for delete, when a user was given.
    pub user: Option<i64>,
}
