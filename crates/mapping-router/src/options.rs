//! Options of a [`crate::Router`].

use std::time::Duration;

use crate::error::RouterError;

/// The longest duration an option accepts.
const DAY: Duration = Duration::from_secs(24 * 3600);

/// Nova's default timeout of a scatter-gather (`CELL_TIMEOUT`, 60 s).
pub const DEFAULT_CELL_TIMEOUT: Duration = Duration::from_secs(60);

/// How a [`crate::Router`] reaches the cells. Its `Debug` hides the
/// password of the default URL.
#[derive(Clone)]
#[non_exhaustive]
pub struct RouterOptions {
    /// The default against which `database_connection` templates are
    /// expanded (Nova's `[database]/connection`). `None` uses the API
    /// database's own [`mapping_diesel::Options::default_database_connection`].
    pub default_database_connection: Option<String>,
    /// Most connections each cell's pool holds (at least 1).
    pub max_connections_per_cell: u32,
    /// Threads running scatter-gather closures (Nova's
    /// `[DEFAULT]/cell_worker_thread_pool_size`, 5; at least 1).
    pub worker_pool_size: usize,
    /// Most workers that may be left running a closure whose caller timed
    /// out, each replaced by a fresh worker so the pool keeps
    /// `worker_pool_size` workers free for later calls. Beyond this bound a
    /// hung worker keeps its place until its closure returns.
    pub max_detached_workers: usize,
    /// Most closures of one cell that may still run after their caller's
    /// timeout (at least 1, default 1). A cell that reaches it is
    /// unavailable: new work for it is answered at once
    /// ([`crate::CellResult::Unavailable`]) without a worker or a
    /// connection, until its detached work has returned and a probe finds
    /// it answering.
    pub max_detached_per_cell: usize,
    /// How often an unavailable cell is probed (`SELECT 1` on a thread of
    /// its own), at most (default 1 s; at most a day). A probe is also
    /// started at once when a detached closure of the cell returns.
    pub probe_interval: Duration,
    /// How long the cell list is used before it is loaded again; `None` keeps
    /// it until [`crate::Router::refresh_cells`] (Nova never refreshes it).
    pub cell_list_refresh: Option<Duration>,
    /// How long a closure waits for a connection to its cell (a server that
    /// is down or does not answer fails after this). Must be longer than zero.
    pub connect_timeout: Duration,
}

impl std::fmt::Debug for RouterOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RouterOptions")
            .field(
                "default_database_connection",
                &self
                    .default_database_connection
                    .as_deref()
                    .map(mapping_model::redact_url),
            )
            .field("max_connections_per_cell", &self.max_connections_per_cell)
            .field("worker_pool_size", &self.worker_pool_size)
            .field("max_detached_workers", &self.max_detached_workers)
            .field("max_detached_per_cell", &self.max_detached_per_cell)
            .field("probe_interval", &self.probe_interval)
            .field("cell_list_refresh", &self.cell_list_refresh)
            .field("connect_timeout", &self.connect_timeout)
            .finish()
    }
}

impl Default for RouterOptions {
    fn default() -> Self {
        Self {
            default_database_connection: None,
            max_connections_per_cell: 5,
            worker_pool_size: 5,
            max_detached_workers: 5,
            max_detached_per_cell: 1,
            probe_interval: Duration::from_secs(1),
            cell_list_refresh: Some(Duration::from_secs(60)),
            connect_timeout: Duration::from_secs(10),
        }
    }
}

impl RouterOptions {
    /// The defaults (see the field docs).
    pub fn new() -> Self {
        Self::default()
    }

    /// Sets [`RouterOptions::default_database_connection`].
    pub fn default_database_connection(mut self, url: impl Into<String>) -> Self {
        self.default_database_connection = Some(url.into());
        self
    }

    /// Sets [`RouterOptions::max_connections_per_cell`].
    pub fn max_connections_per_cell(mut self, n: u32) -> Self {
        self.max_connections_per_cell = n;
        self
    }

    /// Sets [`RouterOptions::worker_pool_size`].
    pub fn worker_pool_size(mut self, n: usize) -> Self {
        self.worker_pool_size = n;
        self
    }

    /// Sets [`RouterOptions::max_detached_workers`].
    pub fn max_detached_workers(mut self, n: usize) -> Self {
        self.max_detached_workers = n;
        self
    }

    /// Sets [`RouterOptions::max_detached_per_cell`].
    pub fn max_detached_per_cell(mut self, n: usize) -> Self {
        self.max_detached_per_cell = n;
        self
    }

    /// Sets [`RouterOptions::probe_interval`].
    pub fn probe_interval(mut self, every: Duration) -> Self {
        self.probe_interval = every;
        self
    }

    /// Sets [`RouterOptions::cell_list_refresh`].
    pub fn cell_list_refresh(mut self, every: Option<Duration>) -> Self {
        self.cell_list_refresh = every;
        self
    }

    /// Sets [`RouterOptions::connect_timeout`].
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
        self
    }

    /// Refuses values the router cannot work with.
    pub fn validate(&self) -> Result<(), RouterError> {
        let bad = |field, reason: &str| {
            Err(RouterError::InvalidOptions {
                field,
                reason: reason.to_owned(),
            })
        };
        if self.max_connections_per_cell == 0 {
            return bad("max_connections_per_cell", "must be at least 1");
        }
        if self.worker_pool_size == 0 {
            return bad("worker_pool_size", "must be at least 1");
        }
        if self.max_detached_per_cell == 0 {
            return bad("max_detached_per_cell", "must be at least 1");
        }
        if self.probe_interval > DAY {
            return bad("probe_interval", "must be at most a day");
        }
        if self.connect_timeout > DAY {
            return bad("connect_timeout", "must be at most a day");
        }
        if self.connect_timeout.is_zero() {
            return bad("connect_timeout", "must be longer than zero");
        }
        if self.cell_list_refresh.is_some_and(|d| d.is_zero()) {
            return bad(
                "cell_list_refresh",
                "must be longer than zero (use None to never refresh)",
            );
        }
        Ok(())
    }
}
