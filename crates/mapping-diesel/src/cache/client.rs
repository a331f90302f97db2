//! A small client of memcached's text protocol: the few commands the shared
//! tier needs (`gets`, `add`, `cas`, `delete`), several servers with keys
//! spread by a stable hash, connect and socket timeouts, and dead servers
//! skipped for a while.
//!
//! Every exchange runs under a [`Call`]: the time one library call may
//! still spend on memcached. Each socket read and write (and each connect)
//! gets what is left of it, so a server that answers slowly, or trickles
//! its reply a byte at a time, costs the call at most its budget in all,
//! however many exchanges the call makes. A call of [`Mode::Invalidate`]
//! is sent even to a server marked dead.
//!
//! Why not a client crate: `memcache` 0.21, the maintained synchronous one,
//! hands a connection whose read timed out back to its pool (its
//! `has_broken` is always false), so the next command on it can read the
//! previous command's reply; it connects to every server when the client is
//! built, failing if one is down; it has no dead-server retry time; and it
//! spreads keys with `DefaultHasher`, whose output Rust may change between
//! releases, so two processes built apart could send one key to two
//! servers and miss each other's invalidations. The text protocol part we
//! need is about 300 lines.

use std::cell::Cell;
use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// Largest value kept from a server (memcached's default item limit); a
/// larger one is read past and reported as [`Item::oversized`], so that the
/// shared tier can replace it.
const MAX_VALUE: usize = 1024 * 1024;

/// What a call is for: whether a server marked dead is skipped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Mode {
    /// Lookups and fills: a server marked dead is skipped.
    Lookup,
    /// Invalidations: always sent, a server marked dead included; a
    /// success clears the mark.
    Invalidate,
}

/// The memcached time one library call has left, shared by all its
/// exchanges (see the module documentation).
#[derive(Debug, Clone)]
pub(crate) struct Call {
    left: Cell<Duration>,
    mode: Mode,
}

impl Call {
    /// A lookup (and the fill after it) with `budget` in all.
    pub(crate) fn lookup(budget: Duration) -> Self {
        Self {
            left: Cell::new(budget),
            mode: Mode::Lookup,
        }
    }

    /// An invalidation with `budget` in all.
    pub(crate) fn invalidate(budget: Duration) -> Self {
        Self {
            left: Cell::new(budget),
            mode: Mode::Invalidate,
        }
    }

    /// What is left of the budget.
    pub(crate) fn left(&self) -> Duration {
        self.left.get()
    }
}

/// Why a memcached command failed. Never reaches the library's callers: the
/// shared tier counts it as an error and answers from the database.
#[derive(Debug, thiserror::Error)]
pub(crate) enum McError {
    /// The server failed recently and is skipped until its retry time.
    #[error("memcached {server} is marked dead")]
    Dead {
        /// `host:port`.
        server: String,
    },
    /// The call had used up its memcached time before this exchange.
    #[error("no time left for memcached {server} in this call")]
    OutOfTime {
        /// `host:port`.
        server: String,
    },
    /// No connection could be made within the connect timeout.
    #[error("cannot connect to memcached {server}")]
    Connect {
        /// `host:port`.
        server: String,
        /// The last connect error.
        #[source]
        source: io::Error,
    },
    /// Reading or writing failed (timeout, reset, closed).
    #[error("I/O with memcached {server} failed")]
    Io {
        /// `host:port`.
        server: String,
        /// The socket error.
        #[source]
        source: io::Error,
    },
    /// The server refused the command (`SERVER_ERROR out of memory`, ...).
    #[error("memcached {server} refused the command: {reply}")]
    Refused {
        /// `host:port`.
        server: String,
        /// Its reply line.
        reply: String,
    },
    /// The server's reply could not be understood.
    #[error("unexpected reply from memcached {server}: {reply}")]
    Protocol {
        /// `host:port`.
        server: String,
        /// What came.
        reply: String,
    },
}

impl McError {
    /// Whether this error is the dead-server skip rather than a real failure.
    pub(crate) fn is_dead_skip(&self) -> bool {
        matches!(self, McError::Dead { .. })
    }
}

