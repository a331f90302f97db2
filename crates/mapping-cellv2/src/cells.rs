//! Connections to the cell databases.

use std::collections::HashMap;
use std::sync::Mutex;

use mapping_diesel::{Database, DbConnection, Options};
use mapping_model::CellMapping;

use crate::{Error, Result};

/// Hands out a connection to a cell's database. The functions of this crate
/// take one so that callers with their own pools (a cell router) can plug
/// them in; [`CellDatabases`] is the plain implementation.
pub trait CellConnections {
    /// Runs `f` with a connection to `cell`'s database.
    fn with_cell<T>(
        &self,
        cell: &CellMapping,
        f: &mut dyn FnMut(&mut DbConnection) -> Result<T>,
    ) -> Result<T>;
}

/// One small connection pool per cell, opened on first use from the cell's
/// `database_connection` (templates already expanded on load) and kept.
#[derive(Debug)]
pub struct CellDatabases {
    options: Options,
    pools: Mutex<HashMap<String, Database>>,
}

impl Default for CellDatabases {
    fn default() -> Self {
        Self::new(Options {
            max_connections: 2,
            ..Options::default()
        })
    }
}

impl CellDatabases {
    /// Pools opened with `options`.
    pub fn new(options: Options) -> Self {
        Self {
            options,
            pools: Mutex::new(HashMap::new()),
        }
    }

    /// The pool of `cell`, opened now if needed.
    pub fn database(&self, cell: &CellMapping) -> Result<Database> {
        let mut pools = self
            .pools
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(db) = pools.get(&cell.uuid) {
            return Ok(db.clone());
        }
        let url = cell.database_connection.as_str();
        if url.is_empty() {
            return Err(Error::NoDatabaseConnection(cell.identity()));
        }
        let db = Database::open_with(url, self.options.clone()).map_err(|source| {
            Error::CellConnection {
                cell: cell.identity(),
                source,
            }
        })?;
        pools.insert(cell.uuid.clone(), db.clone());
        Ok(db)
    }
}

impl CellConnections for CellDatabases {
    fn with_cell<T>(
        &self,
        cell: &CellMapping,
        f: &mut dyn FnMut(&mut DbConnection) -> Result<T>,
    ) -> Result<T> {
        let db = self.database(cell)?;
        db.with_connection(|c| Ok(f(c)))
            .map_err(|source| Error::CellConnection {
                cell: cell.identity(),
                source,
            })?
    }
}
