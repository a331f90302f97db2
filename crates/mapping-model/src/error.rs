//! The error type shared by every crate of the workspace.

/// What can go wrong when using the mapping API.
///
/// Messages name the key or field involved and never contain a password.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// No cell mapping has this uuid.
    #[error("cell mapping {uuid} not found")]
    CellMappingNotFound {
        /// The uuid that was looked up.
        uuid: String,
    },
    /// No instance mapping has this instance uuid.
    #[error("instance mapping for instance {instance_uuid} not found")]
    InstanceMappingNotFound {
        /// The instance uuid that was looked up.
        instance_uuid: String,
    },
    /// No host mapping has this host (or id, rendered as `id=N`).
    #[error("host mapping for host {host} not found")]
    HostMappingNotFound {
        /// The host that was looked up.
        host: String,
    },
    /// A cell mapping with this uuid already exists.
    #[error("cell mapping {uuid} already exists")]
    CellMappingExists {
        /// The duplicate uuid.
        uuid: String,
    },
    /// An instance mapping for this instance already exists.
    #[error("instance mapping for instance {instance_uuid} already exists")]
    InstanceMappingExists {
        /// The duplicate instance uuid.
        instance_uuid: String,
    },
    /// A host mapping for this host already exists.
    #[error("host mapping for host {host} already exists")]
    HostMappingExists {
        /// The duplicate host.
        host: String,
    },
    /// The cell still has mappings pointing at it and cannot be destroyed.
    #[error(
        "cell mapping {uuid} is in use by {instance_mappings} instance mapping(s) and {host_mappings} host mapping(s)"
    )]
    CellMappingInUse {
        /// The cell's uuid.
        uuid: String,
        /// Instance mappings that still point at the cell.
        instance_mappings: i64,
        /// Host mappings that still point at the cell.
        host_mappings: i64,
    },
    /// A value given by the caller is not acceptable; nothing was written.
    #[error("invalid {field}: {reason}")]
    InvalidInput {
        /// The field (or argument) at fault.
        field: &'static str,
        /// Why it was refused.
        reason: String,
    },
    /// A row in the database cannot be turned into an object.
    #[error("bad row in {table} (id {id}): {reason}")]
    BadRow {
        /// The table holding the row.
        table: &'static str,
        /// The row's primary key.
        id: i32,
        /// What is wrong with it.
        reason: String,
    },
    /// The connection URL was refused; the typed cause holds no password.
    #[error("invalid connection URL: {0}")]
    Url(#[source] crate::UrlError),
    /// The database could not be reached (the URL is shown redacted).
    #[error("cannot connect to {url}: {source}")]
    Connection {
        /// The redacted URL.
        url: String,
        /// Why: the driver's typed error, with any password removed (shared,
        /// as the pool keeps its last connection error for every waiter).
        #[source]
        source: std::sync::Arc<ConnectionFailure>,
    },
    /// No pooled connection became free in time.
    #[error("timed out after {waited_ms} ms waiting for a database connection")]
    PoolTimeout {
        /// How long the caller waited.
        waited_ms: u64,
    },
    /// The schema of an existing database differs from what is expected.
    #[error("schema mismatch: {}", .differences.join("; "))]
    SchemaMismatch {
        /// One line per difference found.
        differences: Vec<String>,
    },
    /// Applying or reverting migrations failed, or was refused (a database
    /// whose tables the library does not recognise). The underlying error,
    /// when there is one (diesel's migration harness, the database), is the
    /// source; build one with [`Error::migration`].
    #[error("migration failed: {reason}{}", cause(.source))]
    Migration {
        /// What failed, or why it was refused.
        reason: String,
        /// The underlying error.
        #[source]
        source: Option<BoxError>,
    },
    /// The connection was lost while a write was being committed (or, for a
    /// write outside a transaction, while it ran): the write may or may not
    /// have been applied. It is not retried. Creating the same instance
    /// mapping again through the same handle finds the row if it was
    /// written (same content: `Ok` with the stored row).
    #[error("outcome of {operation} unknown: the connection was lost around the commit: {source}")]
    OutcomeUnknown {
        /// What the library was doing.
        operation: &'static str,
        /// The driver's error.
        #[source]
        source: diesel::result::Error,
    },
    /// Any other database error, with the operation that raised it.
    #[error("database error during {operation}: {source}")]
    Database {
        /// What the library was doing.
        operation: &'static str,
        /// The driver's error.
        #[source]
        source: diesel::result::Error,
    },
}

