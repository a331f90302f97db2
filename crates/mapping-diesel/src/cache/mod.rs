//! Opt-in caching of instance-uuid → mapping lookups
//! ([`InstanceMappings::get_by_instance_uuid`](crate::InstanceMappings::get_by_instance_uuid))
//! in two tiers, both off by default:
//!
//! 1. **First tier** ([`Options::cache`](crate::Options::cache)): a small
//!    in-process map shared by the clones of one [`Database`](crate::Database).
//! 2. **memcached tier** ([`Options::memcached`](crate::Options::memcached)):
//!    shared by every process that uses the library with the same servers
//!    and key prefix; settings follow oslo.cache.
//!
//! A lookup asks the first tier, then memcached, then the database, and
//! fills the tiers it passed on the way back.
//!
//! What they promise:
//! - **Only mappings that have a cell are cached**: an unscheduled mapping
//!   is about to change. Not-found results are never cached.
//! - **Writes made through the library are invalidated in every process**:
//!   after each save, destroy, `destroy_bulk`, create and `create_bulk` of
//!   an instance mapping, and each save or destroy of a cell, has ended
//!   (committed or not), the keys it affects are deleted from memcached, and
//!   a cell write moves that cell's generation on, which invalidates every
//!   cached mapping of the cell at once. The first tier of the writing
//!   process is invalidated too (entirely for a cell write).
//! - **No invalidation is skipped**: a write sends its deletes and cell
//!   bumps to every server concerned, one marked dead included, with a
//!   deadline of their own per server
//!   ([`MemcachedOptions::invalidation_timeout`]). What does not go through
//!   is remembered and replayed before this process reads from that server
//!   again, and by a background thread every 250 ms until it has gone
//!   through (a cell bump is replayed as a delete of that server's cells
//!   record, which fences every value there).
//! - **A lookup that raced with a write never puts back an older value**:
//!   a memcached fill is a `cas` on a lease taken before the database read
//!   (see `shared.rs`); the first tier refuses fills that started before
//!   the last invalidation.
//! - **Bounds on staleness**: after a library write returns, no process's
//!   memcached tier serves an older value later than
//!   D = 250 ms + 2 × `invalidation_timeout` × (number of servers) after the
//!   write returned, or, if the writer could not reach the server then,
//!   after that server answers the writer again and keeps answering for D
//!   (0.75 s with one server at
//!   the defaults; the rule, how it holds and its tests are in
//!   `docs/reliability.md`). The first tier of *another* process serves an
//!   entry for at most its `ttl` after it was read (keep it short, or off,
//!   where cross-process freshness matters). Writes made *outside* the
//!   library (Nova itself) are seen after at most the first tier's `ttl`
//!   plus memcached's `expiration_time`.
//! - **memcached never fails a call**: all the memcached exchanges of one
//!   lookup (and its fill) share one deadline, the socket timeout, connects
//!   included; a server that is down, slow, trickling its replies,
//!   restarting or full costs a call at most that, and the lookup answers
//!   from the database; a server that failed is skipped by lookups for
//!   `dead_retry`; with several servers each key has one server (a stable
//!   hash), so losing one loses only its share. Values that do not decode
//!   (another format version, garbage, a value of another key, a value over
//!   1 MiB) are misses and are replaced by the next fill; a lease marker,
//!   even one planted without an expiry, never blocks its key.
//! - Transactions ([`Tx`](crate::Tx)) neither read nor fill either tier.
//!
//! Values hold the cell's `transport_url` and `database_connection`,
//! credentials included: run memcached where only the services can reach
//! it, as for any oslo.cache deployment.

mod client;
mod invalidation;
mod local;
mod shared;
mod value;

use std::time::Duration;

use mapping_model::{Error, InstanceMapping, Result};

pub(crate) use invalidation::{WriteLog, Writes};

/// Size and lifetime of the first tier (see [`Options::cache`](crate::Options::cache)).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CacheOptions {
    /// Most mappings held at once (0 caches nothing).
    pub capacity: usize,
    /// How long an entry is served after it was read: the bound on
    /// staleness for writes made by other processes.
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

