//! Synchronous access to OpenStack Nova's cell-mapping tables on SQLite
//! (built in), PostgreSQL (feature `postgres`) and MySQL/MariaDB (feature
//! `mysql`), through one object API.
//!
//! ```
//! use mapping_diesel::Database;
//! use mapping_model::{NewCellMapping, NewInstanceMapping, InstanceMappingUpdate};
//!
//! let db = Database::open("sqlite://")?; // in memory
//! db.migrate()?;
//! let cell1 = db.cells().create(
//!     NewCellMapping::new("6a1a7a3c-1d0e-4a55-9d49-3f0a1c2b3d4e", "rabbit://", "mysql://").name("cell1"),
//! )?;
//! let uuid = "0b9f4a36-59b8-4b8e-bf0b-4e1c9f6d2a10";
//! let mut im = db.instance_mappings().create(NewInstanceMapping::new(uuid, "project", "user"))?;
//! assert!(im.cell_mapping.is_none()); // not scheduled yet
//! db.instance_mappings().save(&mut im, &InstanceMappingUpdate::new().cell(Some(&cell1)))?;
//! let found = db.instance_mappings().get_by_instance_uuid(uuid)?;
//! assert_eq!(found.cell_mapping.unwrap().name.as_deref(), Some("cell1"));
//! # Ok::<(), mapping_model::Error>(())
//! ```

pub mod cache;
pub mod connection;
pub mod db;
pub mod errors;
pub mod migrations;
pub mod models;
pub mod schema_check;
pub mod timestamp;
pub mod url;

pub use cache::{CacheOptions, CacheStats};
pub use connection::DbConnection;
pub use db::{Database, Executor, Options, RetryPolicy, Stats, Tx};
pub use mapping_model as model;
pub use mapping_model::{Error, Result};
pub use models::cell_mapping::CellMappings;
pub use models::host_mapping::HostMappings;
pub use models::instance_mapping::InstanceMappings;
pub use models::paging::{Walk, MAX_PAGE_SIZE};
pub use url::{BackendKind, ConnectionUrl};

/// The backends compiled into this build (SQLite always; PostgreSQL and
/// MySQL/MariaDB with their cargo features).
pub fn compiled_backends() -> &'static [BackendKind] {
    &[
        BackendKind::Sqlite,
        #[cfg(feature = "postgres")]
        BackendKind::Postgres,
        #[cfg(feature = "mysql")]
        BackendKind::Mysql,
    ]
}

/// Internals the workspace's tests and benchmark use; not part of the API.
#[doc(hidden)]
pub mod __private {
    pub use crate::models::UUID_CHUNK;
}
