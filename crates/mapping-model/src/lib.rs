//! Schema and domain types of OpenStack Nova's cell-mapping tables
//! (`cell_mappings`, `instance_mappings`, `host_mappings` in `nova_api`).
//!
//! This crate does no I/O: it holds the diesel table definitions, the plain
//! objects the API hands out, the data needed to create or change them, input
//! validation shared by every backend, URL-template expansion, and the error
//! type. `mapping-diesel` builds the database access on top.

mod cell_mapping;
pub mod cell_schema;
mod error;
mod host_mapping;
mod ident;
mod instance_mapping;
mod redact;
pub mod schema;
mod url_error;
// Shared with `mapping-diesel` and the fuzz targets; not part of the API.
#[doc(hidden)]
pub mod url_scheme;
#[doc(hidden)]
pub mod url_template;
#[doc(hidden)]
pub mod validate;

pub use cell_mapping::{CellMapping, CellMappingUpdate, NewCellMapping, CELL0_UUID};
pub use error::{ConnectionFailure, Error, Result};
pub use host_mapping::{HostMapping, HostMappingUpdate, NewHostMapping};
pub use ident::{InstanceUuid, ToUuid};
pub use instance_mapping::{
    InstanceCounts, InstanceMapping, InstanceMappingUpdate, NewInstanceMapping,
    INSTANCE_MIGRATION_MARKER,
};
pub use redact::{mask_query, redact_url};
pub use url_error::{BackendKind, UrlError};
pub use url_template::expand_url_template;
pub use uuid::Uuid;
