//! The [`Router`]: `route`, `target_cell` and scatter-gather.

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, PoisonError, RwLock};
use std::time::{Duration, Instant, SystemTime};

use mapping_diesel::{Database, DbConnection};
use mapping_model::{CellMapping, Error, InstanceMapping};
use uuid::Uuid;

use crate::error::{BoxError, RouterError};
use crate::health::{CellHealth, Health, JobFlags, Refusal};
use crate::options::RouterOptions;
use crate::pools::{CellPool, CellPools, Lookup, Origin, PoolStats};
use crate::workers::{Job, WorkerPool, WorkerStats};

/// The result of one cell in a scatter-gather.
#[derive(Debug)]
#[non_exhaustive]
pub enum CellResult<T> {
    /// The closure returned this value.
    Ok(T),
    /// The cell could not be reached, or the closure failed or panicked.
    Failed(RouterError),
    /// The cell had not answered when the timeout passed (its late result,
    /// if any, is dropped).
    DidNotRespond,
    /// The cell was not asked: it is unavailable (work of earlier calls
    /// still runs there after their timeout, or a connection to it failed)
    /// until a probe finds it answering (see [`Router::cell_health`]).
    Unavailable {
        /// When the cell became unavailable.
        since: SystemTime,
        /// The failure that made it so, or the last probe's (no password).
        last_error: Option<String>,
    },
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

    /// True if the cell was not asked because it is unavailable.
    pub fn is_unavailable(&self) -> bool {
        matches!(self, CellResult::Unavailable { .. })
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
    router: Router,
}

impl CellTarget {
    /// The cell the instance lives in (as last read by the router, when the
    /// mapping's copy was older).
    pub fn cell(&self) -> &CellMapping {
        &self.cell
    }

    /// Runs `f` with a connection to the instance's cell database (as
    /// [`Router::target_cell`]); [`RouterError::Unavailable`] at once while
    /// the cell is unavailable.
    pub fn run<T, E>(
        &self,
        f: impl FnOnce(&mut DbConnection) -> Result<T, E>,
    ) -> Result<T, RouterError>
    where
        E: Into<BoxError>,
    {
        self.router.inner.run_here(&self.cell, &self.pool, f)
    }
}

struct CellList {
    cells: Arc<Vec<CellMapping>>,
    loaded: Instant,
    /// The read sequence of the load.
    seq: u64,
    /// [`Database::cell_writes`] before the load.
    cell_writes: u64,
}

struct Inner {
    api: Database,
    options: RouterOptions,
    pools: CellPools,
    workers: WorkerPool,
    health: Health,
    cells: RwLock<Option<CellList>>,
    /// The read sequence (see the `pools` module).
    reads: AtomicU64,
}

/// Routes requests to cell databases: one lazily opened, bounded connection
/// pool per cell, a cached cell list, a bounded worker pool for
/// scatter-gather, and per-cell health (a cell that hangs or cannot be
/// reached is answered for at once instead of being handed more work).
/// Cheap to clone; clones share everything.
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

/// The results of one scatter-gather call, filled in by its jobs.
struct Slots<T> {
    state: Mutex<SlotState<T>>,
    done: Condvar,
}

struct SlotState<T> {
    results: Vec<Option<CellResult<T>>>,
    missing: usize,
    /// The caller has stopped waiting: late results are dropped.
    closed: bool,
}

impl<T> Slots<T> {
    fn new(n: usize) -> Self {
        Self {
            state: Mutex::new(SlotState {
                results: (0..n).map(|_| None).collect(),
                missing: n,
                closed: false,
            }),
            done: Condvar::new(),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, SlotState<T>> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Stores the result of slot `i`; the caller is woken by the last one.
    fn put(&self, i: usize, result: CellResult<T>) {
        let mut st = self.lock();
        if st.closed {
            return; // dropped after the lock is released
        }
        let SlotState {
            results, missing, ..
        } = &mut *st;
        if let Some(slot) = results.get_mut(i) {
            if slot.is_none() {
                *missing -= 1;
            }
            *slot = Some(result);
        }
        if st.missing == 0 {
            self.done.notify_one();
        }
    }

    /// Waits until every slot is filled or `deadline` passes, then closes.
    fn collect(&self, deadline: Instant) -> Vec<Option<CellResult<T>>> {
        let mut st = self.lock();
        while st.missing > 0 {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break;
            }
            st = self
                .done
                .wait_timeout(st, left)
                .unwrap_or_else(PoisonError::into_inner)
                .0;
        }
        st.closed = true;
        std::mem::take(&mut st.results)
    }
}

impl Inner {
    fn next_read(&self) -> u64 {
        self.reads.fetch_add(1, Ordering::AcqRel) + 1
    }