/// One item of a `gets` reply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Item {
    /// Its key.
    pub key: String,
    /// Its bytes (empty when `oversized`).
    pub data: Vec<u8>,
    /// Its cas unique.
    pub cas: u64,
    /// The value was larger than memcached's default item limit (1 MiB):
    /// read past, not kept; never a value the library stored.
    pub oversized: bool,
}

/// The outcome of a `cas` or `add`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Stored {
    /// Written.
    Yes,
    /// Not written: the item exists (`add`) or changed (`cas`).
    Exists,
    /// Not written: the item is gone (`cas`).
    NotFound,
}

/// Errors of one exchange, before the server's name is attached.
enum Fail {
    Io(io::Error),
    Refused(String),
    Protocol(String),
}

impl From<io::Error> for Fail {
    fn from(e: io::Error) -> Self {
        Fail::Io(e)
    }
}

/// A socket whose every read and write is bounded by one deadline.
struct Timed {
    stream: TcpStream,
    until: Instant,
}

impl Timed {
    /// What is left until the deadline, or a timeout error once it passed.
    fn left(&self) -> io::Result<Duration> {
        let left = self.until.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(io::Error::new(
                io::ErrorKind::TimedOut,
                "the call's memcached time ran out",
            ));
        }
        Ok(left)
    }
}

impl Read for Timed {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let left = self.left()?;
        self.stream.set_read_timeout(Some(left))?;
        self.stream.read(buf)
    }
}

/// One open connection.
struct Conn {
    stream: BufReader<Timed>,
}

impl Conn {
    fn send(&mut self, mut command: &[u8]) -> Result<(), Fail> {
        let timed = self.stream.get_mut();
        while !command.is_empty() {
            let left = timed.left()?;
            timed.stream.set_write_timeout(Some(left))?;
            match timed.stream.write(command) {
                Ok(0) => return Err(Fail::Io(io::ErrorKind::WriteZero.into())),
                Ok(n) => command = command.get(n..).unwrap_or_default(),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(Fail::Io(e)),
            }
        }
        Ok(())
    }

    /// Reads and drops `n` bytes.
    fn skip(&mut self, n: usize) -> Result<(), Fail> {
        let want = u64::try_from(n).unwrap_or(u64::MAX);
        let got = io::copy(&mut (&mut self.stream).take(want), &mut io::sink())?;
        if got < want {
            return Err(Fail::Io(io::ErrorKind::UnexpectedEof.into()));
        }
        Ok(())
    }

    /// One reply line, without its `\r\n`.
    fn line(&mut self) -> Result<String, Fail> {
        let mut buf = Vec::with_capacity(64);
        let n = (&mut self.stream).take(1024).read_until(b'\n', &mut buf)?;
        if n == 0 {
            return Err(Fail::Io(io::ErrorKind::UnexpectedEof.into()));
        }
        if !buf.ends_with(b"\r\n") {
            return Err(Fail::Protocol(String::from_utf8_lossy(&buf).into_owned()));
        }
        buf.truncate(buf.len() - 2);
        let line = String::from_utf8(buf).map_err(|e| Fail::Protocol(e.to_string()))?;
        if line.starts_with("SERVER_ERROR") || line.starts_with("CLIENT_ERROR") || line == "ERROR" {
            return Err(Fail::Refused(line));
        }
        Ok(line)
    }
}

/// One server: where it is, its idle connections, and whether it is dead.
struct Server {
    addr: String,
    idle: Mutex<Vec<Conn>>,
    dead_until: Mutex<Option<Instant>>,
}

/// Timeouts of a [`Servers`] set (the socket timeout is the [`Call`]'s
/// budget, chosen by the caller).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Timeouts {
    /// Bound of one connection attempt (within the call's budget).
    pub connect: Duration,
    /// How long a server that failed is skipped.
    pub dead_retry: Duration,
}

