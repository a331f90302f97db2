//! One connection pool per cell, keyed by cell uuid, following the newest
//! cell record the router has read.
//!
//! Every record the router reads from the API database is numbered (a
//! *read sequence*, taken before the read starts). A pool remembers the
//! number of the read it was built from, and only a record from a later read
//! replaces it: a cached cell list older than the pool never flips it back.
//! A record handed in by a caller (or found through a mapping, which may come
//! from a cache) carries no number: if it disagrees with the pool, or there
//! is no pool yet and the cell list does not vouch for it, the router reads
//! the cell again and follows that read. URLs known to be older than a
//! pool's are remembered with it, so a caller holding a stale record costs
//! that read once.

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

    /// One cheap round trip (`SELECT 1`) on a pooled connection.
    pub(crate) fn probe(&self) -> Result<(), String> {
        use diesel::connection::SimpleConnection;
        let mut out = Ok(());
        self.db
            .with_connection(|conn| {
                out = conn
                    .batch_execute("SELECT 1")
                    .map_err(|e| Error::from(e).to_string());
                Ok(())
            })
            .map_err(|e| e.to_string())?;
        out
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

/// Where a cell record came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Origin {
    /// Read from the API database by the router, with this read sequence.
    Read(u64),
    /// Handed in: by a caller, or through a mapping (which may be cached).
    Handed,
}

/// What [`CellPools::get`] found.
pub(crate) enum Lookup {
    /// The pool to use.
    Pool(Arc<CellPool>),
    /// The pool to use, built just now (first use, or a new URL).
    Built(Arc<CellPool>),
    /// A handed-in record the pools cannot vouch for: read the cell again.
    Unknown,
}

/// How many older URLs a pool remembers.
const SUPERSEDED_KEPT: usize = 8;

struct Entry {
    pool: Arc<CellPool>,
    /// `database_connection` of the record the pool was built from, as
    /// read (before the router's template expansion).
    raw: String,
    /// The read sequence of that record (or of a later read that agreed).
    seq: u64,
}

#[derive(Default)]
struct Map {
    pools: HashMap<Uuid, Entry>,
    /// Per cell, `database_connection` values known to be older than the
    /// newest one read (kept across pool rebuilds, a few per cell).
    superseded: HashMap<Uuid, Vec<String>>,
    /// Cells found deleted, with the read sequence that found it.
    deleted: HashMap<Uuid, u64>,
}

impl Map {
    fn is_superseded(&self, cell: Uuid, raw: &str) -> bool {
        self.superseded
            .get(&cell)
            .is_some_and(|old| old.iter().any(|s| s == raw))
    }

    fn supersede(&mut self, cell: Uuid, raw: &str) {
        let old = self.superseded.entry(cell).or_default();
        if !old.iter().any(|s| s == raw) {
            if old.len() >= SUPERSEDED_KEPT {
                old.remove(0);
            }
            old.push(raw.to_owned());
        }
    }
}

