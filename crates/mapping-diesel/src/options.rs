//! The options of a [`Database`](crate::Database) and the retry policy,
//! checked when the database is opened.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use mapping_model::{Error, Result};

use crate::cache::{CacheOptions, MemcachedOptions};

/// How transient failures (deadlocks, serialization failures, lock-wait
/// timeouts, SQLite busy) are retried.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Attempts in all, the first included (1 = never retry).
    pub max_attempts: u32,
    /// Delay before the first retry; doubled for each further one.
    pub base_delay: Duration,
    /// Upper bound of one delay.
    pub max_delay: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            max_attempts: 5,
            base_delay: Duration::from_millis(10),
            max_delay: Duration::from_millis(500),
        }
    }
}

impl RetryPolicy {
    /// A policy that never retries.
    pub fn never() -> Self {
        Self {
            max_attempts: 1,
            ..Self::default()
        }
    }

    /// The delay before retry number `retry` (1-based): `base_delay` doubled
    /// per retry, capped at `max_delay`, then jittered uniformly into
    /// `[delay/2, delay]` so that colliding callers do not retry in lockstep.
    pub fn delay(&self, retry: u32) -> Duration {
        let exp = self.base_delay.saturating_mul(
            1u32.checked_shl(retry.saturating_sub(1))
                .unwrap_or(u32::MAX),
        );
        let capped = exp.min(self.max_delay);
        let half = capped / 2;
        half + half.mul_f64(jitter())
    }
}

/// A number in `[0, 1)`, from the standard library's randomly keyed hasher:
/// enough to spread retries apart without a random-number crate.
fn jitter() -> f64 {
    use std::hash::BuildHasher;
    static CALLS: AtomicU64 = AtomicU64::new(0);
    let x = std::collections::hash_map::RandomState::new()
        .hash_one(CALLS.fetch_add(1, Ordering::Relaxed));
    (x >> 11) as f64 / (1u64 << 53) as f64
}

/// Options of a [`Database`](crate::Database), checked when it is opened
/// ([`Options::validate`]).
///
/// Non-exhaustive, so that options can be added without breaking callers:
/// start from [`Options::default`] and chain the setters (or assign the
/// public fields).
///
/// ```
/// # use std::time::Duration;
/// # use mapping_diesel::Options;
/// let options = Options::default()
///     .max_connections(4)
///     .connection_timeout(Duration::from_secs(3))
///     .default_transport_url("rabbit://nova:secret@mq:5672/");
/// assert!(options.validate().is_ok());
/// ```
///
/// Its `Debug` shows the default URLs with their passwords hidden.
#[derive(Clone)]
#[non_exhaustive]
pub struct Options {
    /// Most connections the pool holds (0 counts as 1, more than
    /// [`Options::MAX_CONNECTIONS`] is refused; an in-memory SQLite database
    /// always uses one).
    pub max_connections: u32,
    /// How long a caller waits for a pooled connection before
    /// [`Error::PoolTimeout`] (or [`Error::Connection`] if the server cannot
    /// be reached meanwhile). Zero or more than [`Options::MAX_WAIT`] is
    /// refused.
    pub connection_timeout: Duration,
    /// A pooled connection idle for longer than this is pinged (one round
    /// trip) before it is handed out; one used more recently is handed out
    /// without a ping, and should it have died meanwhile the operation fails
    /// (reads are retried on another connection). `Duration::ZERO` pings on
    /// every checkout.
    pub ping_idle_after: Duration,
    /// How long a SQLite statement waits for a lock held elsewhere (clamped
    /// to `i32::MAX` milliseconds; zero fails at once with "database is
    /// locked", which the retry policy then retries).
    pub sqlite_busy_timeout: Duration,
    /// How much of a SQLite database file is read through memory mapping
    /// (`PRAGMA mmap_size`, bytes; 0 turns it off). Reads of mapped pages
    /// need no system call: a lookup in a 1M-row table took 7.5 µs instead
    /// of 10.5 µs (docs/benchmarks.md, history in docs/notes/benchmarks-history.md). An I/O error on a mapped page is a
    /// signal rather than an error code, which is SQLite's own caveat.
    /// More than `i64::MAX` is refused.
    pub sqlite_mmap_size: u64,
    /// Retries of transient failures (`max_attempts` 0 counts as 1; a
    /// delay longer than [`Options::MAX_WAIT`] is refused).
    pub retry: RetryPolicy,
    /// The default against which `transport_url` templates are expanded
    /// (Nova's `[DEFAULT]/transport_url`); `None` leaves templates as stored.
    pub default_transport_url: Option<String>,
    /// The default against which `database_connection` templates are expanded
    /// (Nova's `[database]/connection`); `None` leaves templates as stored.
    pub default_database_connection: Option<String>,
    /// The read-through cache of instance-uuid lookups; `None` (the
    /// default) turns it off. A capacity above
    /// [`Options::MAX_CACHE_CAPACITY`] or a ttl above [`Options::MAX_WAIT`]
    /// is refused.
    pub cache: Option<CacheOptions>,
    /// How long opening one PostgreSQL or MySQL connection may take, the
    /// handshake included (default 5 s; zero or more than
    /// [`Options::MAX_WAIT`] is refused). Separate from `connection_timeout`:
    /// a caller waiting on the pool while the server is unreachable gets
    /// [`Error::Connection`] once an attempt to connect has failed, within
    /// about this bound, instead of waiting the whole `connection_timeout`.
    /// A `connect_timeout` in the URL (seconds, as in libpq and PyMySQL)
    /// takes precedence. Not used by SQLite.
    pub connect_timeout: Duration,
    /// MySQL/MariaDB Galera only: the session's `wsrep_sync_wait` (0-15,
    /// more is refused), set on every new connection, as oslo.db's
    /// `mysql_wsrep_sync_wait`. `1` makes reads wait until the node has
    /// applied every write the cluster committed before them
    /// (read-your-writes through a load balancer), at the cost of that wait.
    /// `None` (default) keeps the server's setting.
    pub wsrep_sync_wait: Option<u8>,
    /// The memcached tier of the cache of instance-uuid lookups, shared by
    /// every process; `None` (the default) turns it off. Checked by
    /// [`MemcachedOptions::validate`].
    pub memcached: Option<MemcachedOptions>,
}

