//! Routing requests to Nova cell databases (docs/router.md; Nova's
//! `nova/context.py`): from an instance uuid to its cell's database, one
//! connection pool per cell, and scatter-gather over many cells with a
//! timeout.
//!
//! - [`Router::route`] looks an instance up in `nova_api` and hands back its
//!   mapping with a handle on its cell's database, or
//!   [`Route::NotScheduled`] while it has no cell yet.
//! - [`Router::target_cell`] runs a closure with a connection
//!   (`&mut mapping_diesel::DbConnection`, any backend) to one cell.
//! - [`Router::scatter_gather`] runs a closure on many cells at once on a
//!   bounded worker pool and returns, per cell uuid, [`CellResult::Ok`],
//!   [`CellResult::Failed`] or [`CellResult::DidNotRespond`], within the
//!   timeout even when a cell hangs.
//!
//! Cells may use any backend compiled in, whatever the API database's own:
//! the API database on PostgreSQL with cells on MariaDB and SQLite works.
//! `database_connection` templates are expanded as Nova expands them (docs/tables.md) against [`RouterOptions::default_database_connection`]. Passwords
//! never appear in logs or errors.
//!
//! ```
//! use std::time::Duration;
//! use mapping_diesel::Database;
//! use mapping_router::{Route, Router, RouterOptions};
//!
//! let api = Database::open("sqlite://")?;
//! api.migrate()?;
//! let router = Router::new(api, RouterOptions::default())?;
//! let results = router.scatter_gather_skip_cell0(Duration::from_secs(5), |_cell, _conn| {
//!     Ok::<_, mapping_model::Error>(0)
//! })?;
//! assert!(results.is_empty()); // no cells yet
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

mod error;
mod health;
mod options;
mod pools;
mod router;
mod workers;

pub use error::{BoxError, RouterError};
pub use health::{CellHealth, CellState};
pub use options::{RouterOptions, DEFAULT_CELL_TIMEOUT};
pub use pools::PoolStats;
pub use router::{CellResult, CellResults, CellTarget, Route, Router};
pub use workers::WorkerStats;

pub use mapping_diesel::DbConnection;
