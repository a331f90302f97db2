//! Filling and checking the cell mappings of `nova_api` from the cell
//! databases, the way `nova-manage cell_v2` and Nova's online data
//! migrations do (docs/cellv2.md), but in bulk:
//!
//! - [`map_instances`]: maps every instance of a cell, resumable through the
//!   marker row that `nova-manage cell_v2 map_instances` writes (a run either
//!   tool left half-done is resumed by the other);
//! - [`discover_hosts`]: host mappings for the compute hosts of the cells,
//!   safe when two runs race;
//! - [`populate_queued_for_delete`] and [`populate_user_id`]: the two online
//!   data migrations of `instance_mappings`, returning `(found, done)`;
//! - [`delete_cell`] and [`delete_host`] with nova-manage's safety checks;
//! - [`verify_instance`], [`check`] and [`stats`] for operators.
//!
//! Every function reads the cells in batches and writes `nova_api` through
//! its bulk paths (one statement per batch, never a round trip per row), and
//! is correct when rerun or interrupted. Connections to the cell databases
//! come from a [`CellConnections`]: the cell router of `mapping-router`
//! (one cached pool per cell), or the caller's own.

mod cells;
mod discover;
mod error;
mod inspect;
mod manage;
mod map_instances;
mod online;
mod sql;

pub use cells::CellConnections;
pub use discover::{discover_hosts, discover_hosts_per_cell, CellDiscovery, DiscoveredHost};
pub use error::{Error, Result};
pub use inspect::{
    chain, check, messages, one_line, stats, verify_instance, CellStats, CheckReport, Problem,
    Stats, VerifyOutcome,
};
pub use manage::{delete_cell, delete_host, DeleteCellOutcome, DeleteHostOutcome};
pub use map_instances::{map_instances, MapInstancesOptions, MapInstancesReport, MapProgress};
pub use mapping_router::{Router, RouterOptions};
pub use online::{populate_queued_for_delete, populate_user_id, MigrationCount};

/// The project id of mappings made by another online migration (Nova's
/// `virtual_interface.FAKE_UUID`), which `populate_user_id` leaves alone.
pub const FAKE_PROJECT_ID: &str = "00000000-0000-0000-0000-000000000000";

/// Rows per batch read from a cell and written to `nova_api` when the caller
/// does not say (Nova uses 50).
pub const DEFAULT_BATCH_SIZE: usize = 5_000;

/// Instances per batch of [`map_instances`] when the caller does not say.
/// Each batch sorts the cell's `instances` table as Nova's query does (no
/// index serves that order), so fewer, larger batches map a large cell much
/// faster: at 1M instances on MariaDB, 12,499 rows/s with 50,000 against
/// 2,088 with 5,000 (docs/benchmarks.md, history in docs/notes/benchmarks-history.md), holding about 10 MiB of rows.
pub const MAP_INSTANCES_BATCH_SIZE: usize = 50_000;
