//! The memcached tier: instance mappings shared by every process that uses
//! the library with the same servers and key prefix.
//!
//! Keys: `<prefix>cm1:im:<instance uuid>` for a mapping, on the server its
//! hash picks; `<prefix>cm1:cells`, the cells record, on every server.
//!
//! - **Hit**: one `gets` of the mapping key and the cells record of its
//!   server; the value counts only if its stamp matches the record (so a
//!   cell change, which moves the cell's generation on, invalidates every
//!   mapping of that cell at once).
//! - **Fill** (lease): on a miss, the reader takes a lease before reading
//!   the database: the cas unique of the item under the key (a pending
//!   marker it `add`s when there is none, another reader's pending marker,
//!   or the refused value). After the read it stores the mapping with `cas`
//!   on that unique. Every write deletes the key *after* its commit, which
//!   changes or removes the item, so a reader whose read may predate a
//!   commit can never store its value. Sharing another reader's marker is
//!   as safe as taking one's own (the unique was read before the database
//!   read), and it means a marker, even one planted without an expiry,
//!   never blocks its key: the first fill replaces it.
//! - **Invalidation**: after commit, `delete` of every written mapping key
//!   (pipelined per server), and for a cell write a `cas` of each server's
//!   cells record moving the cell's generation on. Each server's share has
//!   a deadline of its own (`invalidation_timeout`) and is sent even to a
//!   server marked dead.
//! - **Pending invalidations**: a delete or cell bump that did not go
//!   through is remembered per server (a cell bump as a delete of the cells
//!   record, which fences every value on that server; past
//!   [`MAX_PENDING`] keys the whole server is fenced the same way). They
//!   are replayed before this process reads from or fills on that server
//!   again, with the next write to it, and by a background thread every
//!   [`REPLAY_EVERY`] until they went through (the thread ends when nothing
//!   is pending, or when the handle is dropped, after one last try).

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::Duration;

use mapping_model::InstanceMapping;

use super::client::{Call, McError, Servers, Stored, Timeouts};
use super::invalidation::Writes;
use super::value::{self, CellsRecord, Stamp};
use super::{MemcachedOptions, MemcachedStats};

/// What a pending marker holds: a lease in progress, never a value.
const PENDING: &[u8] = b"cm1-pending";
/// Lifetime of a pending marker (seconds). A marker never blocks its key
/// (a reader finding one uses it as its lease); this only bounds how long
/// an abandoned one occupies memory.
const PENDING_TTL: u32 = 10;
/// Tries to move a cells record on before deleting it instead.
const CELL_BUMP_TRIES: usize = 5;
/// How often the background thread replays invalidations that did not go
/// through. Part of the staleness bound (see `docs/reliability.md`).
pub(crate) const REPLAY_EVERY: Duration = Duration::from_millis(250);
/// Most keys remembered per server; beyond, the whole server is fenced
/// (its cells record deleted) instead.
pub(crate) const MAX_PENDING: usize = 10_000;
/// Keys per pipelined `delete` command batch.
const DELETE_CHUNK: usize = 500;

/// A lease to fill one key after reading the database.
#[derive(Debug, Clone)]
pub(crate) struct Lease {
    server: usize,
    key: String,
    cas: u64,
    record: CellsRecord,
    /// The memcached time the lookup has left for its fill.
    call: Call,
}

/// The outcome of a lookup.
pub(crate) enum Lookup {
    /// A valid value.
    Hit(InstanceMapping),
    /// Read the database; fill with the lease if there is one.
    Miss(Option<Lease>),
}

#[derive(Default)]
struct Counters {
    hits: AtomicU64,
    misses: AtomicU64,
    errors: AtomicU64,
    dead_skips: AtomicU64,
    refused: AtomicU64,
    stale: AtomicU64,
    fills: AtomicU64,
    invalidations: AtomicU64,
    replayed: AtomicU64,
}

/// The memcached tier.
pub(crate) struct SharedTier {
    core: Arc<Core>,
}

/// The tier's state, shared with its replay thread.
struct Core {
    servers: Servers,
    prefix: String,
    cells_key: String,
    expiration: u32,
    /// Budget of a lookup and its fill (the socket timeout).
    socket_timeout: Duration,
    /// Budget of a write's invalidation on one server.
    invalidation_timeout: Duration,
    /// Fingerprint of the URL-template defaults of this process: values
    /// expanded with other defaults are misses here.
    defaults: u64,
    /// Per server, the keys whose delete did not go through.
    pending: Vec<Mutex<Pending>>,
    /// Whether the replay thread runs.
    replayer: AtomicBool,
    c: Counters,
}

