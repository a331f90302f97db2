//! The [`Router`]: `route`, `target_cell` and scatter-gather.

use std::collections::{BTreeMap, HashSet};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::{mpsc, Arc, RwLock};
use std::time::{Duration, Instant};

use mapping_diesel::{Database, DbConnection};
use mapping_model::{CellMapping, Error, InstanceMapping};
use uuid::Uuid;

use crate::error::{BoxError, RouterError};
use crate::options::RouterOptions;
use crate::pools::{CellPool, CellPools, PoolStats};
use crate::workers::{WorkerPool, WorkerStats};

/// The result of one cell in a scatter-gather.
#[derive(Debug)]
pub enum CellResult<T> {
    /// The closure returned this value.
    Ok(T),
    /// The cell could not be reached, or the closure failed or panicked.
    Failed(RouterError),
    /// The cell had not answered when the timeout passed (its late result,
    /// if any, is dropped).
    DidNotRespond,
}

impl<T> CellResult<T> {
    /// The value, if the cell answered with one.
    pub fn ok(self) -> Option<T> {
        match self {
            CellResult::Ok(v) => Some(v),
            _ => None,
        }
    }

    /// A reference to the value, if the cell answered with one.
    pub fn as_ok(&self) -> Option<&T> {
        match self {
            CellResult::Ok(v) => Some(v),
            _ => None,
        }
    }

    /// True if the cell answered with a value.
    pub fn is_ok(&self) -> bool {
        matches!(self, CellResult::Ok(_))
    }

    /// True if the cell did not answer in time.
    pub fn did_not_respond(&self) -> bool {
        matches!(self, CellResult::DidNotRespond)
    }

    /// The error, if the cell failed.
    pub fn error(&self) -> Option<&RouterError> {
        match self {
            CellResult::Failed(e) => Some(e),
            _ => None,
        }
    }
}

/// The results of a scatter-gather, one entry per cell uuid (in uuid order).
pub type CellResults<T> = BTreeMap<Uuid, CellResult<T>>;

/// Where [`Router::route`] sends a request.
#[derive(Debug)]
pub enum Route {
    /// The instance lives in a cell: its mapping and its cell's database.
    Cell(CellTarget),
    /// The instance is not scheduled yet (its mapping has no cell): the
    /// request goes to the build request, as in Nova.
    NotScheduled(InstanceMapping),
}

/// An instance mapping together with a handle on its cell's database.
#[derive(Debug)]
pub struct CellTarget {
    /// The instance mapping (its `cell_mapping` is `Some`).
    pub mapping: InstanceMapping,
    cell: CellMapping,
    pool: Arc<CellPool>,
}

impl CellTarget {
    /// The cell the instance lives in.
    pub fn cell(&self) -> &CellMapping {
        &self.cell
    }

    /// Runs `f` with a connection to the instance's cell database (as
    /// [`Router::target_cell`]).
    pub fn run<T, E>(
        &self,
        f: impl FnOnce(&mut DbConnection) -> Result<T, E>,
    ) -> Result<T, RouterError>
    where
        E: Into<BoxError>,
    {
        self.pool.run(f)
    }
}

struct CellList {
    cells: Arc<Vec<CellMapping>>,
    loaded: Instant,
}

struct Inner {
    api: Database,
    options: RouterOptions,
    pools: CellPools,
    workers: WorkerPool,
    cells: RwLock<Option<CellList>>,
}

/// Routes requests to cell databases: one lazily opened, bounded connection
/// pool per cell, a cached cell list, and a bounded worker pool for
/// scatter-gather. Cheap to clone; clones share everything.
///
/// Cells may be on any backend compiled in, whatever the API database's own.
#[derive(Clone)]
pub struct Router {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Router {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Router")
            .field("api", &self.inner.api)
            .field("pools", &self.inner.pools.stats())
            .field("workers", &self.inner.workers.stats())
            .finish()
    }
}

impl Router {
    /// A router over the cells of the API database `api`. Nothing is loaded
    /// or connected until first use.
    pub fn new(api: Database, options: RouterOptions) -> Result<Self, RouterError> {
        options.validate()?;
        let default_url = options
            .default_database_connection
            .clone()
            .or_else(|| api.options().default_database_connection.clone());
        Ok(Self {
            inner: Arc::new(Inner {
                pools: CellPools::new(
                    default_url,
                    options.max_connections_per_cell,
                    options.connect_timeout,
                ),
                workers: WorkerPool::new(options.worker_pool_size, options.max_detached_workers),
                cells: RwLock::new(None),
                api,
                options,
            }),
        })
    }

    /// The API database.
    pub fn api(&self) -> &Database {
        &self.inner.api
    }