/// The memcached servers, in the configured order.
pub(crate) struct Servers {
    servers: Vec<Server>,
    timeouts: Timeouts,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// 64-bit FNV-1a: stable across builds, processes and Rust releases.
pub(crate) fn fnv1a(parts: &[&[u8]]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for part in parts {
        for b in *part {
            h ^= u64::from(*b);
            h = h.wrapping_mul(0x0000_0100_0000_01b3);
        }
    }
    h
}

/// Jump consistent hash (Lamping and Veach): the bucket of `key` among
/// `buckets`; growing the list moves only the keys that must move.
fn jump_hash(mut key: u64, buckets: usize) -> usize {
    let (mut b, mut j) = (-1i64, 0i64);
    let n = i64::try_from(buckets).unwrap_or(i64::MAX);
    while j < n {
        b = j;
        key = key.wrapping_mul(2_862_933_555_777_941_757).wrapping_add(1);
        // The quotient is below 2^31 + 1; the product stays within f64's exact range.
        j = ((b + 1) as f64 * ((1u64 << 31) as f64 / ((key >> 33) + 1) as f64)) as i64;
    }
    usize::try_from(b).unwrap_or(0)
}

impl Servers {
    /// A set of `host:port` servers; nothing is connected yet.
    pub(crate) fn new(addrs: &[String], timeouts: Timeouts) -> Self {
        Self {
            servers: addrs
                .iter()
                .map(|a| Server {
                    addr: a.clone(),
                    idle: Mutex::new(Vec::new()),
                    dead_until: Mutex::new(None),
                })
                .collect(),
            timeouts,
        }
    }

    /// How many servers there are.
    pub(crate) fn len(&self) -> usize {
        self.servers.len()
    }

    /// The server that holds `key`.
    pub(crate) fn server_for(&self, key: &str) -> usize {
        jump_hash(fnv1a(&[key.as_bytes()]), self.servers.len())
    }

    /// A new connection to `server`, within the connect timeout and what
    /// is left until `until`.
    fn connect(&self, server: &Server, until: Instant) -> Result<Conn, McError> {
        let fail = |source| McError::Connect {
            server: server.addr.clone(),
            source,
        };
        let addrs = server.addr.to_socket_addrs().map_err(fail)?;
        let mut last = io::Error::new(io::ErrorKind::NotFound, "no address");
        for a in addrs {
            let left = until.saturating_duration_since(Instant::now());
            if left.is_zero() {
                last = io::Error::new(io::ErrorKind::TimedOut, "the call's memcached time ran out");
                break;
            }
            match TcpStream::connect_timeout(&a, self.timeouts.connect.min(left)) {
                Ok(s) => {
                    s.set_nodelay(true).map_err(fail)?;
                    return Ok(Conn {
                        stream: BufReader::new(Timed { stream: s, until }),
                    });
                }
                Err(e) => last = e,
            }
        }
        Err(fail(last))
    }

    /// Runs one exchange on server `idx` within what is left of `call`'s
    /// budget: on an idle connection if there is one (once more on a new
    /// connection if that one turns out closed, as after a server restart),
    /// else on a new one. A connection whose exchange failed is dropped,
    /// never reused; a server that cannot be reached or timed out is
    /// skipped by lookups for `dead_retry` (invalidations still try it).
    fn exchange<T>(
        &self,
        idx: usize,
        call: &Call,
        mut f: impl FnMut(&mut Conn) -> Result<T, Fail>,
    ) -> Result<T, McError> {
        let Some(server) = self.servers.get(idx) else {
            return Err(McError::Protocol {
                server: format!("#{idx}"),
                reply: "no such server".into(),
            });
        };
        if call.mode == Mode::Lookup {
            let mut dead = lock(&server.dead_until);
            match *dead {
                Some(until) if Instant::now() < until => {
                    return Err(McError::Dead {
                        server: server.addr.clone(),
                    })
                }
                Some(_) => *dead = None,
                None => {}
            }
        }
        let start = Instant::now();
        if call.left().is_zero() {
            return Err(McError::OutOfTime {
                server: server.addr.clone(),
            });
        }
        let until = start + call.left();
        let result = self.exchange_until(server, until, &mut f);
        call.left.set(call.left().saturating_sub(start.elapsed()));
        if result.is_ok() && call.mode == Mode::Invalidate {
            // It answered: lookups may use it again.
            *lock(&server.dead_until) = None;
        }
        result
    }