/// A random 64-bit number (from the standard library's random hasher keys).
fn random_u64() -> u64 {
    use std::hash::BuildHasher;
    std::collections::hash_map::RandomState::new().hash_one(std::process::id())
}

/// The invalidations of one server that did not go through.
#[derive(Default)]
struct Pending {
    /// Key → the number of the failure that last remembered it: a replay
    /// forgets a key only if no failure remembered it again meanwhile (its
    /// delete may have been sent before that later write's commit).
    keys: HashMap<String, u64>,
    next: u64,
}

impl Pending {
    fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    fn len(&self) -> usize {
        self.keys.len()
    }

    /// Remembers `keys` (one failure); past [`MAX_PENDING`] keys, only
    /// `fence` (the cells record, whose delete fences the whole server).
    fn remember(&mut self, keys: &[&str], fence: &str) {
        let n = self.next;
        self.next = n.wrapping_add(1);
        self.keys.extend(keys.iter().map(|k| ((*k).to_owned(), n)));
        if self.len() > MAX_PENDING {
            self.keys.clear();
            self.keys.insert(fence.to_owned(), n);
        }
    }

    /// What to replay, with the failure that remembered each key.
    fn snapshot(&self) -> Vec<(String, u64)> {
        self.keys.iter().map(|(k, n)| (k.clone(), *n)).collect()
    }

