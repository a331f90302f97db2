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
//!   marker it `add`s when there is none, or the refused value). After the
//!   read it stores the mapping with `cas` on that unique. Every write
//!   deletes the key *after* its commit, which changes or removes the item,
//!   so a reader whose read may predate a commit can never store its value.
//! - **Invalidation**: after commit, `delete` of every written mapping key
//!   (pipelined per server), and for a cell write a `cas` of each server's
//!   cells record moving the cell's generation on.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};

use mapping_model::InstanceMapping;

use super::client::{McError, Servers, Stored, Timeouts};
use super::invalidation::Writes;
use super::value::{self, CellsRecord, Stamp};
use super::{MemcachedOptions, MemcachedStats};

/// What a pending marker holds: a lease in progress, never a value.
const PENDING: &[u8] = b"cm1-pending";
/// Lifetime of a pending marker (seconds): a reader that died holding one
/// blocks fills of that key for at most this long.
const PENDING_TTL: u32 = 10;
/// Tries to move a cells record on before deleting it instead.
const CELL_BUMP_TRIES: usize = 5;

/// A lease to fill one key after reading the database.
#[derive(Debug, Clone)]
pub(crate) struct Lease {
    server: usize,
    key: String,
    cas: u64,
    record: CellsRecord,
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
}

/// The memcached tier.
pub(crate) struct SharedTier {
    servers: Servers,
    prefix: String,
    cells_key: String,
    expiration: u32,
    /// Fingerprint of the URL-template defaults of this process: values
    /// expanded with other defaults are misses here.
    defaults: u64,
    c: Counters,
}

/// A random 64-bit number (from the standard library's random hasher keys).
fn random_u64() -> u64 {
    use std::hash::BuildHasher;
    std::collections::hash_map::RandomState::new().hash_one(std::process::id())
}

impl SharedTier {
    /// The tier for `options` (already validated), for a process whose
    /// URL-template defaults have fingerprint `defaults`.
    pub(crate) fn new(options: &MemcachedOptions, defaults: u64) -> Self {
        let prefix = options.key_prefix.clone();
        Self {
            servers: Servers::new(
                &options.servers,
                Timeouts {
                    socket: options.socket_timeout,
                    connect: options.connect_timeout,
                    dead_retry: options.dead_retry,
                },
            ),
            cells_key: format!("{prefix}cm1:cells"),
            prefix,
            expiration: u32::try_from(options.expiration_time.as_secs().max(1)).unwrap_or(u32::MAX),
            defaults,
            c: Counters::default(),
        }
    }

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

