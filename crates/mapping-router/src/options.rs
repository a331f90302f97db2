//! Options of a [`crate::Router`].

use std::time::Duration;

use crate::error::RouterError;

/// Nova's default timeout of a scatter-gather (`CELL_TIMEOUT`, 60 s).
pub const DEFAULT_CELL_TIMEOUT: Duration = Duration::from_secs(60);

/// How a [`crate::Router`] reaches the cells.
#[derive(Debug, Clone)]
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
    /// How long the cell list is used before it is loaded again; `None` keeps
    /// it until [`crate::Router::refresh_cells`] (Nova never refreshes it).
    pub cell_list_refresh: Option<Duration>,
    /// How long a closure waits for a connection to its cell (a server that
    /// is down or does not answer fails after this). Must be longer than zero.
    pub connect_timeout: Duration,
}

impl Default for RouterOptions {
    fn default() -> Self {
        Self {
            default_database_connection: None,
            max_connections_per_cell: 5,
            worker_pool_size: 5,
            max_detached_workers: 5,
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