    fn cell_list(&self) -> Option<(Arc<Vec<CellMapping>>, u64, u64, Instant)> {
        let guard = self.cells.read().unwrap_or_else(PoisonError::into_inner);
        guard
            .as_ref()
            .map(|l| (Arc::clone(&l.cells), l.seq, l.cell_writes, l.loaded))
    }

    /// The cached list and its read sequence, if it is fresh: younger than
    /// `cell_list_refresh` and no cell written through the API database
    /// since it was loaded.
    fn fresh_list(&self) -> Option<(Arc<Vec<CellMapping>>, u64)> {
        let (cells, seq, writes, loaded) = self.cell_list()?;
        let young = self
            .options
            .cell_list_refresh
            .is_none_or(|every| loaded.elapsed() < every);
        (young && writes == self.api.cell_writes()).then_some((cells, seq))
    }

    fn cells(&self) -> Result<(Arc<Vec<CellMapping>>, u64), RouterError> {
        if let Some(fresh) = self.fresh_list() {
            return Ok(fresh);
        }
        match self.refresh_cells() {
            Ok(loaded) => Ok(loaded),
            Err(e) => match self.cell_list() {
                Some((cells, seq, ..)) => {
                    tracing::warn!(error = %e, "cannot reload the cell list, using the previous one");
                    Ok((cells, seq))
                }
                None => Err(e),
            },
        }
    }

    fn refresh_cells(&self) -> Result<(Arc<Vec<CellMapping>>, u64), RouterError> {
        let cell_writes = self.api.cell_writes();
        let seq = self.next_read();
        let cells = Arc::new(
            self.api
                .cells()
                .get_all()
                .map_err(|source| RouterError::Api {
                    operation: "loading the cell list",
                    source,
                })?,
        );
        let dropped = self.pools.retain(&cells, seq);
        tracing::debug!(cells = cells.len(), dropped, "cell list loaded");
        let mut guard = self.cells.write().unwrap_or_else(PoisonError::into_inner);
        // A slower, older load never replaces a newer list.
        if guard.as_ref().is_none_or(|l| l.seq < seq) {
            *guard = Some(CellList {
                cells: Arc::clone(&cells),
                loaded: Instant::now(),
                seq,
                cell_writes,
            });
        }
        Ok((cells, seq))
    }

    /// The pool for `cell` (see the `pools` module for how records are
    /// ordered), and the record read afresh when the one given was not
    /// current.
    fn pool_for(
        &self,
        cell: &CellMapping,
        origin: Origin,
    ) -> Result<(Arc<CellPool>, Option<CellMapping>), RouterError> {
        if origin == Origin::Handed && self.fresh_list().is_none() {
            // Cells were written through the API database (or the list is
            // old): follow the database before trusting a handed record. A
            // list that cannot be loaded does not stop the call: the record
            // is then checked against the pools alone (and read again if
            // they cannot vouch for it).
            if let Err(e) = self.cells() {
                tracing::debug!(error = %e, "cell list not loaded; going on without it");
            }
        }
        if let Some(p) = self.found(cell.uuid, self.pools.get(cell, origin)?) {
            return Ok((p, None));
        }
        // A handed record the pools cannot vouch for: the list may.
        if let Some((list, seq, ..)) = self.cell_list() {
            if let Some(listed) = list.iter().find(|c| c.uuid == cell.uuid) {
                if listed.database_connection == cell.database_connection {
                    let lookup = self.pools.get(listed, Origin::Read(seq))?;
                    if let Some(p) = self.found(cell.uuid, lookup) {
                        return Ok((p, None));
                    }
                }
            }
        }
        self.reread(cell)
    }