    /// Forgets what a replay of `snapshot` deleted, unless remembered again
    /// since.
    fn forget(&mut self, snapshot: &[(String, u64)]) {
        for (k, n) in snapshot {
            if self.keys.get(k) == Some(n) {
                self.keys.remove(k);
            }
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl SharedTier {
    /// The tier for `options` (already validated), for a process whose
    /// URL-template defaults have fingerprint `defaults`.
    pub(crate) fn new(options: &MemcachedOptions, defaults: u64) -> Self {
        let prefix = options.key_prefix.clone();
        let servers = Servers::new(
            &options.servers,
            Timeouts {
                connect: options.connect_timeout,
                dead_retry: options.dead_retry,
            },
        );
        let pending = (0..servers.len())
            .map(|_| Mutex::new(Pending::default()))
            .collect();
        Self {
            core: Arc::new(Core {
                servers,
                cells_key: format!("{prefix}cm1:cells"),
                prefix,
                expiration: u32::try_from(options.expiration_time.as_secs().max(1))
                    .unwrap_or(u32::MAX),
                socket_timeout: options.socket_timeout,
                invalidation_timeout: options.invalidation_timeout,
                defaults,
                pending,
                replayer: AtomicBool::new(false),
                c: Counters::default(),
            }),
        }
    }

    /// Looks `uuid` (canonical) up.
    pub(crate) fn lookup(&self, uuid: &str) -> Lookup {
        self.core.lookup(uuid)
    }

    /// Stores `mapping` (just read from the database) under `lease`.
    pub(crate) fn fill(&self, lease: Lease, mapping: &InstanceMapping) {
        self.core.fill(lease, mapping);
    }

    /// Removes from memcached what a finished operation wrote.
    pub(crate) fn invalidate(&self, writes: &Writes) {
        Core::invalidate(&self.core, writes);
    }

    /// The counters.
    pub(crate) fn stats(&self) -> MemcachedStats {
        self.core.stats()
    }
}

impl Drop for SharedTier {
    fn drop(&mut self) {
        // One last try for what is still pending; the replay thread holds
        // only a weak reference and ends.
        for (server, slot) in self.core.pending.iter().enumerate() {
            if !lock(slot).is_empty() {
                let call = Call::invalidate(self.core.invalidation_timeout);
                if !self.core.flush(server, &call) {
                    let n = lock(slot).len();
                    tracing::warn!(server, keys = n, "memcached invalidations still pending when the handle was dropped: other processes may serve these mappings stale until the expiration time");
                }
            }
        }
    }
}

impl Core {
    fn key(&self, uuid: &str) -> String {
        format!("{}cm1:im:{uuid}", self.prefix)
    }

    fn failed(&self, op: &'static str, e: &McError) {
        if e.is_dead_skip() {
            self.c.dead_skips.fetch_add(1, Ordering::Relaxed);
        } else {
            self.c.errors.fetch_add(1, Ordering::Relaxed);
            tracing::debug!(operation = op, error = %e, "memcached command failed; answering from the database");
        }
    }

    fn miss(&self, lease: Option<Lease>) -> Lookup {
        self.c.misses.fetch_add(1, Ordering::Relaxed);
        Lookup::Miss(lease)
    }

    fn lookup(&self, uuid: &str) -> Lookup {
        let call = Call::lookup(self.socket_timeout);
        let key = self.key(uuid);
        let server = self.servers.server_for(&key);
        // What this process failed to invalidate there goes first.
        if !self.flush(server, &call) {
            return self.miss(None);
        }
        let items = match self.servers.gets(server, &[&key, &self.cells_key], &call) {
            Ok(items) => items,
            Err(e) => {
                self.failed("lookup", &e);
                return self.miss(None);
            }
        };
        let mut item = None;
        let mut record = None;
        for i in items {
            if i.key == key {
                item = Some(i);
            } else if i.key == self.cells_key && !i.oversized {
                record = CellsRecord::decode(&self.cells_key, &i.data);
            }
        }
        let Some(record) = record.or_else(|| self.new_record(server, &call)) else {
            return self.miss(None);
        };
        let cas = match item {
            None => match self.servers.add(server, &key, PENDING_TTL, PENDING, &call) {
                Ok(Stored::Yes) => match self.servers.gets(server, &[&key], &call) {
                    Ok(items) => match items.into_iter().next() {
                        Some(i) if i.data == PENDING => i.cas,
                        _ => return self.miss(None),
                    },
                    Err(e) => {
                        self.failed("lease", &e);
                        return self.miss(None);
                    }
                },
                Ok(_) => return self.miss(None),
                Err(e) => {
                    self.failed("lease", &e);
                    return self.miss(None);
                }
            },
            // Another reader's lease (or a planted marker): share it.
            Some(i) if !i.oversized && i.data == PENDING => i.cas,
            Some(i) if i.oversized => {
                self.c.refused.fetch_add(1, Ordering::Relaxed);
                tracing::debug!(key, "memcached value over 1 MiB; a miss, to be replaced");
                i.cas
            }
            Some(i) => match value::decode_mapping(&key, &i.data) {
                Some(d) => {
                    let cell_uuid = d
                        .mapping
                        .cell_mapping
                        .as_ref()
                        .map(|c| c.uuid.to_string())
                        .unwrap_or_default();
                    if d.stamp == record.stamp(&cell_uuid) && d.defaults == self.defaults {
                        self.c.hits.fetch_add(1, Ordering::Relaxed);
                        return Lookup::Hit(d.mapping);
                    }
                    self.c.stale.fetch_add(1, Ordering::Relaxed);
                    i.cas
                }
                None => {
                    self.c.refused.fetch_add(1, Ordering::Relaxed);
                    tracing::debug!(key, "memcached value does not decode; a miss");
                    i.cas
                }
            },
        };
        self.miss(Some(Lease {
            server,
            key,
            cas,
            record,
            call,
        }))
    }

    /// Makes a cells record on `server` (there was none, or it did not
    /// decode); `None` if another process made one meanwhile or it failed.
    fn new_record(&self, server: usize, call: &Call) -> Option<CellsRecord> {
        let record = CellsRecord {
            incarnation: random_u64(),
            generations: Vec::new(),
        };
        // No expiry: a record that is evicted anyway is made anew with a new
        // incarnation, which refuses every value stored under the old one.
        // `add` fails on a record that exists but does not decode: delete it
        // so that the next lookup makes a good one.
        match self.servers.add(
            server,
            &self.cells_key,
            0,
            &record.encode(&self.cells_key),
            call,
        ) {
            Ok(Stored::Yes) => Some(record),
            Ok(_) => {
                let _ = self.servers.delete_many(server, &[&self.cells_key], call);
                None
            }
            Err(e) => {
                self.failed("cells record", &e);
                None
            }
        }
    }

    fn fill(&self, lease: Lease, mapping: &InstanceMapping) {
        let Some(cell) = mapping.cell_mapping.as_ref() else {
            return;
        };
        // A write of this process whose delete did not reach this server
        // since the lease was taken must go first (its delete then makes
        // the `cas` fail, as it should).
        if !self.flush(lease.server, &lease.call) {
            return;
        }
        let stamp: Stamp = lease.record.stamp(&cell.uuid.to_string());
        let Some(data) = value::encode_mapping(&lease.key, stamp, self.defaults, mapping) else {
            return;
        };
        match self.servers.cas(
            lease.server,
            &lease.key,
            self.expiration,
            &data,
            lease.cas,
            &lease.call,
        ) {
            Ok(Stored::Yes) => {
                self.c.fills.fetch_add(1, Ordering::Relaxed);
            }
            // A write (or another reader's lease) came in between: correct
            // not to store.
            Ok(_) => {}
            Err(e) => self.failed("fill", &e),
        }
    }

    /// Deletes `keys` on `server` in pipelined batches; whether all went through.
    fn delete_keys(&self, server: usize, keys: &[&str], call: &Call, op: &'static str) -> bool {
        for chunk in keys.chunks(DELETE_CHUNK) {
            match self.servers.delete_many(server, chunk, call) {
                Ok(n) => {
                    self.c.invalidations.fetch_add(n as u64, Ordering::Relaxed);
                }
                Err(e) => {
                    self.failed(op, &e);
                    return false;
                }
            }
        }
        true
    }

    /// Replays the invalidations pending for `server`; whether none is left
    /// (those that went through are forgotten, unless a later failure
    /// remembered them again meanwhile).
    fn flush(&self, server: usize, call: &Call) -> bool {
        let Some(slot) = self.pending.get(server) else {
            return true;
        };
        let keys: Vec<(String, u64)> = {
            let p = lock(slot);
            if p.is_empty() {
                return true;
            }
            p.snapshot()
        };
        let refs: Vec<&str> = keys.iter().map(|(k, _)| k.as_str()).collect();
        if !self.delete_keys(server, &refs, call, "replay") {
            return false;
        }
        let mut p = lock(slot);
        p.forget(&keys);
        self.c
            .replayed
            .fetch_add(keys.len() as u64, Ordering::Relaxed);
        tracing::info!(
            server,
            keys = keys.len(),
            "memcached invalidations replayed"
        );
        p.is_empty()
    }

    /// Remembers `keys` as not invalidated on `server`, and makes sure the
    /// replay thread runs.
    fn remember(self: &Arc<Self>, server: usize, keys: &[&str]) {
        let Some(slot) = self.pending.get(server) else {
            return;
        };
        {
            let mut p = lock(slot);
            // Past the limit the whole server is fenced: without its cells
            // record no value stored there is valid any more.
            p.remember(keys, &self.cells_key);
            tracing::warn!(server, keys = keys.len(), pending = p.len(), "memcached invalidation did not go through; remembered, replayed before this process reads that server again and in the background until it does");
        }
        self.ensure_replayer();
    }

    fn ensure_replayer(self: &Arc<Self>) {
        if self.replayer.swap(true, Ordering::SeqCst) {
            return;
        }
        let weak = Arc::downgrade(self);
        let spawned = std::thread::Builder::new()
            .name("cm-memcached-replay".into())
            .spawn(move || replay_loop(&weak));
        if let Err(e) = spawned {
            self.replayer.store(false, Ordering::SeqCst);
            tracing::warn!(error = %e, "cannot start the memcached replay thread; pending invalidations are replayed by later calls only");
        }
    }

    fn pending_total(&self) -> usize {
        self.pending.iter().map(|p| lock(p).len()).sum()
    }

    /// Removes from memcached what a finished operation wrote.
    fn invalidate(self: &Arc<Self>, writes: &Writes) {
        let mut by_server: HashMap<usize, Vec<String>> = HashMap::new();
        for u in &writes.uuids {
            let key = self.key(u);
            by_server
                .entry(self.servers.server_for(&key))
                .or_default()
                .push(key);
        }
        let bump = !writes.all && !writes.cells.is_empty();
        for server in 0..self.servers.len() {
            let mut keys = by_server.remove(&server).unwrap_or_default();
            if writes.all {
                keys.push(self.cells_key.clone());
            }
            if keys.is_empty() && !bump {
                continue;
            }
            // A deadline of its own per server, and a server marked dead is
            // tried too: a skipped delete would leave other processes stale.
            let call = Call::invalidate(self.invalidation_timeout);
            let refs: Vec<&str> = keys.iter().map(String::as_str).collect();
            let deleted =
                self.flush(server, &call) && self.delete_keys(server, &refs, &call, "invalidate");
            if !deleted {
                self.remember(server, &refs);
            }
            if bump && !(deleted && self.bump_cells(server, writes, &call)) {
                // Dropping the record is the cell bump that always works.
                self.remember(server, &[self.cells_key.as_str()]);
            }
        }
    }

    /// Moves the generation of the written cells on in `server`'s record;
    /// whether that (or dropping the record) went through.
    fn bump_cells(&self, server: usize, writes: &Writes, call: &Call) -> bool {
        for _ in 0..CELL_BUMP_TRIES {
            let item = match self.servers.gets(server, &[&self.cells_key], call) {
                Ok(items) => items.into_iter().next(),
                Err(e) => {
                    self.failed("cell invalidation", &e);
                    return false;
                }
            };
            // No record: the next one made has a new incarnation, which
            // refuses every value there.
            let Some(item) = item else { return true };
            let record = if item.oversized {
                None
            } else {
                CellsRecord::decode(&self.cells_key, &item.data)
            };
            let Some(mut record) = record else {
                break;
            };
            record.bump(&writes.cells);
            let data = record.encode(&self.cells_key);
            match self
                .servers
                .cas(server, &self.cells_key, 0, &data, item.cas, call)
            {
                Ok(Stored::Yes) | Ok(Stored::NotFound) => {
                    self.c.invalidations.fetch_add(1, Ordering::Relaxed);
                    return true;
                }
                Ok(Stored::Exists) => continue,
                Err(e) => {
                    self.failed("cell invalidation", &e);
                    return false;
                }
            }
        }
        // Contended or unreadable: dropping the record invalidates every
        // value on this server, which is always correct.
        self.delete_keys(
            server,
            &[self.cells_key.as_str()],
            call,
            "cell invalidation",
        )
    }

    fn stats(&self) -> MemcachedStats {
        let c = &self.c;
        let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
        MemcachedStats {
            hits: get(&c.hits),
            misses: get(&c.misses),
            errors: get(&c.errors),
            dead_skips: get(&c.dead_skips),
            refused: get(&c.refused),
            stale: get(&c.stale),
            fills: get(&c.fills),
            invalidations: get(&c.invalidations),
            invalidations_replayed: get(&c.replayed),
            invalidations_pending: self.pending_total() as u64,
        }
    }
}

/// The replay thread: every [`REPLAY_EVERY`], replays what is pending on
/// each server; ends when nothing is pending or the tier is gone.
fn replay_loop(weak: &Weak<Core>) {
    loop {
        std::thread::sleep(REPLAY_EVERY);
        let Some(core) = weak.upgrade() else { return };
        for server in 0..core.servers.len() {
            let call = Call::invalidate(core.invalidation_timeout);
            core.flush(server, &call);
        }
        if core.pending_total() == 0 {
            core.replayer.store(false, Ordering::SeqCst);
            // A key remembered between the count and the store saw the
            // thread still running: look once more.
            if core.pending_total() == 0 || core.replayer.swap(true, Ordering::SeqCst) {
                return;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_key_remembered_again_during_a_replay_stays_pending() {
        let mut p = Pending::default();
        p.remember(&["a", "b"], "cells");
        let snap = p.snapshot();
        // A write fails on `a` again while the replay's delete is in flight.
        p.remember(&["a"], "cells");
        p.forget(&snap);
        assert_eq!(p.keys.keys().collect::<Vec<_>>(), ["a"]);
        let snap = p.snapshot();
        p.forget(&snap);
        assert!(p.is_empty());
    }

    #[test]
    fn too_many_keys_fence_the_whole_server() {
        let mut p = Pending::default();
        let keys: Vec<String> = (0..=MAX_PENDING).map(|i| format!("k{i}")).collect();
        let refs: Vec<&str> = keys.iter().map(String::as_str).collect();
        p.remember(&refs, "cells");
        assert_eq!(p.keys.keys().collect::<Vec<_>>(), ["cells"]);
    }
}