    /// The options in force.
    pub fn options(&self) -> &RouterOptions {
        &self.inner.options
    }

    /// Looks up where the instance lives: [`Route::Cell`] with a handle on
    /// its cell's database (no connection is made yet), or
    /// [`Route::NotScheduled`]. An unknown instance is
    /// [`RouterError::InstanceNotFound`].
    pub fn route(&self, instance_uuid: Uuid) -> Result<Route, RouterError> {
        let mapping = self
            .inner
            .api
            .instance_mappings()
            .get_by_instance_uuid(instance_uuid)
            .map_err(|e| match e {
                Error::InstanceMappingNotFound { .. } => {
                    RouterError::InstanceNotFound { instance_uuid }
                }
                source => RouterError::Api {
                    operation: "route",
                    source,
                },
            })?;
        let Some(cell) = mapping.cell_mapping.clone() else {
            return Ok(Route::NotScheduled(mapping));
        };
        let pool = self.inner.pools.get(&cell)?;
        Ok(Route::Cell(CellTarget {
            mapping,
            cell,
            pool,
        }))
    }

    /// Runs `f` with a connection to `cell`'s database, on the calling
    /// thread. Waits at most the connect timeout for the connection; `f`
    /// itself is not timed.
    pub fn target_cell<T, E>(
        &self,
        cell: &CellMapping,
        f: impl FnOnce(&mut DbConnection) -> Result<T, E>,
    ) -> Result<T, RouterError>
    where
        E: Into<BoxError>,
    {
        self.inner.pools.get(cell)?.run(f)
    }

    /// The cell mappings, from the cached list: loaded on first use and again
    /// once [`RouterOptions::cell_list_refresh`] has passed. If reloading
    /// fails while an older list is at hand, the older list is used (and the
    /// failure logged).
    pub fn cells(&self) -> Result<Arc<Vec<CellMapping>>, RouterError> {
        {
            let guard = self
                .inner
                .cells
                .read()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            if let Some(list) = guard.as_ref() {
                let fresh = self
                    .inner
                    .options
                    .cell_list_refresh
                    .is_none_or(|every| list.loaded.elapsed() < every);
                if fresh {
                    return Ok(Arc::clone(&list.cells));
                }
            }
        }
        match self.refresh_cells() {
            Ok(cells) => Ok(cells),
            Err(e) => {
                let guard = self
                    .inner
                    .cells
                    .read()
                    .unwrap_or_else(std::sync::PoisonError::into_inner);
                match guard.as_ref() {
                    Some(list) => {
                        tracing::warn!(error = %e, "cannot reload the cell list, using the previous one");
                        Ok(Arc::clone(&list.cells))
                    }
                    None => Err(e),
                }
            }
        }
    }

    /// Loads the cell list now, and drops the pools of cells that are gone
    /// or whose URL changed (connections in use finish their work first).
    pub fn refresh_cells(&self) -> Result<Arc<Vec<CellMapping>>, RouterError> {
        let cells =
            Arc::new(
                self.inner
                    .api
                    .cells()
                    .get_all()
                    .map_err(|source| RouterError::Api {
                        operation: "loading the cell list",
                        source,
                    })?,
            );
        let dropped = self.inner.pools.retain(&cells);
        tracing::debug!(cells = cells.len(), dropped, "cell list loaded");
        *self
            .inner
            .cells
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(CellList {
            cells: Arc::clone(&cells),
            loaded: Instant::now(),
        });
        Ok(cells)
    }

    /// The cell with this uuid, from the cached list (reloaded once if the
    /// uuid is not in it).
    pub fn cell(&self, uuid: Uuid) -> Result<CellMapping, RouterError> {
        let find = |cells: &[CellMapping]| cells.iter().find(|c| c.uuid == uuid).cloned();
        if let Some(c) = find(&self.cells()?) {
            return Ok(c);
        }
        find(&self.refresh_cells()?).ok_or(RouterError::CellNotFound { cell: uuid })
    }

    /// Drops the pool of one cell now (it is rebuilt on next use).
    pub fn forget_cell(&self, cell: Uuid) -> bool {
        self.inner.pools.forget(cell)
    }

    /// Whether a pool is open for `cell`.
    pub fn has_pool(&self, cell: Uuid) -> bool {
        self.inner.pools.contains(cell)
    }

    /// Counters of the cell pools.
    pub fn pool_stats(&self) -> PoolStats {
        self.inner.pools.stats()
    }

    /// Counters of the worker pool.
    pub fn worker_stats(&self) -> WorkerStats {
        self.inner.workers.stats()
    }