    /// The pool of a lookup; a pool built just now is a new database (or
    /// the first use): the cell's health starts afresh.
    fn found(&self, cell: Uuid, lookup: Lookup) -> Option<Arc<CellPool>> {
        match lookup {
            Lookup::Pool(p) => Some(p),
            Lookup::Built(p) => {
                self.health.reset(cell);
                Some(p)
            }
            Lookup::Unknown => None,
        }
    }

    /// Reads `handed`'s cell from the API database and follows that record.
    fn reread(
        &self,
        handed: &CellMapping,
    ) -> Result<(Arc<CellPool>, Option<CellMapping>), RouterError> {
        let seq = self.next_read();
        let fresh = match self.api.cells().get_by_uuid(handed.uuid) {
            Ok(c) => c,
            Err(Error::CellMappingNotFound { .. }) => {
                self.pools.bury(handed.uuid, seq);
                return Err(RouterError::CellNotFound { cell: handed.uuid });
            }
            Err(source) => {
                return Err(RouterError::Api {
                    operation: "reading a cell",
                    source,
                })
            }
        };
        let lookup = self.pools.get(&fresh, Origin::Read(seq))?;
        let Some(pool) = self.found(fresh.uuid, lookup) else {
            // A read record always gets a pool (or an error).
            return Err(RouterError::CellNotFound { cell: handed.uuid });
        };
        if fresh.database_connection != handed.database_connection {
            self.pools
                .supersede(handed.uuid, &handed.database_connection);
        }
        self.patch_list(&fresh);
        Ok((pool, Some(fresh)))
    }

    /// Puts a record read afresh into the cached list in place of its older
    /// copy.
    fn patch_list(&self, fresh: &CellMapping) {
        let mut guard = self.cells.write().unwrap_or_else(PoisonError::into_inner);
        if let Some(list) = guard.as_mut() {
            if let Some(i) = list.cells.iter().position(|c| c.uuid == fresh.uuid) {
                if list.cells[i] != *fresh {
                    let mut cells = (*list.cells).clone();
                    cells[i] = fresh.clone();
                    list.cells = Arc::new(cells);
                }
            }
        }
    }

    /// Starts a probe of cell `uuid` on a thread of its own: on its open
    /// pool, else on the pool of `record`.
    fn start_probe(self: &Arc<Self>, uuid: Uuid, record: Option<CellMapping>, origin: Origin) {
        let inner = Arc::clone(self);
        let spawned = std::thread::Builder::new()
            .name("cell-probe".into())
            .spawn(move || {
                let pool = match (inner.pools.pool_of(uuid), record) {
                    (Some(pool), _) => Ok(pool),
                    (None, Some(cell)) => inner
                        .pool_for(&cell, origin)
                        .map(|(pool, _)| pool)
                        .map_err(|e| e.to_string()),
                    (None, None) => Err("the cell has no pool".to_owned()),
                };
                inner.health.probed(uuid, pool.and_then(|p| p.probe()));
            });
        if let Err(e) = spawned {
            self.health
                .probed(uuid, Err(format!("cannot start a probe thread: {e}")));
        }
    }

    fn refusal(self: &Arc<Self>, cell: &CellMapping, origin: Origin, r: Refusal) -> RouterError {
        if r.probe {
            self.start_probe(cell.uuid, Some(cell.clone()), origin);
        }
        RouterError::Unavailable {
            cell: cell.uuid,
            since: r.since,
            last_error: r.last_error,
        }
    }

    /// Runs `f` on the calling thread with a connection of `pool`, counted
    /// in `cell`'s health.
    fn run_here<T, E>(
        self: &Arc<Self>,
        cell: &CellMapping,
        pool: &CellPool,
        f: impl FnOnce(&mut DbConnection) -> Result<T, E>,
    ) -> Result<T, RouterError>
    where
        E: Into<BoxError>,
    {
        if let Err(r) = self.health.admit(cell.uuid) {
            return Err(self.refusal(cell, Origin::Handed, r));
        }
        let job = Running::start(self, cell.uuid);
        let result = pool.run(f);
        job.finish(&result);
        result
    }
}

/// One closure running on a cell, counted in its health until it ends
/// (also by unwinding).
struct Running<'a> {
    inner: &'a Arc<Inner>,
    cell: Uuid,
    flags: Arc<JobFlags>,
    finished: bool,
}

impl<'a> Running<'a> {
    fn start(inner: &'a Arc<Inner>, cell: Uuid) -> Self {
        Self::with_flags(inner, cell, Arc::new(JobFlags::default()))
    }