/// Settings of the memcached tier, after oslo.cache's `[cache]` options
/// (see [`Options::memcached`](crate::Options::memcached)).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemcachedOptions {
    /// `host:port` of each server (`[v6addr]:port` for IPv6), oslo.cache's
    /// `memcache_servers`. Every process must list the same servers in the
    /// same order: a key's server is picked by its hash and the position.
    pub servers: Vec<String>,
    /// How long a value lives (oslo.cache's `expiration_time`, default 600 s,
    /// at most 30 days): the staleness bound for writers outside the library.
    pub expiration_time: Duration,
    /// The memcached time of one lookup (`memcache_socket_timeout`,
    /// default 1 s): every exchange of the call (its `gets`, `add`,
    /// `gets`, the `cas` of its fill, connects included) shares this one
    /// deadline, so it is the most a slow or trickling server costs a call.
    pub socket_timeout: Duration,
    /// Bound of one connection attempt (default 1 s), within the call's
    /// deadline.
    pub connect_timeout: Duration,
    /// How long a server that failed is skipped by lookups
    /// (`memcache_dead_retry`, default 300 s). Invalidations are never
    /// skipped.
    pub dead_retry: Duration,
    /// The memcached time of a write's invalidation on one server (default
    /// 250 ms), tried even on a server marked dead. What does not go
    /// through in it is remembered and replayed (see the module docs).
    pub invalidation_timeout: Duration,
    /// Put before every key (oslo.cache's `config_prefix` idea): separates
    /// deployments sharing servers. Printable ASCII without spaces, at most
    /// 128 bytes; empty by default.
    pub key_prefix: String,
}

impl Default for MemcachedOptions {
    fn default() -> Self {
        Self {
            servers: vec!["127.0.0.1:11211".to_owned()],
            expiration_time: Duration::from_secs(600),
            socket_timeout: Duration::from_secs(1),
            connect_timeout: Duration::from_secs(1),
            dead_retry: Duration::from_secs(300),
            invalidation_timeout: Duration::from_millis(250),
            key_prefix: String::new(),
        }
    }
}

impl MemcachedOptions {
    /// The defaults with these servers.
    pub fn new<S: Into<String>>(servers: impl IntoIterator<Item = S>) -> Self {
        Self {
            servers: servers.into_iter().map(Into::into).collect(),
            ..Self::default()
        }
    }

    /// Checks the options ([`Options::validate`](crate::Options::validate)
    /// runs it); [`Error::InvalidInput`] names the first one refused.
    pub fn validate(&self) -> Result<()> {
        let bad = |field: &'static str, reason: String| Err(Error::InvalidInput { field, reason });
        if self.servers.is_empty() {
            return bad("memcached.servers", "no server given".into());
        }
        for s in &self.servers {
            let ok = s.rsplit_once(':').is_some_and(|(host, port)| {
                !host.is_empty()
                    && !host.contains(char::is_whitespace)
                    && port.parse::<u16>().is_ok_and(|p| p != 0)
            });
            if !ok {
                return bad("memcached.servers", format!("{s:?} is not host:port"));
            }
        }
        if self.expiration_time < Duration::from_secs(1)
            || self.expiration_time > Duration::from_secs(30 * 24 * 3600)
        {
            return bad(
                "memcached.expiration_time",
                "must be from 1 s to 30 days".into(),
            );
        }
        for (field, d) in [
            ("memcached.socket_timeout", self.socket_timeout),
            ("memcached.connect_timeout", self.connect_timeout),
            ("memcached.invalidation_timeout", self.invalidation_timeout),
        ] {
            if d.is_zero() {
                return bad(field, "must be longer than zero".into());
            }
        }
        if self.key_prefix.len() > 128 || !self.key_prefix.bytes().all(|b| b.is_ascii_graphic()) {
            return bad(
                "memcached.key_prefix",
                "must be printable ASCII without spaces, at most 128 bytes".into(),
            );
        }
        Ok(())
    }
}

/// Counters of the first tier since the database was opened.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FirstTierStats {
    /// Lookups answered from this tier.
    pub hits: u64,
    /// Lookups it could not answer (expired entries included).
    pub misses: u64,
    /// Entries dropped because their time-to-live had passed.
    pub expired: u64,
    /// Entries dropped to stay within the capacity.
    pub evictions: u64,
    /// Entries removed, or whole-tier clears, caused by writes.
    pub invalidations: u64,
    /// Entries held now.
    pub entries: usize,
}

/// Counters of the memcached tier of this handle since it was opened.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct MemcachedStats {
    /// Lookups answered from memcached.
    pub hits: u64,
    /// Lookups it could not answer (the reasons below included).
    pub misses: u64,
    /// Commands that failed (timeout, connection, refused, bad reply).
    pub errors: u64,
    /// Commands not sent because their server is marked dead.
    pub dead_skips: u64,
    /// Values that did not decode or belonged to another key.
    pub refused: u64,
    /// Values that decoded but were outdated by a cell write, or were
    /// expanded with other URL defaults.
    pub stale: u64,
    /// Values stored after a database read.
    pub fills: u64,
    /// Keys deleted, and cells records moved on or dropped, by writes.
    pub invalidations: u64,
    /// Invalidations (keys, or a cells record) that did not go through at
    /// first and were replayed later.
    pub invalidations_replayed: u64,
    /// Invalidations waiting now to be replayed.
    pub invalidations_pending: u64,
}

