//! One connection pool per cell, keyed by cell uuid.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use mapping_diesel::{Database, DbConnection, Options};
use mapping_model::{expand_url_template, CellMapping, Error};
use uuid::Uuid;

use crate::error::{BoxError, RouterError};

/// The pool of one cell: a `mapping_diesel::Database` opened lazily on the
/// cell's expanded URL.
pub(crate) struct CellPool {
    cell: Uuid,
    /// The expanded URL, with its password: compared, never logged.
    url: String,
    db: Database,
}

impl std::fmt::Debug for CellPool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CellPool")
            .field("cell", &self.cell)
            .field("url", &self.db.redacted_url())
            .finish()
    }
}

impl CellPool {
    /// Runs `f` with a connection of this pool. A checkout failure is
    /// [`RouterError::Connect`], an error of `f` is [`RouterError::Query`].
    pub(crate) fn run<T, E>(
        &self,
        f: impl FnOnce(&mut DbConnection) -> Result<T, E>,
    ) -> Result<T, RouterError>
    where
        E: Into<BoxError>,
    {
        let mut out = None;
        self.db
            .with_connection(|conn| {
                out = Some(f(conn));
                Ok(())
            })
            .map_err(|source| RouterError::Connect {
                cell: self.cell,
                source,
            })?;
        match out {
            Some(Ok(v)) => Ok(v),
            Some(Err(e)) => Err(RouterError::Query {
                cell: self.cell,
                source: e.into(),
            }),
            // `with_connection` returned Ok without calling `f`: cannot
            // happen, but is reported rather than assumed.
            None => Err(RouterError::Connect {
                cell: self.cell,
                source: Error::PoolTimeout { waited_ms: 0 },
            }),
        }
    }

    /// The cell's URL with its password hidden.
    pub(crate) fn redacted_url(&self) -> String {
        self.db.redacted_url()
    }
}

/// Counters of the cell pools.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct PoolStats {
    /// Pools open now (one per cell used since its last change).
    pub open: usize,
    /// Pools built so far (first use of a cell, or its URL changed).
    pub built: u64,
    /// Pools dropped so far (cell deleted, or its URL changed).
    pub dropped: u64,
}

/// The pools of every cell in use.
pub(crate) struct CellPools {
    pools: Mutex<HashMap<Uuid, Arc<CellPool>>>,
    default_url: Option<String>,
    max_connections: u32,
    connect_timeout: Duration,
    built: AtomicU64,
    dropped: AtomicU64,
}

impl CellPools {
    pub(crate) fn new(
        default_url: Option<String>,
        max_connections: u32,
        connect_timeout: Duration,
    ) -> Self {
        Self {
            pools: Mutex::new(HashMap::new()),
            default_url,
            max_connections,
            connect_timeout,
            built: AtomicU64::new(0),
            dropped: AtomicU64::new(0),
        }
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<Uuid, Arc<CellPool>>> {
        // Nothing panics while the map is locked; a poisoned lock still
        // holds a consistent map.
        self.pools.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The expanded database URL of `cell` (SPEC §5).
    fn url_of(&self, cell: &CellMapping) -> String {
        expand_url_template(&cell.database_connection, self.default_url.as_deref())
    }

    /// The pool of `cell`, built on first use or when the cell's URL changed.
    /// Building connects nothing: the first checkout does, within the
    /// connect timeout.
    pub(crate) fn get(&self, cell: &CellMapping) -> Result<Arc<CellPool>, RouterError> {
        let uuid = cell.uuid;
        let url = self.url_of(cell);
        let mut pools = self.lock();
        if let Some(p) = pools.get(&uuid) {
            if p.url == url {
                return Ok(Arc::clone(p));
            }
        }
        if url.trim().is_empty() {
            return Err(RouterError::CellUrl {
                cell: uuid,
                source: Error::InvalidInput {
                    field: "database_connection",
                    reason: "the cell has no database_connection".into(),
                },
            });
        }
        let options = Options::default()
            .max_connections(self.max_connections)
            .connection_timeout(self.connect_timeout);
        let db = Database::open_lazy_for_router(&url, options).map_err(|source| match source {
            Error::Url(_) => RouterError::CellUrl { cell: uuid, source },
            source => RouterError::Connect { cell: uuid, source },
        })?;
        let pool = Arc::new(CellPool {
            cell: uuid,
            url,
            db,
        });
        self.built.fetch_add(1, Ordering::Relaxed);
        if let Some(old) = pools.insert(uuid, Arc::clone(&pool)) {
            self.dropped.fetch_add(1, Ordering::Relaxed);
            tracing::info!(
                cell = %uuid,
                old = %old.redacted_url(),
                new = %pool.redacted_url(),
                "cell database URL changed: pool rebuilt"
            );
        } else {
            tracing::debug!(cell = %uuid, url = %pool.redacted_url(), "cell pool built");
        }
        Ok(pool)
    }

    /// Drops the pools of cells not in `cells` and of cells whose URL
    /// changed (rebuilt on next use). Returns how many were dropped.
    pub(crate) fn retain(&self, cells: &[CellMapping]) -> usize {
        let wanted: HashMap<Uuid, String> =
            cells.iter().map(|c| (c.uuid, self.url_of(c))).collect();
        let mut pools = self.lock();
        let before = pools.len();
        pools.retain(|uuid, pool| {
            let keep = wanted.get(uuid).is_some_and(|url| *url == pool.url);
            if !keep {
                tracing::info!(cell = %uuid, url = %pool.redacted_url(), "cell pool dropped");
            }
            keep
        });
        let n = before - pools.len();
        self.dropped.fetch_add(n as u64, Ordering::Relaxed);
        n
    }

    /// Drops the pool of one cell; true if there was one.
    pub(crate) fn forget(&self, cell: Uuid) -> bool {
        let removed = self.lock().remove(&cell).is_some();
        if removed {
            self.dropped.fetch_add(1, Ordering::Relaxed);
        }
        removed
    }

    /// Whether a pool is open for `cell`.
    pub(crate) fn contains(&self, cell: Uuid) -> bool {
        self.lock().contains_key(&cell)
    }

    pub(crate) fn stats(&self) -> PoolStats {
        PoolStats {
            open: self.lock().len(),
            built: self.built.load(Ordering::Relaxed),
            dropped: self.dropped.load(Ordering::Relaxed),
        }
    }
}
