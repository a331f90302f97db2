//! The connect timeout (`Options::connect_timeout`): a server that accepts
//! but never answers is given up on within it, and when the server behind a
//! pool goes away every waiting caller gets the same `Error::Connection`
//! within about it, not the pool's much longer `connection_timeout`. The
//! server is reached through a small TCP relay of the test's own, which the
//! test cuts and restores (the shared servers are never touched).

use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use cell_mappings::model::ConnectionFailure;
use cell_mappings::{BackendKind, Database, Error, Options};
use mapping_testkit::{backend_tests, TestDb};

const CONNECT_TIMEOUT: Duration = Duration::from_secs(1);
/// Slack for a loaded machine; far below the pool's 30 s wait.
const MARGIN: Duration = Duration::from_secs(3);

backend_tests! {
    fn zero_connect_timeout_and_bad_wsrep_sync_wait_are_refused(t) {
        let zero = Database::open_with(t.url(), Options::default().connect_timeout(Duration::ZERO));
        assert!(
            matches!(zero, Err(Error::InvalidInput { field: "connect_timeout", .. })),
            "{zero:?}"
        );
        let bad = Database::open_with(t.url(), Options::default().wsrep_sync_wait(Some(16)));
        assert!(
            matches!(bad, Err(Error::InvalidInput { field: "wsrep_sync_wait", .. })),
            "{bad:?}"
        );
        // In range it is accepted everywhere (only MySQL sessions use it;
        // MariaDB knows the variable with or without Galera).
        let ok = Database::open_with(t.url(), Options::default().wsrep_sync_wait(Some(1)))
        .unwrap();
        ok.check_schema().unwrap();
    }
}

/// A TCP relay from a loopback port to `upstream`, which can be cut (every
/// connection closed, the port refusing) and restored on the same port.
struct Relay {
    port: u16,
    upstream: String,
    open: Arc<AtomicBool>,
    streams: Arc<Mutex<Vec<TcpStream>>>,
}

impl Relay {
    fn new(upstream: &str) -> Self {
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .unwrap()
            .port();
        let r = Self {
            port,
            upstream: upstream.to_owned(),
            open: Arc::new(AtomicBool::new(false)),
            streams: Arc::default(),
        };
        r.restore();
        r
    }

    fn restore(&self) {
        let listener = TcpListener::bind(("127.0.0.1", self.port)).unwrap();
        listener.set_nonblocking(true).unwrap();
        self.open.store(true, Ordering::SeqCst);
        let (open, streams, upstream) = (
            Arc::clone(&self.open),
            Arc::clone(&self.streams),
            self.upstream.clone(),
        );
        std::thread::spawn(move || {
            while open.load(Ordering::SeqCst) {
                match listener.accept() {
                    Ok((client, _)) => {
                        client.set_nonblocking(false).unwrap();
                        let Ok(server) = TcpStream::connect(&upstream) else {
                            continue;
                        };
                        let mut all = streams.lock().unwrap();
                        all.push(client.try_clone().unwrap());
                        all.push(server.try_clone().unwrap());
                        pipe(client.try_clone().unwrap(), server.try_clone().unwrap());
                        pipe(server, client);
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(5)),
                }
            }
            // The listener is dropped here: the port refuses connections.
        });
    }

    fn cut(&self) {
        self.open.store(false, Ordering::SeqCst);
        for s in self.streams.lock().unwrap().drain(..) {
            let _ = s.shutdown(Shutdown::Both);
        }
        // Wait until the port refuses.
        while TcpStream::connect(("127.0.0.1", self.port)).is_ok() {
            std::thread::sleep(Duration::from_millis(5));
        }
    }
}

fn pipe(mut from: TcpStream, mut to: TcpStream) {
    std::thread::spawn(move || {
        let mut buf = [0u8; 16384];
        loop {
            match from.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    if to.write_all(&buf[..n]).is_err() {
                        break;
                    }
                }
            }
        }
        let _ = to.shutdown(Shutdown::Both);
    });
}