    fn with_flags(inner: &'a Arc<Inner>, cell: Uuid, flags: Arc<JobFlags>) -> Self {
        inner.health.start(cell, &flags);
        Self {
            inner,
            cell,
            flags,
            finished: false,
        }
    }

    fn finish<T>(mut self, result: &Result<T, RouterError>) {
        let failure = match result {
            Err(e @ RouterError::Connect { .. }) => Some(e.to_string()),
            _ => None,
        };
        self.end(failure);
    }

    fn end(&mut self, failure: Option<String>) {
        if self.finished {
            return;
        }
        self.finished = true;
        if self.inner.health.finish(self.cell, &self.flags, failure) {
            // A detached closure returned while the cell is unavailable:
            // see at once whether it is back.
            self.inner.start_probe(self.cell, None, Origin::Handed);
        }
    }
}

impl Drop for Running<'_> {
    fn drop(&mut self) {
        self.end(None);
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
                health: Health::new(options.max_detached_per_cell, options.probe_interval),
                cells: RwLock::new(None),
                reads: AtomicU64::new(0),
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
    /// [`RouterError::InstanceNotFound`]; a mapping whose cell was deleted
    /// meanwhile is [`RouterError::CellNotFound`].
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
        let Some(cell) = mapping.cell_mapping.as_ref() else {
            return Ok(Route::NotScheduled(mapping));
        };
        let (pool, fresh) = self.inner.pool_for(cell, Origin::Handed)?;
        let cell = fresh.unwrap_or_else(|| cell.clone());
        Ok(Route::Cell(CellTarget {
            mapping,
            cell,
            pool,
            router: self.clone(),
        }))
    }

    /// Runs `f` with a connection to `cell`'s database, on the calling
    /// thread. Waits at most the connect timeout for the connection; `f`
    /// itself is not timed. [`RouterError::Unavailable`] at once while the
    /// cell is unavailable; [`RouterError::CellNotFound`] for a cell the
    /// router has found deleted, even when `cell` is a copy kept from before.
    /// A `cell` whose URL differs from the newest one the router has read
    /// makes it read the cell again, and it follows that read.
    pub fn target_cell<T, E>(
        &self,
        cell: &CellMapping,
        f: impl FnOnce(&mut DbConnection) -> Result<T, E>,
    ) -> Result<T, RouterError>
    where
        E: Into<BoxError>,
    {
        let (pool, fresh) = self.inner.pool_for(cell, Origin::Handed)?;
        self.inner
            .run_here(fresh.as_ref().unwrap_or(cell), &pool, f)
    }

    /// The cell mappings, from the cached list: loaded on first use, again
    /// once [`RouterOptions::cell_list_refresh`] has passed, and again after
    /// cells were written through the API database handle. If reloading
    /// fails while an older list is at hand, the older list is used (and the
    /// failure logged).
    pub fn cells(&self) -> Result<Arc<Vec<CellMapping>>, RouterError> {
        self.inner.cells().map(|(cells, _)| cells)
    }

    /// Loads the cell list now, and drops the pools of cells that are gone
    /// or whose URL changed (connections in use finish their work first).
    pub fn refresh_cells(&self) -> Result<Arc<Vec<CellMapping>>, RouterError> {
        self.inner.refresh_cells().map(|(cells, _)| cells)
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

    /// The health of every cell of the cached list and of every other cell
    /// the router has worked with, in uuid order: up or unavailable (and
    /// since when), the last failure, and the closures running there.
    /// Reads nothing from the database unless the cell list is due.
    pub fn cell_health(&self) -> Vec<CellHealth> {
        let mut uuids: BTreeSet<Uuid> = self.inner.health.known().into_iter().collect();
        if let Ok((cells, _)) = self.inner.cells() {
            uuids.extend(cells.iter().map(|c| c.uuid));
        }
        uuids.into_iter().map(|u| self.inner.health.of(u)).collect()
    }

    /// Runs `f` on every cell of `cells` in parallel, on the worker pool, and
    /// waits at most `timeout` in total. The result has one entry per cell
    /// uuid (duplicates run once): the value, the error,
    /// [`CellResult::DidNotRespond`] for a cell not finished in time, or
    /// [`CellResult::Unavailable`] for a cell not asked because it is
    /// unavailable (see [`Router::cell_health`]). A late result is dropped;
    /// a closure still running when the timeout passes has its worker
    /// detached and replaced (see [`RouterOptions::max_detached_workers`]),
    /// so it does not hold up later calls, and counts against its cell's
    /// [`RouterOptions::max_detached_per_cell`].
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
        self.gather(cells, Origin::Handed, timeout, f)
    }