/// The pools of every cell in use.
pub(crate) struct CellPools {
    map: Mutex<Map>,
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
            map: Mutex::new(Map::default()),
            default_url,
            max_connections,
            connect_timeout,
            built: AtomicU64::new(0),
            dropped: AtomicU64::new(0),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Map> {
        // Nothing panics while the map is locked; a poisoned lock still
        // holds a consistent map.
        self.map.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The expanded database URL of `cell` (templates expanded as Nova
    /// expands them, against the router's default URL).
    fn url_of(&self, cell: &CellMapping) -> String {
        expand_url_template(&cell.database_connection, self.default_url.as_deref())
    }

    /// The pool for `cell`. A record read by the router (`Origin::Read`)
    /// builds or replaces the pool when it is newer than the pool's; an
    /// older one gets the current pool. A handed-in record gets the pool
    /// when it agrees with it (or is known to be older), else
    /// [`Lookup::Unknown`]. Building connects nothing: the first checkout
    /// does, within the connect timeout.
    pub(crate) fn get(&self, cell: &CellMapping, origin: Origin) -> Result<Lookup, RouterError> {
        let uuid = cell.uuid;
        let raw = cell.database_connection.as_str();
        let mut map = self.lock();
        let map = &mut *map;
        let known_older = map.is_superseded(uuid, raw);
        if let Some(e) = map.pools.get_mut(&uuid) {
            if e.raw == raw {
                if let Origin::Read(seq) = origin {
                    e.seq = e.seq.max(seq);
                }
                return Ok(Lookup::Pool(Arc::clone(&e.pool)));
            }
            let older = match origin {
                Origin::Read(seq) => seq <= e.seq,
                Origin::Handed => known_older,
            };
            if older {
                let pool = Arc::clone(&e.pool);
                map.supersede(uuid, raw);
                return Ok(Lookup::Pool(pool));
            }
        }
        let Origin::Read(seq) = origin else {
            if map.deleted.contains_key(&uuid) {
                return Err(RouterError::CellNotFound { cell: uuid });
            }
            return Ok(Lookup::Unknown);
        };
        match map.deleted.get(&uuid) {
            Some(&gone) if gone >= seq => return Err(RouterError::CellNotFound { cell: uuid }),
            Some(_) => {
                map.deleted.remove(&uuid);
            }
            None => {}
        }
        let pool = Arc::new(self.build(cell)?);
        self.built.fetch_add(1, Ordering::Relaxed);
        if let Some(old) = map.pools.remove(&uuid) {
            self.dropped.fetch_add(1, Ordering::Relaxed);
            tracing::info!(
                cell = %uuid,
                old = %old.pool.redacted_url(),
                new = %pool.redacted_url(),
                "cell database URL changed: pool rebuilt"
            );
            map.supersede(uuid, &old.raw);
        } else {
            tracing::debug!(cell = %uuid, url = %pool.redacted_url(), "cell pool built");
        }
        if let Some(old) = map.superseded.get_mut(&uuid) {
            old.retain(|s| s != raw);
        }
        map.pools.insert(
            uuid,
            Entry {
                pool: Arc::clone(&pool),
                raw: raw.to_owned(),
                seq,
            },
        );
        Ok(Lookup::Built(pool))
    }

    fn build(&self, cell: &CellMapping) -> Result<CellPool, RouterError> {
        let uuid = cell.uuid;
        let url = self.url_of(cell);
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
        Ok(CellPool { cell: uuid, db })
    }

    /// Notes that `raw` is an older `database_connection` of `cell` than its
    /// pool's.
    pub(crate) fn supersede(&self, cell: Uuid, raw: &str) {
        let mut map = self.lock();
        if map.pools.get(&cell).is_some_and(|e| e.raw != raw) {
            map.supersede(cell, raw);
        }
    }

    /// `cell` was found deleted by the read numbered `seq`: its pool goes
    /// (unless a later read built it) and records of it are refused.
    pub(crate) fn bury(&self, cell: Uuid, seq: u64) {
        let mut map = self.lock();
        if map.pools.get(&cell).is_some_and(|e| e.seq < seq) {
            map.pools.remove(&cell);
            self.dropped.fetch_add(1, Ordering::Relaxed);
            tracing::info!(cell = %cell, "cell deleted: pool dropped");
        }
        let gone = map.deleted.entry(cell).or_insert(seq);
        *gone = (*gone).max(seq);
    }

    /// Follows a cell list read with sequence `seq`: drops the pools of
    /// cells not in it and of cells whose URL changed (rebuilt on next
    /// use), unless a later read built them. Returns how many were dropped.
    pub(crate) fn retain(&self, cells: &[CellMapping], seq: u64) -> usize {
        let wanted: HashMap<Uuid, &str> = cells
            .iter()
            .map(|c| (c.uuid, c.database_connection.as_str()))
            .collect();
        let mut map = self.lock();
        let map = &mut *map;
        let before = map.pools.len();
        let mut gone = Vec::new();
        map.pools.retain(|uuid, e| {
            let keep = match wanted.get(uuid) {
                Some(raw) if *raw == e.raw => {
                    e.seq = e.seq.max(seq);
                    true
                }
                _ => e.seq > seq,
            };
            if !keep {
                match wanted.get(uuid) {
                    Some(raw) => tracing::info!(
                        cell = %uuid,
                        old = %e.pool.redacted_url(),
                        new = %mapping_model::redact_url(raw),
                        "cell database URL changed: pool dropped, rebuilt on next use"
                    ),
                    None => tracing::info!(
                        cell = %uuid,
                        url = %e.pool.redacted_url(),
                        "cell deleted: pool dropped"
                    ),
                }
                gone.push((*uuid, std::mem::take(&mut e.raw)));
            }
            keep
        });
        for (uuid, raw) in gone {
            if wanted.contains_key(&uuid) {
                map.supersede(uuid, &raw);
            } else {
                map.deleted.insert(uuid, seq);
            }
        }
        map.deleted
            .retain(|uuid, gone| !(wanted.contains_key(uuid) && *gone < seq));
        let n = before - map.pools.len();
        self.dropped.fetch_add(n as u64, Ordering::Relaxed);
        n
    }

    /// Drops the pool of one cell; true if there was one.
    pub(crate) fn forget(&self, cell: Uuid) -> bool {
        let removed = self.lock().pools.remove(&cell).is_some();
        if removed {
            self.dropped.fetch_add(1, Ordering::Relaxed);
        }
        removed
    }

    /// The open pool of `cell`, if any.
    pub(crate) fn pool_of(&self, cell: Uuid) -> Option<Arc<CellPool>> {
        self.lock().pools.get(&cell).map(|e| Arc::clone(&e.pool))
    }

    /// Whether a pool is open for `cell`.
    pub(crate) fn contains(&self, cell: Uuid) -> bool {
        self.lock().pools.contains_key(&cell)
    }

    pub(crate) fn stats(&self) -> PoolStats {
        PoolStats {
            open: self.lock().pools.len(),
            built: self.built.load(Ordering::Relaxed),
            dropped: self.dropped.load(Ordering::Relaxed),
        }
    }
}