impl std::fmt::Debug for Options {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let redacted = |url: &Option<String>| url.as_deref().map(mapping_model::redact_url);
        f.debug_struct("Options")
            .field("max_connections", &self.max_connections)
            .field("connection_timeout", &self.connection_timeout)
            .field("ping_idle_after", &self.ping_idle_after)
            .field("sqlite_busy_timeout", &self.sqlite_busy_timeout)
            .field("sqlite_mmap_size", &self.sqlite_mmap_size)
            .field("retry", &self.retry)
            .field(
                "default_transport_url",
                &redacted(&self.default_transport_url),
            )
            .field(
                "default_database_connection",
                &redacted(&self.default_database_connection),
            )
            .field("cache", &self.cache)
            .field("connect_timeout", &self.connect_timeout)
            .field("wsrep_sync_wait", &self.wsrep_sync_wait)
            .field("memcached", &self.memcached)
            .finish()
    }
}

impl Default for Options {
    fn default() -> Self {
        Self {
            max_connections: 10,
            connection_timeout: Duration::from_secs(30),
            ping_idle_after: Duration::from_secs(1),
            sqlite_busy_timeout: Duration::from_secs(5),
            sqlite_mmap_size: 256 * 1024 * 1024,
            retry: RetryPolicy::default(),
            default_transport_url: None,
            default_database_connection: None,
            cache: None,
            connect_timeout: Duration::from_secs(5),
            wsrep_sync_wait: None,
            memcached: None,
        }
    }
}

impl Options {
    /// Most pooled connections accepted.
    pub const MAX_CONNECTIONS: u32 = 1024;
    /// Longest wait, delay or time-to-live accepted (one day).
    pub const MAX_WAIT: Duration = Duration::from_secs(24 * 3600);
    /// Most cache entries accepted.
    pub const MAX_CACHE_CAPACITY: usize = 100_000_000;

    /// Checks every option; [`Error::InvalidInput`] names the first one
    /// refused. [`Database::open_with`](crate::Database::open_with) runs it: no option can make a later
    /// call panic or abort the process.
    pub fn validate(&self) -> Result<()> {
        let refuse =
            |field: &'static str, reason: String| Err(Error::InvalidInput { field, reason });
        if self.connection_timeout.is_zero() {
            // The pool cannot wait "no time at all" (r2d2 would panic).
            return refuse("connection_timeout", "must be longer than zero".into());
        }
        if self.connection_timeout > Self::MAX_WAIT {
            return refuse(
                "connection_timeout",
                format!(
                    "{:?} is longer than {:?}",
                    self.connection_timeout,
                    Self::MAX_WAIT
                ),
            );
        }
        if self.connect_timeout.is_zero() {
            return refuse("connect_timeout", "must be longer than zero".into());
        }
        if self.connect_timeout > Self::MAX_WAIT {
            return refuse(
                "connect_timeout",
                format!(
                    "{:?} is longer than {:?}",
                    self.connect_timeout,
                    Self::MAX_WAIT
                ),
            );
        }
        if self.wsrep_sync_wait.is_some_and(|n| n > 15) {
            return refuse("wsrep_sync_wait", "must be a bit mask from 0 to 15".into());
        }
        if self.max_connections > Self::MAX_CONNECTIONS {
            return refuse(
                "max_connections",
                format!(
                    "{} is more than {}",
                    self.max_connections,
                    Self::MAX_CONNECTIONS
                ),
            );
        }
        if i64::try_from(self.sqlite_mmap_size).is_err() {
            return refuse(
                "sqlite_mmap_size",
                format!("{} is more than {}", self.sqlite_mmap_size, i64::MAX),
            );
        }
        for (field, d) in [
            ("retry.base_delay", self.retry.base_delay),
            ("retry.max_delay", self.retry.max_delay),
        ] {
            if d > Self::MAX_WAIT {
                return refuse(field, format!("{d:?} is longer than {:?}", Self::MAX_WAIT));
            }
        }
        if let Some(c) = &self.cache {
            if c.capacity > Self::MAX_CACHE_CAPACITY {
                return refuse(
                    "cache.capacity",
                    format!("{} is more than {}", c.capacity, Self::MAX_CACHE_CAPACITY),
                );
            }
            if c.ttl > Self::MAX_WAIT {
                return refuse(
                    "cache.ttl",
                    format!("{:?} is longer than {:?}", c.ttl, Self::MAX_WAIT),
                );
            }
        }
        if let Some(m) = &self.memcached {
            m.validate()?;
        }
        Ok(())
    }

