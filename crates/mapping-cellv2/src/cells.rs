//! Connections to the cell databases.

use mapping_diesel::DbConnection;
use mapping_model::CellMapping;
use mapping_router::{Router, RouterError};

use crate::{Error, Result};

/// Hands out a connection to a cell's database. Implemented for
/// [`mapping_router::Router`] (one cached pool per cell); the functions of
/// this crate take any implementation, so that tests or callers with their
/// own pools can plug theirs in.
pub trait CellConnections {
    /// Runs `f` with a connection to `cell`'s database.
    fn with_cell<T>(
        &self,
        cell: &CellMapping,
        f: &mut dyn FnMut(&mut DbConnection) -> Result<T>,
    ) -> Result<T>;
}

impl CellConnections for Router {
    fn with_cell<T>(
        &self,
        cell: &CellMapping,
        f: &mut dyn FnMut(&mut DbConnection) -> Result<T>,
    ) -> Result<T> {
        self.target_cell(cell, |c| f(c)).map_err(|e| match e {
            // Our own error, returned by `f`: hand it back as it was.
            RouterError::Query { source, .. } => match source.downcast::<Error>() {
                Ok(mine) => *mine,
                Err(other) => Error::Cell {
                    cell: cell.identity(),
                    source: RouterError::Query {
                        cell: cell.uuid,
                        source: other,
                    },
                },
            },
            other => Error::Cell {
                cell: cell.identity(),
                source: other,
            },
        })
    }
}
