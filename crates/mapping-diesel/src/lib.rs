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
//! let im = db.instance_mappings().create(NewInstanceMapping::new(uuid, "project", "user"))?;
//! assert!(im.cell_mapping.is_none()); // not scheduled yet
//! let im = db.instance_mappings().save(&im, &InstanceMappingUpdate::new().cell(Some(&cell1)))?;
//! assert!(im.cell_mapping.is_some()); // the stored row, returned
//! let found = db.instance_mappings().get_by_instance_uuid(uuid)?;
//! assert_eq!(found.cell_mapping.unwrap().name.as_deref(), Some("cell1"));
//! # Ok::<(), mapping_model::Error>(())
//! ```

#[cfg(feature = "fuzzing")]
#[doc(hidden)]
#[path = "fuzz_door.rs"]
pub mod __fuzz;
mod cache;
mod connection;
mod db;
mod errors;
mod migrations;
mod models;
mod options;
// Internal, but reachable for the fuzz targets and the schema tests (see
// `__fuzz` and `__private`); not part of the API.
#[doc(hidden)]
pub mod schema_check;
mod timestamp;
#[doc(hidden)]
pub mod url;

pub use cache::{CacheOptions, CacheStats, FirstTierStats, MemcachedOptions, MemcachedStats};
pub use db::{Database, Executor, Options, RetryPolicy, Stats, Tx};
pub use mapping_model as model;
pub use mapping_model::{Error, Result};
pub use models::cell_mapping::CellMappings;
pub use models::host_mapping::HostMappings;
pub use models::instance_mapping::InstanceMappings;
pub use models::paging::{Walk, MAX_PAGE_SIZE};
pub use url::{BackendKind, ConnectionUrl, UrlError};

/// A connection to any compiled-in backend: what `mapping-router`'s
/// `target_cell` and `scatter_gather` hand to the caller's closure (and the
/// connection type of the hidden [`Database::with_connection`] door).
pub use connection::DbConnection;

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

/// Internals the workspace's tests, benchmark, testkit and `mapping-cellv2`
/// (Nova's timestamp codec for the cell databases' tables) use; not part of
/// the API and free to change.
#[doc(hidden)]
pub mod __private {
    pub use crate::db::Op;
    pub use crate::errors::{diesel_transience, transience, Transience};
    pub use crate::migrations::MIGRATIONS;
    pub use crate::models::bulk::{max_bind_params, rows_per_statement};
    pub use crate::models::UUID_CHUNK;
    pub use crate::schema_check;

    /// Makes `db`'s creates read `LAST_INSERT_ID()` on MySQL/MariaDB, as on
    /// a server without `INSERT … RETURNING` (which CI does not have), so
    /// that the tests reach that path on MariaDB.
    pub fn without_insert_returning(db: &crate::Database) {
        db.forget_insert_returning();
    }

    /// The SQL text of the one statement that saves `update` over
    /// `mapping` (the stored row) on `db`'s backend, or `None` when such a
    /// save takes more than one statement: for the benchmark's raw
    /// baseline, which runs the same statement through the bare driver.
    pub fn save_statement_sql(
        db: &crate::Database,
        mapping: &mapping_model::InstanceMapping,
        update: &mapping_model::InstanceMappingUpdate,
    ) -> crate::Result<Option<String>> {
        crate::models::instance_mapping::fast_path_sql(db.backend(), mapping, update)
    }

    /// The digest a save compares a cell's URLs by on the servers (lowercase
    /// hex SHA-256 of the UTF-8 bytes), for the same benchmark.
    pub fn url_digest(url: &str) -> String {
        crate::models::instance_mapping::sha256_hex(url)
    }

    /// Nova's timestamp codec, for the cell databases' tables that
    /// `mapping-cellv2` and the testkit read and write.
    pub mod timestamp {
        pub use crate::timestamp::{
            now, truncate, MaybeTimestamp, NovaTimestamp, ReadTimestamp, SQLITE_FORMAT,
        };
    }
}