/// `url` with its `host:port` replaced by `127.0.0.1:port`.
fn via(url: &str, port: u16) -> (String, String) {
    let (scheme, rest) = url.split_once("://").unwrap();
    let (userinfo, rest) = rest.rsplit_once('@').unwrap();
    let (hostport, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
    (
        format!("{scheme}://{userinfo}@127.0.0.1:{port}{path}"),
        hostport.to_owned(),
    )
}

/// Every caller of a pool whose server went away gets `Error::Connection`
/// within about the connect timeout; the same handle serves again once the
/// server is back.
#[cfg_attr(not(any(feature = "postgres", feature = "mysql")), allow(dead_code))]
fn callers_of_a_dead_server_all_get_a_connection_error_fast(backend: BackendKind) {
    let t = TestDb::new(backend);
    let upstream = via(t.url(), 0).1;
    let relay = Relay::new(&upstream);
    let db = Database::open_with(
        &via(t.url(), relay.port).0,
        Options::default()
            .max_connections(2)
            .connection_timeout(Duration::from_secs(30))
            .connect_timeout(CONNECT_TIMEOUT),
    )
    .unwrap();
    let cell = db.cells().create(mapping_testkit::new_cell()).unwrap();
    relay.cut();
    // More callers than connections: some wait on the pool.
    let results: Vec<(Result<(), Error>, Duration)> = std::thread::scope(|s| {
        let hs: Vec<_> = (0..6)
            .map(|i| {
                let (db, cell) = (&db, &cell);
                s.spawn(move || {
                    let start = Instant::now();
                    let r = if i % 2 == 0 {
                        db.cells().get_by_uuid(cell.uuid).map(|_| ())
                    } else {
                        db.cells().create(mapping_testkit::new_cell()).map(|_| ())
                    };
                    (r, start.elapsed())
                })
            })
            .collect();
        hs.into_iter().map(|h| h.join().unwrap()).collect()
    });
    for (r, took) in &results {
        assert!(
            matches!(r, Err(Error::Connection { .. })),
            "{backend:?}: one outage, one error kind: {r:?}"
        );
        assert!(
            *took <= CONNECT_TIMEOUT + MARGIN,
            "{backend:?}: a caller waited {took:?}"
        );
    }
    relay.restore();
    let mut last = Err(Error::PoolTimeout { waited_ms: 0 });
    for _ in 0..100 {
        last = db.cells().get_by_uuid(cell.uuid);
        if last.is_ok() {
            break;
        }
    }
    assert_eq!(last.unwrap(), cell, "{backend:?}: the handle serves again");
    db.cells().create(mapping_testkit::new_cell()).unwrap();
}

/// A server that accepts the TCP connection but never answers (a hung or
/// frozen server): opening gives up within the connect timeout.
#[cfg_attr(not(any(feature = "postgres", feature = "mysql")), allow(dead_code))]
fn a_server_that_never_answers_is_given_up_on(backend: BackendKind) {
    let t = TestDb::new(backend);
    let silent = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = silent.local_addr().unwrap().port();
    let start = Instant::now();
    let r = Database::open_with(
        &via(t.url(), port).0,
        Options::default().connect_timeout(CONNECT_TIMEOUT),
    );
    let took = start.elapsed();
    match r {
        Err(Error::Connection { source, .. }) => assert!(
            matches!(*source, ConnectionFailure::TimedOut { after } if after == CONNECT_TIMEOUT),
            "{backend:?}: {source:?}"
        ),
        other => panic!("{backend:?}: {other:?}"),
    }
    assert!(
        took >= CONNECT_TIMEOUT,
        "{backend:?}: gave up after {took:?}"
    );
    assert!(
        took <= CONNECT_TIMEOUT + MARGIN,
        "{backend:?}: took {took:?}"
    );
    drop(silent);
}

#[cfg(feature = "postgres")]
#[test]
fn callers_of_a_dead_server_all_get_a_connection_error_fast_postgres() {
    callers_of_a_dead_server_all_get_a_connection_error_fast(BackendKind::Postgres);
}

#[cfg(feature = "mysql")]
#[test]
fn callers_of_a_dead_server_all_get_a_connection_error_fast_mysql() {
    callers_of_a_dead_server_all_get_a_connection_error_fast(BackendKind::Mysql);
}

#[cfg(feature = "postgres")]
#[test]
fn a_server_that_never_answers_is_given_up_on_postgres() {
    a_server_that_never_answers_is_given_up_on(BackendKind::Postgres);
}

#[cfg(feature = "mysql")]
#[test]
fn a_server_that_never_answers_is_given_up_on_mysql() {
    a_server_that_never_answers_is_given_up_on(BackendKind::Mysql);
}