    fn exchange_until<T>(
        &self,
        server: &Server,
        until: Instant,
        f: &mut impl FnMut(&mut Conn) -> Result<T, Fail>,
    ) -> Result<T, McError> {
        let pooled = lock(&server.idle).pop();
        let reused = pooled.is_some();
        let mut conn = match pooled {
            Some(mut c) => {
                c.stream.get_mut().until = until;
                c
            }
            None => self
                .connect(server, until)
                .inspect_err(|_| self.mark_dead(server))?,
        };
        let mut result = f(&mut conn);
        if let (true, Err(Fail::Io(e))) = (reused, &result) {
            if !matches!(
                e.kind(),
                io::ErrorKind::TimedOut | io::ErrorKind::WouldBlock
            ) {
                // A stale connection (server restarted): its siblings are stale too.
                lock(&server.idle).clear();
                conn = self
                    .connect(server, until)
                    .inspect_err(|_| self.mark_dead(server))?;
                result = f(&mut conn);
            }
        }
        match result {
            Ok(v) => {
                lock(&server.idle).push(conn);
                Ok(v)
            }
            Err(Fail::Refused(reply)) => {
                // The reply was read whole: the connection is still in step.
                lock(&server.idle).push(conn);
                Err(McError::Refused {
                    server: server.addr.clone(),
                    reply,
                })
            }
            Err(Fail::Io(source)) => {
                self.mark_dead(server);
                Err(McError::Io {
                    server: server.addr.clone(),
                    source,
                })
            }
            Err(Fail::Protocol(reply)) => Err(McError::Protocol {
                server: server.addr.clone(),
                reply,
            }),
        }
    }

    fn mark_dead(&self, server: &Server) {
        let retry = self.timeouts.dead_retry;
        tracing::warn!(server = %server.addr, retry_s = retry.as_secs_f64(), "memcached server failed, skipping it for the dead-server retry time");
        lock(&server.idle).clear();
        *lock(&server.dead_until) = Some(Instant::now() + retry);
    }

    /// `gets` of several keys held by server `idx`: the items found.
    pub(crate) fn gets(
        &self,
        idx: usize,
        keys: &[&str],
        call: &Call,
    ) -> Result<Vec<Item>, McError> {
        let mut cmd = Vec::with_capacity(80 * keys.len());
        cmd.extend_from_slice(b"gets");
        for k in keys {
            cmd.push(b' ');
            cmd.extend_from_slice(k.as_bytes());
        }
        cmd.extend_from_slice(b"\r\n");
        self.exchange(idx, call, |c| {
            c.send(&cmd)?;
            let mut items = Vec::new();
            loop {
                let line = c.line()?;
                if line == "END" {
                    return Ok(items);
                }
                let bad = || Fail::Protocol(line.clone());
                let mut parts = line.split(' ');
                if parts.next() != Some("VALUE") {
                    return Err(bad());
                }
                let key = parts.next().ok_or_else(bad)?.to_owned();
                let _flags = parts.next().ok_or_else(bad)?;
                let len: usize = parts.next().and_then(|n| n.parse().ok()).ok_or_else(bad)?;
                let cas: u64 = parts.next().and_then(|n| n.parse().ok()).ok_or_else(bad)?;
                if len > MAX_VALUE {
                    // Read past it (within the call's time), so that the
                    // connection stays in step and the key can be replaced.
                    c.skip(len)?;
                    let mut end = [0u8; 2];
                    c.stream.read_exact(&mut end)?;
                    if &end != b"\r\n" {
                        return Err(bad());
                    }
                    items.push(Item {
                        key,
                        data: Vec::new(),
                        cas,
                        oversized: true,
                    });
                    continue;
                }
                let mut data = vec![0; len + 2];
                c.stream.read_exact(&mut data)?;
                if !data.ends_with(b"\r\n") {
                    return Err(bad());
                }
                data.truncate(len);
                items.push(Item {
                    key,
                    data,
                    cas,
                    oversized: false,
                });
            }
        })
    }

    fn store(&self, idx: usize, cmd: Vec<u8>, call: &Call) -> Result<Stored, McError> {
        self.exchange(idx, call, |c| {
            c.send(&cmd)?;
            match c.line()?.as_str() {
                "STORED" => Ok(Stored::Yes),
                "NOT_STORED" | "EXISTS" => Ok(Stored::Exists),
                "NOT_FOUND" => Ok(Stored::NotFound),
                other => Err(Fail::Protocol(other.to_owned())),
            }
        })
    }

