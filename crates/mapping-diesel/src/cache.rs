//! An opt-in, in-process read-through cache for instance-uuid → mapping
//! lookups ([`InstanceMappings::get_by_instance_uuid`](crate::InstanceMappings::get_by_instance_uuid)).
//!
//! Enabled with [`Options::cache`](crate::Options::cache); off by default.
//!
//! What it promises:
//! - **Bounded**: at most `capacity` entries; the oldest entry is evicted first.
//! - **Fresh for this process**: every save, destroy and `destroy_bulk` of an
//!   instance mapping made through this [`Database`](crate::Database) (its
//!   clones included) removes the affected uuids, and every save or destroy of
//!   a cell clears the whole cache (a cached mapping holds a copy of its cell).
//!   Writes are invalidated when the operation or transaction ends, committed
//!   or not, and a lookup that raced with a write does not fill the cache.
//! - **Stale for at most `ttl` for writes by other processes** (Nova itself,
//!   another service, a second `Database` on the same database): an entry is
//!   served for at most `ttl` after it was read from the database.
//! - Only mappings that have a cell are cached: an unscheduled mapping is
//!   about to change. Not-found results are never cached.
//! - Transactions ([`Tx`](crate::Tx)) neither read nor fill the cache: they
//!   always see the database, and uncommitted rows never enter the cache.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use mapping_model::InstanceMapping;

/// Size and lifetime of the mapping cache (see the [module docs](self)).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CacheOptions {
    /// Most mappings held at once (0 caches nothing).
    pub capacity: usize,
    /// How long an entry is served after it was read from the database: the
    /// bound on staleness for writes made by other processes.
    pub ttl: Duration,
}

impl Default for CacheOptions {
    fn default() -> Self {
        Self {
            capacity: 10_000,
            ttl: Duration::from_secs(5),
        }
    }
}

/// Counters of the mapping cache since the database was opened.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CacheStats {
    /// Lookups answered from the cache.
    pub hits: u64,
    /// Lookups that went to the database (expired entries included).
    pub misses: u64,
    /// Entries dropped because their time-to-live had passed.
    pub expired: u64,
    /// Entries dropped to stay within the capacity.
    pub evictions: u64,
    /// Entries removed, or whole-cache clears, caused by writes.
    pub invalidations: u64,
    /// Entries held now.
    pub entries: usize,
}

struct Entry {
    mapping: InstanceMapping,
    loaded: Instant,
    seq: u64,
}

#[derive(Default)]
struct Inner {
    map: HashMap<String, Entry>,
    /// Insertion order, for eviction; entries whose `seq` no longer matches
    /// the map are stale and skipped.
    order: VecDeque<(u64, String)>,
    next_seq: u64,
    /// Bumped by every invalidation: a lookup that started under an older
    /// epoch must not fill the cache (it may have read a row a write has
    /// since replaced).
    epoch: u64,
}

/// The cache itself, shared by every clone of a [`Database`](crate::Database).
#[doc(hidden)]
pub struct MappingCache {
    options: CacheOptions,
    inner: Mutex<Inner>,
    hits: AtomicU64,
    misses: AtomicU64,
    expired: AtomicU64,
    evictions: AtomicU64,
    invalidations: AtomicU64,
}

/// A ticket taken before reading the database, to fill the cache afterwards.
#[derive(Debug, Clone, Copy)]
pub(crate) struct FillTicket(u64);