    /// Looks `uuid` (canonical) up.
    pub(crate) fn lookup(&self, uuid: &str) -> Lookup {
        let key = self.key(uuid);
        let server = self.servers.server_for(&key);
        let items = match self.servers.gets(server, &[&key, &self.cells_key]) {
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
            } else if i.key == self.cells_key {
                record = CellsRecord::decode(&self.cells_key, &i.data);
            }
        }
        let Some(record) = record.or_else(|| self.new_record(server)) else {
            return self.miss(None);
        };
        let cas = match item {
            None => match self.servers.add(server, &key, PENDING_TTL, PENDING) {
                Ok(Stored::Yes) => match self.servers.gets(server, &[&key]) {
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
            // Someone else holds the lease.
            Some(i) if i.data == PENDING => return self.miss(None),
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
        }))
    }

    /// Makes a cells record on `server` (there was none, or it did not
    /// decode); `None` if another process made one meanwhile or it failed.
    fn new_record(&self, server: usize) -> Option<CellsRecord> {
        let record = CellsRecord {
            incarnation: random_u64(),
            generations: Vec::new(),
        };
        // No expiry: a record that is evicted anyway is made anew with a new
        // incarnation, which refuses every value stored under the old one.
        // `add` fails on a record that exists but does not decode: delete it
        // so that the next lookup makes a good one.
        match self
            .servers
            .add(server, &self.cells_key, 0, &record.encode(&self.cells_key))
        {
            Ok(Stored::Yes) => Some(record),
            Ok(_) => {
                let _ = self.servers.delete_many(server, &[&self.cells_key]);
                None
            }
            Err(e) => {
                self.failed("cells record", &e);
                None
            }
        }
    }

    /// Stores `mapping` (just read from the database) under `lease`.
    pub(crate) fn fill(&self, lease: Lease, mapping: &InstanceMapping) {
        let Some(cell) = mapping.cell_mapping.as_ref() else {
            return;
        };
        let stamp: Stamp = lease.record.stamp(&cell.uuid.to_string());
        let Some(data) = value::encode_mapping(&lease.key, stamp, self.defaults, mapping) else {
            return;
        };
        match self
            .servers
            .cas(lease.server, &lease.key, self.expiration, &data, lease.cas)
        {
            Ok(Stored::Yes) => {
                self.c.fills.fetch_add(1, Ordering::Relaxed);
            }
            // A write (or another reader's lease) came in between: correct
            // not to store.
            Ok(_) => {}
            Err(e) => self.failed("fill", &e),
        }
    }

    /// Removes from memcached what a finished operation wrote.
    pub(crate) fn invalidate(&self, writes: &Writes) {
        let mut by_server: HashMap<usize, Vec<String>> = HashMap::new();
        for u in &writes.uuids {
            let key = self.key(u);
            by_server
                .entry(self.servers.server_for(&key))
                .or_default()
                .push(key);
        }
        for (server, keys) in by_server {
            let refs: Vec<&str> = keys.iter().map(String::as_str).collect();
            // Large batches in chunks, so that one command stays small.
            for chunk in refs.chunks(500) {
                match self.servers.delete_many(server, chunk) {
                    Ok(n) => {
                        self.c.invalidations.fetch_add(n as u64, Ordering::Relaxed);
                    }
                    Err(e) => {
                        self.failed("invalidate", &e);
                        tracing::warn!(error = %e, keys = chunk.len(), "memcached invalidation failed: other processes may see these mappings stale until the expiration time");
                        break;
                    }
                }
            }
        }
        if writes.all {
            for server in 0..self.servers.len() {
                match self.servers.delete_many(server, &[&self.cells_key]) {
                    Ok(_) => {
                        self.c.invalidations.fetch_add(1, Ordering::Relaxed);
                    }
                    Err(e) => self.failed("invalidate all", &e),
                }
            }
        } else if !writes.cells.is_empty() {
            for server in 0..self.servers.len() {
                self.bump_cells(server, writes);
            }
        }
    }

    /// Moves the generation of the written cells on in `server`'s record.
    fn bump_cells(&self, server: usize, writes: &Writes) {
        for _ in 0..CELL_BUMP_TRIES {
            let item = match self.servers.gets(server, &[&self.cells_key]) {
                Ok(items) => items.into_iter().next(),
                Err(e) => {
                    self.failed("cell invalidation", &e);
                    return;
                }
            };
            // No record: the next one made has a new incarnation, which
            // refuses every value there.
            let Some(item) = item else { return };
            let Some(mut record) = CellsRecord::decode(&self.cells_key, &item.data) else {
                break;
            };
            record.bump(&writes.cells);
            let data = record.encode(&self.cells_key);
            match self
                .servers
                .cas(server, &self.cells_key, 0, &data, item.cas)
            {
                Ok(Stored::Yes) | Ok(Stored::NotFound) => {
                    self.c.invalidations.fetch_add(1, Ordering::Relaxed);
                    return;
                }
                Ok(Stored::Exists) => continue,
                Err(e) => {
                    self.failed("cell invalidation", &e);
                    return;
                }
            }
        }
        // Contended or unreadable: dropping the record invalidates every
        // value on this server, which is always correct.
        match self.servers.delete_many(server, &[&self.cells_key]) {
            Ok(_) => {
                self.c.invalidations.fetch_add(1, Ordering::Relaxed);
            }
            Err(e) => self.failed("cell invalidation", &e),
        }
    }

    pub(crate) fn stats(&self) -> MemcachedStats {
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
        }
    }
}