    fn storage_command(
        verb: &str,
        key: &str,
        exptime: u32,
        data: &[u8],
        cas: Option<u64>,
    ) -> Vec<u8> {
        let mut cmd = Vec::with_capacity(key.len() + data.len() + 64);
        cmd.extend_from_slice(format!("{verb} {key} 0 {exptime} {}", data.len()).as_bytes());
        if let Some(cas) = cas {
            cmd.extend_from_slice(format!(" {cas}").as_bytes());
        }
        cmd.extend_from_slice(b"\r\n");
        cmd.extend_from_slice(data);
        cmd.extend_from_slice(b"\r\n");
        cmd
    }

    /// `add`: stores `data` under `key` unless the key exists.
    pub(crate) fn add(
        &self,
        idx: usize,
        key: &str,
        exptime: u32,
        data: &[u8],
        call: &Call,
    ) -> Result<Stored, McError> {
        self.store(
            idx,
            Self::storage_command("add", key, exptime, data, None),
            call,
        )
    }

    /// `cas`: replaces the item read with cas unique `cas`, unless it has
    /// changed or gone since.
    pub(crate) fn cas(
        &self,
        idx: usize,
        key: &str,
        exptime: u32,
        data: &[u8],
        cas: u64,
        call: &Call,
    ) -> Result<Stored, McError> {
        self.store(
            idx,
            Self::storage_command("cas", key, exptime, data, Some(cas)),
            call,
        )
    }

    /// `delete` of every key, pipelined in one round trip; returns how many
    /// existed.
    pub(crate) fn delete_many(
        &self,
        idx: usize,
        keys: &[&str],
        call: &Call,
    ) -> Result<usize, McError> {
        let mut cmd = Vec::with_capacity(64 * keys.len());
        for k in keys {
            cmd.extend_from_slice(b"delete ");
            cmd.extend_from_slice(k.as_bytes());
            cmd.extend_from_slice(b"\r\n");
        }
        self.exchange(idx, call, |c| {
            c.send(&cmd)?;
            let mut deleted = 0;
            for _ in keys {
                match c.line()?.as_str() {
                    "DELETED" => deleted += 1,
                    "NOT_FOUND" => {}
                    other => return Err(Fail::Protocol(other.to_owned())),
                }
            }
            Ok(deleted)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jump_hash_is_stable_and_spreads() {
        // Fixed values: a change here would split processes across servers.
        assert_eq!(fnv1a(&[b"a"]), 0xaf63_dc4c_8601_ec8c);
        let mut counts = [0usize; 3];
        for i in 0..3000 {
            counts[jump_hash(fnv1a(&[format!("k{i}").as_bytes()]), 3)] += 1;
        }
        assert!(counts.iter().all(|&c| c > 800), "{counts:?}");
        // Growing from 3 to 4 servers moves only keys to the new one.
        for i in 0..1000 {
            let h = fnv1a(&[format!("k{i}").as_bytes()]);
            let (a, b) = (jump_hash(h, 3), jump_hash(h, 4));
            assert!(a == b || b == 3);
        }
        assert_eq!(jump_hash(42, 1), 0);
    }

    #[test]
    fn unreachable_server_is_skipped_after_one_failure() {
        // A port nothing listens on: bind, learn the port, close.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .expect("a free port");
        let s = Servers::new(
            &[format!("127.0.0.1:{port}")],
            Timeouts {
                connect: Duration::from_secs(1),
                dead_retry: Duration::from_secs(3600),
            },
        );
        let call = || Call::lookup(Duration::from_secs(1));
        assert!(matches!(
            s.gets(0, &["k"], &call()),
            Err(McError::Connect { .. })
        ));
        assert!(s.gets(0, &["k"], &call()).unwrap_err().is_dead_skip());
        // An invalidation still tries it.
        assert!(matches!(
            s.delete_many(0, &["k"], &Call::invalidate(Duration::from_secs(1))),
            Err(McError::Connect { .. })
        ));
    }
}
