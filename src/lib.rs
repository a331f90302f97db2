//! One synchronous object API over OpenStack Nova's cell-mapping tables
//! (`cell_mappings`, `instance_mappings`, `host_mappings` of `nova_api`), on
//! SQLite (built in), PostgreSQL (feature `postgres`) and MySQL/MariaDB
//! (feature `mysql`).
//!
//! This facade re-exports [`mapping_diesel`] (the database handle and object
//! API) and [`mapping_model`] (the objects and errors) so a service depends on
//! one crate.

pub use mapping_diesel::*;
pub use mapping_model::{
    CellMapping, CellMappingUpdate, ConnectionFailure, HostMapping, HostMappingUpdate,
    InstanceCounts, InstanceMapping, InstanceMappingUpdate, InstanceUuid, NewCellMapping,
    NewHostMapping, NewInstanceMapping, ToUuid, Uuid, CELL0_UUID, INSTANCE_MIGRATION_MARKER,
};

/// Routing to cell databases: per-cell pools, `route`, `target_cell` and
/// scatter-gather (the `mapping-router` crate).
pub use mapping_router as router;

/// The README's code blocks, compiled and run as doctests.
#[doc = include_str!("../README.md")]
#[cfg(doctest)]
pub struct ReadmeDoctests;

/// The examples of `docs/tables.md`, compiled and run as doctests.
#[cfg(doctest)]
#[doc = include_str!("../docs/tables.md")]
pub struct TablesDoc;

/// The examples of `docs/router.md`, compiled as doctests.
#[cfg(doctest)]
#[doc = include_str!("../docs/router.md")]
pub struct RouterDoc;
