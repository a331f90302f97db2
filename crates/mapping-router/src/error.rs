//! The errors of routing to cells.

use uuid::Uuid;

/// Any error a closure run on a cell may return (`diesel::result::Error`,
/// `mapping_model::Error`, `String`, `anyhow::Error`, …), kept as the source
/// of [`RouterError::Query`] so the caller can downcast it.
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// What can go wrong when routing to a cell.
///
/// Messages name the cell (by uuid) and never contain a password: URLs are
/// shown redacted and driver messages are scrubbed by `mapping-diesel`.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RouterError {
    /// The API database (`nova_api`) failed while looking up mappings.
    #[error("API database lookup failed during {operation}")]
    Api {
        /// What the router was doing.
        operation: &'static str,
        /// The error of the object API.
        #[source]
        source: mapping_model::Error,
    },
    /// No instance mapping has this instance uuid.
    #[error("instance {instance_uuid} not found")]
    InstanceNotFound {
        /// The instance uuid that was looked up.
        instance_uuid: Uuid,
    },
    /// No cell mapping has this uuid.
    #[error("cell {cell} not found")]
    CellNotFound {
        /// The cell uuid that was looked up.
        cell: Uuid,
    },
    /// The cell's `database_connection` is empty or not a usable URL.
    #[error("cell {cell} has an unusable database_connection: {source}")]
    CellUrl {
        /// The cell.
        cell: Uuid,
        /// Why the URL was refused (never holds a password).
        #[source]
        source: mapping_model::Error,
    },
    /// No connection to the cell's database could be had within the connect
    /// timeout (server down, refusing, not answering, or every pooled
    /// connection busy).
    #[error("cannot reach the database of cell {cell}: {source}")]
    Connect {
        /// The cell.
        cell: Uuid,
        /// The pool's error (URL redacted, driver message scrubbed).
        #[source]
        source: mapping_model::Error,
    },
    /// The cell was not asked: it is unavailable (closures of earlier calls
    /// still run there after their timeout, or a connection to it failed)
    /// until a probe finds it answering (see `Router::cell_health`).
    #[error("cell {cell} is unavailable{}", last_error.as_deref().map(|e| format!(" (last error: {e})")).unwrap_or_default())]
    Unavailable {
        /// The cell.
        cell: Uuid,
        /// When it became unavailable.
        since: std::time::SystemTime,
        /// The failure that made it so, or the last probe's (no password).
        last_error: Option<String>,
    },
    /// The closure run on the cell returned an error.
    #[error("query on cell {cell} failed: {source}")]
    Query {
        /// The cell.
        cell: Uuid,
        /// The closure's error; downcast it to get the original type back.
        #[source]
        source: BoxError,
    },
    /// The closure run on the cell panicked (the worker survives it).
    #[error("query on cell {cell} panicked: {message}")]
    Panicked {
        /// The cell.
        cell: Uuid,
        /// The panic's message, when it was a string.
        message: String,
    },
    /// A [`crate::RouterOptions`] value is not acceptable.
    #[error("invalid router option {field}: {reason}")]
    InvalidOptions {
        /// The option at fault.
        field: &'static str,
        /// Why it was refused.
        reason: String,
    },
}

impl RouterError {
    /// True for [`RouterError::InstanceNotFound`] and [`RouterError::CellNotFound`].
    pub fn is_not_found(&self) -> bool {
        matches!(
            self,
            RouterError::InstanceNotFound { .. } | RouterError::CellNotFound { .. }
        )
    }

    /// True for [`RouterError::Unavailable`]: the cell was not asked.
    pub fn is_unavailable(&self) -> bool {
        matches!(self, RouterError::Unavailable { .. })
    }

    /// The cell this error is about, if any.
    pub fn cell(&self) -> Option<Uuid> {
        match self {
            RouterError::CellNotFound { cell }
            | RouterError::CellUrl { cell, .. }
            | RouterError::Connect { cell, .. }
            | RouterError::Unavailable { cell, .. }
            | RouterError::Query { cell, .. }
            | RouterError::Panicked { cell, .. } => Some(*cell),
            _ => None,
        }
    }
}
