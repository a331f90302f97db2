//! The first tier: a small in-process map, shared by the clones of one
//! [`Database`](crate::Database).

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard};
use std::time::Instant;

use mapping_model::InstanceMapping;

use super::invalidation::Writes;
use super::{CacheOptions, FirstTierStats};

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

/// The first tier itself.
pub(crate) struct LocalCache {
    options: CacheOptions,
    inner: Mutex<Inner>,
    hits: AtomicU64,
    misses: AtomicU64,
    expired: AtomicU64,
    evictions: AtomicU64,
    invalidations: AtomicU64,
}

/// A ticket taken before reading further, to fill the first tier afterwards.
#[derive(Debug, Clone, Copy)]
pub(crate) struct FillTicket(u64);

impl LocalCache {
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
        let key = mapping.instance_uuid.as_str().to_owned();
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
        if !writes.clears_all() && writes.uuids.is_empty() {
            return;
        }
        let mut inner = self.lock();
        inner.epoch += 1;
        if writes.clears_all() {
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

    pub(crate) fn stats(&self) -> FirstTierStats {
        let entries = self.lock().map.len();
        FirstTierStats {
            hits: self.hits.load(Ordering::Relaxed),
            misses: self.misses.load(Ordering::Relaxed),
            expired: self.expired.load(Ordering::Relaxed),
            evictions: self.evictions.load(Ordering::Relaxed),
            invalidations: self.invalidations.load(Ordering::Relaxed),
            entries,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use mapping_model::CellMapping;
    use std::time::Duration;

    fn mapping(uuid: &str, cell: bool) -> InstanceMapping {
        InstanceMapping {
            id: 1,
            instance_uuid: uuid.into(),
            cell_mapping: cell.then(|| CellMapping {
                id: 1,
                uuid: mapping_model::Uuid::nil(),
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

    fn cache(capacity: usize) -> LocalCache {
        LocalCache::new(CacheOptions {
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
        let w = super::super::invalidation::WriteLog::default();
        w.instances(["a"]);
        c.apply(&w.take());
        c.fill(t, &mapping("a", true));
        assert!(c.get("a").is_err());
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
