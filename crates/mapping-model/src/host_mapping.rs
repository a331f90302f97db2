//! The host mapping: which cell a compute host belongs to.

use chrono::NaiveDateTime;

use crate::cell_mapping::CellMapping;
use crate::error::Result;
use crate::validate;

/// A row of `host_mappings` with its cell loaded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostMapping {
    /// Surrogate key (read-only).
    pub id: i32,
    /// The compute host's name.
    pub host: String,
    /// The cell the host belongs to.
    pub cell_mapping: CellMapping,
    /// Creation time (naive UTC).
    pub created_at: Option<NaiveDateTime>,
    /// Last update time (naive UTC).
    pub updated_at: Option<NaiveDateTime>,
}

/// What is needed to create a host mapping.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewHostMapping {
    /// The compute host's name.
    pub host: String,
    /// The cell the host belongs to.
    pub cell_mapping: CellMapping,
}

impl NewHostMapping {
    /// A mapping of `host` to `cell`.
    pub fn new(host: impl Into<String>, cell: &CellMapping) -> Self {
        Self {
            host: host.into(),
            cell_mapping: cell.clone(),
        }
    }

    /// Checks every field.
    pub fn validated(self) -> Result<Self> {
        validate::required_varchar("host", &self.host)?;
        Ok(self)
    }
}

/// The fields of a host mapping to change on save; `None` leaves a field as it is.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HostMappingUpdate {
    /// New host name.
    pub host: Option<String>,
    /// New cell.
    pub cell_mapping: Option<CellMapping>,
}

impl HostMappingUpdate {
    /// An update that changes nothing.
    pub fn new() -> Self {
        Self::default()
    }

    /// Renames the host.
    pub fn host(mut self, host: impl Into<String>) -> Self {
        self.host = Some(host.into());
        self
    }

    /// Moves the host to another cell.
    pub fn cell(mut self, cell: &CellMapping) -> Self {
        self.cell_mapping = Some(cell.clone());
        self
    }

    /// True when nothing would change.
    pub fn is_empty(&self) -> bool {
        self == &Self::default()
    }

    /// Checks every field that is set.
    pub fn validate(&self) -> Result<()> {
        if let Some(h) = &self.host {
            validate::required_varchar("host", h)?;
        }
        Ok(())
    }
}
