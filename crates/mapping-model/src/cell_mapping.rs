//! The cell mapping: one cell's database and message queue.

use chrono::NaiveDateTime;
use uuid::Uuid;

use crate::error::Result;
use crate::redact::{Redacted, RedactedOpt};
use crate::validate;

/// The uuid of cell0, the cell holding instances that failed to schedule.
pub const CELL0_UUID: &str = "00000000-0000-0000-0000-000000000000";

/// A row of `cell_mappings`, with its URLs expanded (docs/tables.md).
///
/// Its `Debug` shows the URLs with their passwords hidden
/// ([`crate::redact_url`]); the fields themselves hold them.
#[derive(Clone, PartialEq, Eq)]
pub struct CellMapping {
    /// Surrogate key (read-only).
    pub id: i32,
    /// The cell's uuid.
    pub uuid: Uuid,
    /// Human-readable name, if any.
    pub name: Option<String>,
    /// Message-queue URL (templates expanded on load; NULL reads as "").
    pub transport_url: String,
    /// Database URL (templates expanded on load; NULL reads as "").
    pub database_connection: String,
    /// Whether the scheduler skips this cell (NULL reads as false).
    pub disabled: bool,
    /// Creation time (naive UTC).
    pub created_at: Option<NaiveDateTime>,
    /// Last update time (naive UTC).
    pub updated_at: Option<NaiveDateTime>,
}

impl CellMapping {
    /// `"<uuid>(<name>)"` when a name is set, else `"<uuid>"`.
    pub fn identity(&self) -> String {
        match &self.name {
            Some(name) => format!("{}({})", self.uuid, name),
            None => self.uuid.to_string(),
        }
    }

    /// True for cell0.
    pub fn is_cell0(&self) -> bool {
        self.uuid.is_nil()
    }
}

/// What is needed to create a cell mapping (`Debug` hides passwords).
#[derive(Clone, PartialEq, Eq)]
pub struct NewCellMapping {
    /// The cell's uuid.
    pub uuid: String,
    /// Human-readable name, if any.
    pub name: Option<String>,
    /// Message-queue URL or template, stored raw.
    pub transport_url: String,
    /// Database URL or template, stored raw.
    pub database_connection: String,
    /// Whether the cell starts disabled (false unless given).
    pub disabled: bool,
}

impl NewCellMapping {
    /// A new enabled cell with no name.
    pub fn new(
        uuid: impl Into<String>,
        transport_url: impl Into<String>,
        database_connection: impl Into<String>,
    ) -> Self {
        Self {
            uuid: uuid.into(),
            name: None,
            transport_url: transport_url.into(),
            database_connection: database_connection.into(),
            disabled: false,
        }
    }

    /// Sets the name.
    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.name = Some(name.into());
        self
    }

    /// Sets the disabled flag.
    pub fn disabled(mut self, disabled: bool) -> Self {
        self.disabled = disabled;
        self
    }

    /// Checks every field and canonicalises the uuid.
    pub fn validated(mut self) -> Result<Self> {
        self.uuid = validate::uuid("uuid", &self.uuid)?;
        if let Some(name) = &self.name {
            validate::optional_varchar("name", name)?;
        }
        validate::text("transport_url", &self.transport_url)?;
        validate::text("database_connection", &self.database_connection)?;
        Ok(self)
    }
}

/// The fields of a cell mapping to change on save; `None` leaves a field as
/// it is (`Debug` hides passwords).
#[derive(Clone, Default, PartialEq, Eq)]
pub struct CellMappingUpdate {
    /// New name (`Some(None)` clears it).
    pub name: Option<Option<String>>,
    /// New message-queue URL or template.
    pub transport_url: Option<String>,
    /// New database URL or template.
    pub database_connection: Option<String>,
    /// New disabled flag.
    pub disabled: Option<bool>,
}

impl CellMappingUpdate {
    /// An update that changes nothing.
    pub fn new() -> Self {
        Self::default()
    }

    /// Changes the name (`None` clears it).
    pub fn name(mut self, name: Option<&str>) -> Self {
        self.name = Some(name.map(str::to_owned));
        self
    }

    /// Changes the message-queue URL.
    pub fn transport_url(mut self, url: impl Into<String>) -> Self {
        self.transport_url = Some(url.into());
        self
    }

    /// Changes the database URL.
    pub fn database_connection(mut self, url: impl Into<String>) -> Self {
        self.database_connection = Some(url.into());
        self
    }

    /// Changes the disabled flag.
    pub fn disabled(mut self, disabled: bool) -> Self {
        self.disabled = Some(disabled);
        self
    }

    /// True when nothing would change.
    pub fn is_empty(&self) -> bool {
        self == &Self::default()
    }

    /// Checks every field that is set.
    pub fn validate(&self) -> Result<()> {
        if let Some(Some(name)) = &self.name {
            validate::optional_varchar("name", name)?;
        }
        if let Some(u) = &self.transport_url {
            validate::text("transport_url", u)?;
        }
        if let Some(u) = &self.database_connection {
            validate::text("database_connection", u)?;
        }
        Ok(())
    }
}

impl std::fmt::Debug for CellMapping {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CellMapping")
            .field("id", &self.id)
            .field("uuid", &self.uuid)
            .field("name", &self.name)
            .field("transport_url", &Redacted(&self.transport_url))
            .field("database_connection", &Redacted(&self.database_connection))
            .field("disabled", &self.disabled)
            .field("created_at", &self.created_at)
            .field("updated_at", &self.updated_at)
            .finish()
    }
}

impl std::fmt::Debug for NewCellMapping {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NewCellMapping")
            .field("uuid", &self.uuid)
            .field("name", &self.name)
            .field("transport_url", &Redacted(&self.transport_url))
            .field("database_connection", &Redacted(&self.database_connection))
            .field("disabled", &self.disabled)
            .finish()
    }
}

impl std::fmt::Debug for CellMappingUpdate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CellMappingUpdate")
            .field("name", &self.name)
            .field("transport_url", &RedactedOpt(self.transport_url.as_deref()))
            .field(
                "database_connection",
                &RedactedOpt(self.database_connection.as_deref()),
            )
            .field("disabled", &self.disabled)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cell(name: Option<&str>) -> CellMapping {
        CellMapping {
            id: 1,
            uuid: Uuid::nil(),
            name: name.map(Into::into),
            transport_url: "none:///".into(),
            database_connection: "sqlite://".into(),
            disabled: false,
            created_at: None,
            updated_at: None,
        }
    }

    #[test]
    fn identity_and_cell0() {
        assert_eq!(
            cell(Some("cell0")).identity(),
            format!("{CELL0_UUID}(cell0)")
        );
        assert_eq!(cell(None).identity(), CELL0_UUID);
        assert!(cell(None).is_cell0());
        let mut other = cell(None);
        other.uuid = "11111111-1111-1111-1111-111111111111".parse().unwrap();
        assert!(!other.is_cell0());
    }

    #[test]
    fn new_cell_is_validated() {
        let ok = NewCellMapping::new(
            "AAAAAAAA-1111-1111-1111-111111111111",
            "rabbit://",
            "mysql://",
        )
        .validated()
        .unwrap();
        assert_eq!(ok.uuid, "aaaaaaaa-1111-1111-1111-111111111111");
        assert!(!ok.disabled);
        assert!(NewCellMapping::new("nope", "", "").validated().is_err());
        assert!(NewCellMapping::new(CELL0_UUID, "", "")
            .name("x".repeat(256))
            .validated()
            .is_err());
    }
}