/// Counters of the mapping cache, per tier (`None` for a tier that is off).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CacheStats {
    /// The in-process tier.
    pub first_tier: Option<FirstTierStats>,
    /// The memcached tier.
    pub memcached: Option<MemcachedStats>,
}

/// Both tiers, shared by every clone of a [`Database`](crate::Database).
#[doc(hidden)]
pub struct MappingCache {
    local: Option<local::LocalCache>,
    shared: Option<shared::SharedTier>,
}

/// What a lookup that missed needs to fill the tiers after its database read.
pub(crate) struct FillTicket {
    local: Option<local::FillTicket>,
    lease: Option<shared::Lease>,
}

impl MappingCache {
    /// The cache `options` ask for, `None` when both tiers are off;
    /// [`Error::InvalidInput`] for bad memcached settings.
    pub(crate) fn from_options(options: &crate::Options) -> Result<Option<Self>> {
        // The memcached options were checked by `Options::validate`.
        if options.cache.is_none() && options.memcached.is_none() {
            return Ok(None);
        }
        let defaults = client::fnv1a(&[
            options
                .default_transport_url
                .as_deref()
                .unwrap_or("\u{0}")
                .as_bytes(),
            b"\n",
            options
                .default_database_connection
                .as_deref()
                .unwrap_or("\u{0}")
                .as_bytes(),
        ]);
        Ok(Some(Self {
            local: options.cache.map(local::LocalCache::new),
            shared: options
                .memcached
                .as_ref()
                .map(|m| shared::SharedTier::new(m, defaults)),
        }))
    }

    /// The cached mapping of `uuid` (canonical form), or a ticket to fill
    /// the cache after reading the database.
    pub(crate) fn get(&self, uuid: &str) -> std::result::Result<InstanceMapping, FillTicket> {
        let local = match &self.local {
            Some(l) => match l.get(uuid) {
                Ok(hit) => return Ok(hit),
                Err(t) => Some(t),
            },
            None => None,
        };
        let lease = match &self.shared {
            Some(s) => match s.lookup(uuid) {
                shared::Lookup::Hit(m) => {
                    if let (Some(l), Some(t)) = (&self.local, local) {
                        l.fill(t, &m);
                    }
                    return Ok(m);
                }
                shared::Lookup::Miss(lease) => lease,
            },
            None => None,
        };
        Err(FillTicket { local, lease })
    }

    /// Stores a mapping read from the database under the ticket taken
    /// before the read; each tier refuses it if a write came in between.
    pub(crate) fn fill(&self, ticket: FillTicket, mapping: &InstanceMapping) {
        if let (Some(s), Some(lease)) = (&self.shared, ticket.lease) {
            s.fill(lease, mapping);
        }
        if let (Some(l), Some(t)) = (&self.local, ticket.local) {
            l.fill(t, mapping);
        }
    }

    /// Forgets what a finished operation or transaction wrote: memcached
    /// first, then this process's first tier.
    pub(crate) fn apply(&self, writes: &Writes) {
        if writes.is_empty() {
            return;
        }
        if let Some(s) = &self.shared {
            s.invalidate(writes);
        }
        if let Some(l) = &self.local {
            l.apply(writes);
        }
    }

    /// Empties the first tier and invalidates every memcached value.
    pub(crate) fn clear(&self) {
        self.apply(&Writes::everything());
    }

    pub(crate) fn stats(&self) -> CacheStats {
        CacheStats {
            first_tier: self.local.as_ref().map(local::LocalCache::stats),
            memcached: self.shared.as_ref().map(shared::SharedTier::stats),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn memcached_options_are_validated() {
        assert!(
            MemcachedOptions::new(["127.0.0.1:11211", "[::1]:11212", "mc.example:1"])
                .validate()
                .is_ok()
        );
        for servers in [
            vec![],
            vec!["localhost"],
            vec!["h:0"],
            vec![":1"],
            vec!["h:x"],
        ] {
            assert!(MemcachedOptions::new(servers).validate().is_err());
        }
        let bad_prefix = MemcachedOptions {
            key_prefix: "a b".into(),
            ..MemcachedOptions::default()
        };
        assert!(bad_prefix.validate().is_err());
        let bad_expiry = MemcachedOptions {
            expiration_time: Duration::from_secs(31 * 24 * 3600),
            ..MemcachedOptions::default()
        };
        assert!(bad_expiry.validate().is_err());
    }
}