    /// Runs `f` on every cell of `cells` in parallel, on the worker pool, and
    /// waits at most `timeout` in total. The result has one entry per cell
    /// uuid (duplicates run once): the value, the error, or
    /// [`CellResult::DidNotRespond`] for a cell not finished in time. A late
    /// result is dropped; a closure still running when the timeout passes
    /// has its worker detached and replaced (see
    /// [`RouterOptions::max_detached_workers`]), so it does not hold up later
    /// calls.
    pub fn scatter_gather<T, E, F>(
        &self,
        cells: &[CellMapping],
        timeout: Duration,
        f: F,
    ) -> CellResults<T>
    where
        F: Fn(&CellMapping, &mut DbConnection) -> Result<T, E> + Send + Sync + 'static,
        T: Send + 'static,
        E: Into<BoxError> + 'static,
    {
        let deadline = Instant::now() + timeout;
        let f = Arc::new(f);
        let (tx, rx) = mpsc::channel::<(Uuid, CellResult<T>)>();
        let mut results = CellResults::new();
        let mut pending = Vec::new();
        let mut seen = HashSet::new();
        for cell in cells {
            let uuid = cell.uuid;
            if !seen.insert(uuid) {
                continue;
            }
            let (f, tx, cell, inner) = (
                Arc::clone(&f),
                tx.clone(),
                cell.clone(),
                Arc::clone(&self.inner),
            );
            let task = self.inner.workers.submit(move || {
                let outcome = catch_unwind(AssertUnwindSafe(|| {
                    inner.pools.get(&cell)?.run(|conn| f(&cell, conn))
                }));
                let result = match outcome {
                    Ok(Ok(v)) => CellResult::Ok(v),
                    Ok(Err(e)) => CellResult::Failed(e),
                    Err(panic) => CellResult::Failed(RouterError::Panicked {
                        cell: uuid,
                        message: panic_message(panic.as_ref()),
                    }),
                };
                // The caller may be gone (timed out): the late result is dropped.
                let _ = tx.send((uuid, result));
            });
            pending.push((uuid, task));
        }
        drop(tx);
        while results.len() < pending.len() {
            let left = deadline.saturating_duration_since(Instant::now());
            match rx.recv_timeout(left) {
                Ok((uuid, r)) => {
                    results.insert(uuid, r);
                }
                Err(_) => break,
            }
        }
        for (uuid, task) in &pending {
            if !results.contains_key(uuid) {
                self.inner.workers.cancel(task);
                tracing::warn!(cell = %uuid, ?timeout, "cell did not respond in time");
                results.insert(*uuid, CellResult::DidNotRespond);
            }
        }
        results
    }

    /// [`Router::scatter_gather`] over every cell of the cached cell list
    /// (cell0 included).
    pub fn scatter_gather_all<T, E, F>(
        &self,
        timeout: Duration,
        f: F,
    ) -> Result<CellResults<T>, RouterError>
    where
        F: Fn(&CellMapping, &mut DbConnection) -> Result<T, E> + Send + Sync + 'static,
        T: Send + 'static,
        E: Into<BoxError> + 'static,
    {
        Ok(self.scatter_gather(&self.cells()?, timeout, f))
    }

    /// [`Router::scatter_gather`] over every cell but cell0 (which holds only
    /// instances that failed to schedule).
    pub fn scatter_gather_skip_cell0<T, E, F>(
        &self,
        timeout: Duration,
        f: F,
    ) -> Result<CellResults<T>, RouterError>
    where
        F: Fn(&CellMapping, &mut DbConnection) -> Result<T, E> + Send + Sync + 'static,
        T: Send + 'static,
        E: Into<BoxError> + 'static,
    {
        let cells: Vec<CellMapping> = self
            .cells()?
            .iter()
            .filter(|c| !c.is_cell0())
            .cloned()
            .collect();
        Ok(self.scatter_gather(&cells, timeout, f))
    }

    /// [`Router::scatter_gather`] on one cell: its result, within `timeout`.
    pub fn scatter_gather_single_cell<T, E, F>(
        &self,
        cell: &CellMapping,
        timeout: Duration,
        f: F,
    ) -> CellResult<T>
    where
        F: Fn(&CellMapping, &mut DbConnection) -> Result<T, E> + Send + Sync + 'static,
        T: Send + 'static,
        E: Into<BoxError> + 'static,
    {
        self.scatter_gather(std::slice::from_ref(cell), timeout, f)
            .remove(&cell.uuid)
            .unwrap_or(CellResult::DidNotRespond)
    }
}

fn panic_message(panic: &(dyn std::any::Any + Send)) -> String {
    if let Some(s) = panic.downcast_ref::<&str>() {
        (*s).to_owned()
    } else if let Some(s) = panic.downcast_ref::<String>() {
        s.clone()
    } else {
        "(not a string)".to_owned()
    }
}