/// A boxed error of any type, as diesel's migration harness returns them.
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// `": <source>"` when there is a source, for messages that show it.
fn cause(source: &Option<BoxError>) -> String {
    source
        .as_ref()
        .map(|s| format!(": {s}"))
        .unwrap_or_default()
}

impl Error {
    /// [`Error::Migration`] with `reason` and the underlying error, for
    /// instance what diesel's `MigrationHarness` returned:
    /// `conn.run_pending_migrations(m).map_err(|e| Error::migration("running the migrations", e))`.
    pub fn migration(reason: impl Into<String>, source: impl Into<BoxError>) -> Self {
        Error::Migration {
            reason: reason.into(),
            source: Some(source.into()),
        }
    }

    /// [`Error::Migration`] with a reason and no underlying error (a refusal).
    pub fn migration_refused(reason: impl Into<String>) -> Self {
        Error::Migration {
            reason: reason.into(),
            source: None,
        }
    }

    /// True for the not-found family of errors.
    pub fn is_not_found(&self) -> bool {
        matches!(
            self,
            Error::CellMappingNotFound { .. }
                | Error::InstanceMappingNotFound { .. }
                | Error::HostMappingNotFound { .. }
        )
    }

    /// True for the already-exists family of errors.
    pub fn is_already_exists(&self) -> bool {
        matches!(
            self,
            Error::CellMappingExists { .. }
                | Error::InstanceMappingExists { .. }
                | Error::HostMappingExists { .. }
        )
    }
}

impl From<diesel::result::Error> for Error {
    /// A driver error outside any named operation (for example a commit).
    fn from(source: diesel::result::Error) -> Self {
        Error::Database {
            operation: "transaction",
            source,
        }
    }
}

/// Why a database connection could not be opened or kept: the typed cause
/// of [`Error::Connection`]. No message holds a password.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConnectionFailure {
    /// The backend is not compiled into this build.
    #[error("{backend} support is not compiled in (enable the cargo feature)")]
    NotCompiled {
        /// The backend's name.
        backend: &'static str,
    },
    /// The driver could not open the connection (server down, refused,
    /// authentication failed, bad file path…).
    #[error("{0}")]
    Establish(#[source] diesel::ConnectionError),
    /// The connection opened but setting up its session failed.
    #[error("setting up the session failed: {0}")]
    Setup(#[source] diesel::result::Error),
    /// A pooled connection did not answer its ping: it is dead.
    #[error("the connection is dead: {0}")]
    Dead(#[source] diesel::result::Error),
    /// The server did not complete the connection within the connect
    /// timeout (`Options::connect_timeout`, or the URL's `connect_timeout`).
    #[error("no connection within the connect timeout of {after:?}")]
    TimedOut {
        /// The connect timeout in force.
        after: std::time::Duration,
    },
    /// The MariaDB Galera node is not in the cluster's primary component
    /// (`wsrep_ready = OFF`: cut off from the majority) and refuses every
    /// query (error 1047) until it rejoins.
    #[error("the Galera node is not in the cluster's primary component (wsrep_ready = OFF) and refuses queries: {0}")]
    NotPrimary(#[source] diesel::result::Error),
    /// The in-memory SQLite database's only connection was lost (for
    /// instance dropped after a failure that could not be rolled back): its
    /// data is gone, and a fresh empty database is never swapped in.
    #[error("the in-memory SQLite database was lost: {reason}")]
    MemoryDatabaseLost {
        /// What happened to it.
        reason: &'static str,
    },
}

/// Result alias used throughout the workspace.
pub type Result<T, E = Error> = std::result::Result<T, E>;
