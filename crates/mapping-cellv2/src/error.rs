//! The error type of the cell-v2 tools.

/// What went wrong. The message names the step and the cell; the cause is
/// kept as the [`std::error::Error::source`]. No message holds a password.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A `nova_api` operation of the mapping library failed.
    #[error("nova_api")]
    Api(#[from] mapping_model::Error),
    /// A statement on `nova_api` written here failed.
    #[error("nova_api: {operation} failed")]
    ApiQuery {
        /// What was being done.
        operation: &'static str,
        /// The driver's error.
        #[source]
        source: diesel::result::Error,
    },
    /// The database of a cell could not be reached (or its mapping is
    /// unusable), as the cell router reports it.
    #[error("cell {cell}")]
    Cell {
        /// The cell's identity (`uuid(name)`).
        cell: String,
        /// The router's error (passwords scrubbed).
        #[source]
        source: mapping_router::RouterError,
    },
    /// A statement on a cell database failed.
    #[error("cell {cell}: {operation} failed")]
    CellQuery {
        /// The cell's identity (`uuid(name)`).
        cell: String,
        /// What was being done.
        operation: &'static str,
        /// The driver's error.
        #[source]
        source: diesel::result::Error,
    },
    /// `max_count` below 1.
    #[error("max_count must be a positive integer, got {0}")]
    InvalidMaxCount(i64),
    /// The marker row names an instance that is not in the cell (archived
    /// meanwhile, or the marker belongs to another cell).
    #[error(
        "the map_instances marker names instance {instance_uuid}, which is not in cell {cell}; \
         start again from the beginning with `--reset` (`MapInstancesOptions::reset`)"
    )]
    MarkerNotFound {
        /// The instance the marker names.
        instance_uuid: String,
        /// The cell's identity.
        cell: String,
    },
    /// Another writer kept creating the same mappings while this run
    /// retried its batch.
    #[error("gave up after {attempts} attempts: {what} kept colliding with a concurrent writer")]
    Contended {
        /// What was being written.
        what: &'static str,
        /// Attempts made.
        attempts: u32,
    },
}

/// The result type of the cell-v2 tools.
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// The error of a `nova_api` statement.
    pub(crate) fn api(operation: &'static str) -> impl FnOnce(diesel::result::Error) -> Self {
        move |source| Error::ApiQuery { operation, source }
    }
}