    fn gather<T, E, F>(
        &self,
        cells: &[CellMapping],
        origin: Origin,
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
        let mut results = CellResults::new();
        let mut seen = HashSet::with_capacity(cells.len());
        let asked: Vec<&CellMapping> = cells
            .iter()
            .filter(|c| seen.insert(c.uuid))
            .filter(|c| match self.inner.health.admit(c.uuid) {
                Ok(()) => true,
                Err(r) => {
                    let e = self.inner.refusal(c, origin, r);
                    if let RouterError::Unavailable {
                        since, last_error, ..
                    } = e
                    {
                        results.insert(c.uuid, CellResult::Unavailable { since, last_error });
                    }
                    false
                }
            })
            .collect();
        let slots = Arc::new(Slots::new(asked.len()));
        let mut pending = Vec::with_capacity(asked.len());
        let mut jobs: Vec<Job> = Vec::with_capacity(asked.len());
        for (i, cell) in asked.iter().enumerate() {
            let uuid = cell.uuid;
            let flags = Arc::new(JobFlags::default());
            let (f, slots, cell, inner, job_flags) = (
                Arc::clone(&f),
                Arc::clone(&slots),
                (*cell).clone(),
                Arc::clone(&self.inner),
                Arc::clone(&flags),
            );
            jobs.push(Box::new(move || {
                let mut running = Running::with_flags(&inner, uuid, job_flags);
                let outcome = catch_unwind(AssertUnwindSafe(|| {
                    let (pool, fresh) = inner.pool_for(&cell, origin)?;
                    let cell = fresh.as_ref().unwrap_or(&cell);
                    pool.run(|conn| f(cell, conn))
                }));
                let result = match outcome {
                    Ok(Ok(v)) => CellResult::Ok(v),
                    Ok(Err(e)) => {
                        let failure =
                            matches!(e, RouterError::Connect { .. }).then(|| e.to_string());
                        running.end(failure);
                        CellResult::Failed(e)
                    }
                    Err(panic) => CellResult::Failed(RouterError::Panicked {
                        cell: uuid,
                        message: panic_message(panic.as_ref()),
                    }),
                };
                drop(running);
                slots.put(i, result);
            }));
            pending.push((uuid, flags));
        }
        let tasks = self.inner.workers.submit_all(jobs);
        let pending: Vec<_> = pending
            .into_iter()
            .zip(tasks)
            .map(|((uuid, flags), task)| (uuid, task, flags))
            .collect();
        let collected = slots.collect(deadline);
        // Jobs still queued are dropped first, so that a worker replacing a
        // detached one cannot start them meanwhile.
        let late: Vec<bool> = pending
            .iter()
            .zip(&collected)
            .map(|((_, task, _), r)| r.is_none() && !self.inner.workers.cancel_queued(task))
            .collect();
        for (((uuid, task, flags), result), running) in pending.into_iter().zip(collected).zip(late)
        {
            let result = match result {
                Some(r) => r,
                None => {
                    if running {
                        self.inner.health.abandon(uuid, &flags, timeout);
                        self.inner.workers.cancel(&task);
                    }
                    tracing::warn!(cell = %uuid, ?timeout, "cell did not respond in time");
                    CellResult::DidNotRespond
                }
            };
            results.insert(uuid, result);
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
        let (cells, seq) = self.inner.cells()?;
        Ok(self.gather(&cells, Origin::Read(seq), timeout, f))
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
        let (cells, seq) = self.inner.cells()?;
        let cells: Vec<CellMapping> = cells.iter().filter(|c| !c.is_cell0()).cloned().collect();
        Ok(self.gather(&cells, Origin::Read(seq), timeout, f))
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