    /// Sets [`Options::max_connections`].
    pub fn max_connections(mut self, n: u32) -> Self {
        self.max_connections = n;
        self
    }

    /// Sets [`Options::connection_timeout`].
    pub fn connection_timeout(mut self, d: Duration) -> Self {
        self.connection_timeout = d;
        self
    }

    /// Sets [`Options::ping_idle_after`].
    pub fn ping_idle_after(mut self, d: Duration) -> Self {
        self.ping_idle_after = d;
        self
    }

    /// Sets [`Options::sqlite_busy_timeout`].
    pub fn sqlite_busy_timeout(mut self, d: Duration) -> Self {
        self.sqlite_busy_timeout = d;
        self
    }

    /// Sets [`Options::sqlite_mmap_size`].
    pub fn sqlite_mmap_size(mut self, bytes: u64) -> Self {
        self.sqlite_mmap_size = bytes;
        self
    }

    /// Sets [`Options::retry`].
    pub fn retry(mut self, policy: RetryPolicy) -> Self {
        self.retry = policy;
        self
    }

    /// Sets [`Options::default_transport_url`].
    pub fn default_transport_url(mut self, url: impl Into<String>) -> Self {
        self.default_transport_url = Some(url.into());
        self
    }

    /// Sets [`Options::default_database_connection`].
    pub fn default_database_connection(mut self, url: impl Into<String>) -> Self {
        self.default_database_connection = Some(url.into());
        self
    }

    /// Sets [`Options::cache`] (`None` turns the cache off).
    pub fn cache(mut self, cache: Option<CacheOptions>) -> Self {
        self.cache = cache;
        self
    }

    /// Sets [`Options::connect_timeout`].
    pub fn connect_timeout(mut self, d: Duration) -> Self {
        self.connect_timeout = d;
        self
    }

    /// Sets [`Options::wsrep_sync_wait`] (`None` keeps the server's setting).
    pub fn wsrep_sync_wait(mut self, mask: Option<u8>) -> Self {
        self.wsrep_sync_wait = mask;
        self
    }

    /// Sets [`Options::memcached`] (`None` turns the memcached tier off).
    pub fn memcached(mut self, memcached: Option<MemcachedOptions>) -> Self {
        self.memcached = memcached;
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refused_field(o: Options) -> &'static str {
        match o.validate() {
            Err(Error::InvalidInput { field, .. }) => field,
            other => panic!("not refused: {other:?}"),
        }
    }

    #[test]
    fn main_s_options_are_checked_by_validate() {
        let o = Options::default();
        assert!(o.validate().is_ok());
        assert_eq!(
            refused_field(o.clone().connect_timeout(Duration::ZERO)),
            "connect_timeout"
        );
        assert_eq!(
            refused_field(
                o.clone()
                    .connect_timeout(Options::MAX_WAIT + Duration::from_secs(1))
            ),
            "connect_timeout"
        );
        assert_eq!(
            refused_field(o.clone().wsrep_sync_wait(Some(16))),
            "wsrep_sync_wait"
        );
        assert!(o.clone().wsrep_sync_wait(Some(15)).validate().is_ok());
        assert_eq!(
            refused_field(
                o.clone()
                    .memcached(Some(MemcachedOptions::new(Vec::<String>::new())))
            ),
            "memcached.servers"
        );
        assert!(o
            .memcached(Some(MemcachedOptions::new(["127.0.0.1:11211"])))
            .validate()
            .is_ok());
    }
}