impl MappingCache {
    pub(crate) fn new(options: CacheOptions) -> Self {
        Self {
            options,
            inner: Mutex::new(Inner::default()),
            hits: AtomicU64::new(0),
            misses: AtomicU64::new(0),
            expired: AtomicU64::new(0),
            evictions: AtomicU64::new(0),
            invalidations: AtomicU64::new(0),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // A panic while holding the lock cannot leave the map inconsistent
        // in a way that matters (worst case: a stale order entry).
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The cached mapping of `uuid` (canonical form), or a ticket to fill
    /// the cache after reading the database.
    pub(crate) fn get(&self, uuid: &str) -> Result<InstanceMapping, FillTicket> {
        let mut inner = self.lock();
        let fresh = match inner.map.get(uuid) {
            Some(e) if e.loaded.elapsed() < self.options.ttl => Some(e.mapping.clone()),
            Some(_) => {
                inner.map.remove(uuid);
                self.expired.fetch_add(1, Ordering::Relaxed);
                None
            }
            None => None,
        };
        match fresh {
            Some(m) => {
                self.hits.fetch_add(1, Ordering::Relaxed);
                Ok(m)
            }
            None => {
                self.misses.fetch_add(1, Ordering::Relaxed);
                Err(FillTicket(inner.epoch))
            }
        }
    }

    /// Stores a mapping read from the database under the ticket taken before
    /// the read; ignored when a write happened meanwhile or the mapping has
    /// no cell.
    pub(crate) fn fill(&self, ticket: FillTicket, mapping: &InstanceMapping) {
        if mapping.cell_mapping.is_none() || self.options.capacity == 0 {
            return;
        }
        let mut inner = self.lock();
        if inner.epoch != ticket.0 {
            return;
        }
        let seq = inner.next_seq;
        inner.next_seq += 1;
        let key = mapping.instance_uuid.clone();
        inner.order.push_back((seq, key.clone()));
        inner.map.insert(
            key,
            Entry {
                mapping: mapping.clone(),
                loaded: Instant::now(),
                seq,
            },
        );
        while inner.map.len() > self.options.capacity {
            let Some((seq, key)) = inner.order.pop_front() else {
                break;
            };
            if inner.map.get(&key).is_some_and(|e| e.seq == seq) {
                inner.map.remove(&key);
                self.evictions.fetch_add(1, Ordering::Relaxed);
            }
        }
        // Keep the order queue from growing without bound when entries are
        // removed by invalidation or expiry rather than by eviction.
        if inner.order.len() > 2 * self.options.capacity.max(16) {
            let Inner { map, order, .. } = &mut *inner;
            order.retain(|(seq, key)| map.get(key).is_some_and(|e| e.seq == *seq));
        }
    }

    /// Forgets what a finished operation or transaction wrote.
    pub(crate) fn apply(&self, writes: &Writes) {
        if !writes.clear && writes.uuids.is_empty() {
            return;
        }
        let mut inner = self.lock();
        inner.epoch += 1;
        if writes.clear {
            inner.map.clear();
            inner.order.clear();
            self.invalidations.fetch_add(1, Ordering::Relaxed);
        } else {
            for u in &writes.uuids {
                if inner.map.remove(u).is_some() {
                    self.invalidations.fetch_add(1, Ordering::Relaxed);
                }
            }
        }
    }

    /// Empties the cache.
    pub(crate) fn clear(&self) {
        self.apply(&Writes {
            clear: true,
            uuids: HashSet::new(),
        });
    }

    pub(crate) fn stats(&self) -> CacheStats {
        let entries = self.lock().map.len();
        CacheStats {
            hits: self.hits.load(Ordering::Relaxed),
            misses: self.misses.load(Ordering::Relaxed),
            expired: self.expired.load(Ordering::Relaxed),
            evictions: self.evictions.load(Ordering::Relaxed),
            invalidations: self.invalidations.load(Ordering::Relaxed),
            entries,
        }
    }
}

/// What an operation or transaction wrote, as far as the cache cares.
#[derive(Debug, Default)]
pub(crate) struct Writes {
    /// A cell changed or went: every cached mapping may hold stale cell data.
    pub clear: bool,
    /// Instance uuids (canonical form) whose mappings changed or went.
    pub uuids: HashSet<String>,
}

/// Records the writes of one operation or transaction, to invalidate the
/// cache when it ends (see [`crate::Tx`]).
#[derive(Debug, Default)]
pub(crate) struct WriteLog(std::cell::RefCell<Writes>);

impl WriteLog {
    /// Notes that the mappings of these instances changed.
    pub(crate) fn instances<'u>(&self, uuids: impl IntoIterator<Item = &'u str>) {
        let mut w = self.0.borrow_mut();
        if w.clear {
            return;
        }
        w.uuids.extend(uuids.into_iter().map(str::to_owned));
    }

    /// Notes that a cell changed.
    pub(crate) fn cell(&self) {
        let mut w = self.0.borrow_mut();
        w.clear = true;
        w.uuids.clear();
    }

    /// Takes what was recorded.
    pub(crate) fn take(&self) -> Writes {
        std::mem::take(&mut *self.0.borrow_mut())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use mapping_model::CellMapping;

    fn mapping(uuid: &str, cell: bool) -> InstanceMapping {
        InstanceMapping {
            id: 1,
            instance_uuid: uuid.into(),
            cell_mapping: cell.then(|| CellMapping {
                id: 1,
                uuid: "c".into(),
                name: None,
                transport_url: String::new(),
                database_connection: String::new(),
                disabled: false,
                created_at: None,
                updated_at: None,
            }),
            project_id: "p".into(),
            user_id: None,
            queued_for_delete: false,
            created_at: None,
            updated_at: None,
        }
    }

    fn cache(capacity: usize) -> MappingCache {
        MappingCache::new(CacheOptions {
            capacity,
            ttl: Duration::from_secs(60),
        })
    }

    #[test]
    fn evicts_oldest_beyond_capacity() {
        let c = cache(2);
        for u in ["a", "b", "c"] {
            let t = c.get(u).unwrap_err();
            c.fill(t, &mapping(u, true));
        }
        assert!(c.get("a").is_err());
        assert!(c.get("b").is_ok());
        assert!(c.get("c").is_ok());
        let s = c.stats();
        assert_eq!((s.entries, s.evictions), (2, 1));
    }

    #[test]
    fn write_during_read_prevents_fill() {
        let c = cache(10);
        let t = c.get("a").unwrap_err();
        let mut w = WriteLog::default();
        w.instances(["a"]);
        c.apply(&w.take());
        c.fill(t, &mapping("a", true));
        assert!(c.get("a").is_err());
        w = WriteLog::default();
        w.cell();
        assert!(w.take().clear);
    }

    #[test]
    fn unscheduled_not_cached_and_order_stays_bounded() {
        let c = cache(4);
        let t = c.get("u").unwrap_err();
        c.fill(t, &mapping("u", false));
        assert_eq!(c.stats().entries, 0);
        for i in 0..1000 {
            let u = format!("k{i}");
            let t = c.get(&u).unwrap_err();
            c.fill(t, &mapping(&u, true));
            let mut w = Writes::default();
            w.uuids.insert(u);
            c.apply(&w);
        }
        assert!(c.lock().order.len() <= 64);
    }
}
