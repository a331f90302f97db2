//! Server failures: a database that is down, connections killed by the
//! server mid-run, a database that disappears and comes back, and a pool
//! with no free connection. Every failure is a typed error, nothing panics,
//! and no password ever shows.

mod support;

use std::time::Duration;

use cell_mappings::__private::{transience, Transience};
use cell_mappings::{Database, Error, Options};
use mapping_testkit::{compiled_backends, new_instance, TestDb};

const PASSWORD: &str = "Sup3rS3cretPw";

/// Asserts that `err` is `Error::Connection` and that neither its Display nor
/// its Debug holds the password (raw or percent-decoded).
#[track_caller]
fn assert_connection_error_without_password(url: &str, err: &Error) {
    assert!(matches!(err, Error::Connection { .. }), "{url}: {err:?}");
    for shown in [err.to_string(), format!("{err:?}")] {
        for secret in [PASSWORD, "S3cret", "p@ss"] {
            assert!(
                !shown.contains(secret),
                "{url}: the password leaked: {shown}"
            );
        }
    }
}

#[test]
fn opening_a_database_that_is_down_is_a_connection_error_without_password() {
    let urls = [
        format!("postgresql+psycopg2://nova:{PASSWORD}@127.0.0.1:1/nova_api"),
        format!("postgres://nova:{PASSWORD}@127.0.0.1:1/nova_api?sslmode=disable"),
        "postgres://nova:p%40ss%2FS3cret@127.0.0.1:1/nova_api".to_owned(),
        format!("mysql+pymysql://nova:{PASSWORD}@127.0.0.1:1/nova_api?charset=utf8"),
        format!("mysql://nova:{PASSWORD}@127.0.0.1:1/nova_api"),
        "mysql://nova:p%40ss%2FS3cret@127.0.0.1:1/nova_api".to_owned(),
        "sqlite:////nonexistent-directory-for-tests/sub/nova_api.sqlite".to_owned(),
    ];
    for url in &urls {
        let err = Database::open(url).expect_err(url);
        assert_connection_error_without_password(url, &err);
        if let Error::Connection { url: shown, .. } = &err {
            if url.contains('@') {
                assert!(
                    shown.contains("***"),
                    "{url}: the URL is not shown redacted: {shown}"
                );
            }
        }
    }
}

#[test]
fn odd_options_are_refused_or_clamped_never_a_panic() {
    let err = Database::open_with(
        "sqlite://",
        Options::default().connection_timeout(Duration::ZERO),
    )
    .unwrap_err();
    assert!(
        matches!(
            err,
            Error::InvalidInput {
                field: "connection_timeout",
                ..
            }
        ),
        "{err:?}"
    );
    for &backend in compiled_backends() {
        let t = TestDb::with_options(
            backend,
            // Clamped: 0 connections counts as 1, the busy timeout is cut to
            // i32::MAX ms, 0 attempts counts as 1.
            Options::default()
                .max_connections(0)
                .sqlite_busy_timeout(Duration::MAX)
                .retry(cell_mappings::RetryPolicy {
                    max_attempts: 0,
                    base_delay: Duration::from_secs(3600),
                    max_delay: Duration::from_secs(3600),
                }),
        );
        let cell = t.cell();
        assert_eq!(t.cells().get_all().unwrap(), vec![cell], "{backend:?}");
    }
    let p = cell_mappings::RetryPolicy {
        max_attempts: 3,
        base_delay: Duration::MAX,
        max_delay: Duration::MAX,
    };
    for retry in [0, 1, 2, 64, u32::MAX] {
        assert!(p.delay(retry) <= Duration::MAX);
    }
    // Refused when opening, naming the option: values that would make a
    // later call panic, overflow or abort the process.
    let huge_cache = cell_mappings::CacheOptions {
        capacity: usize::MAX,
        ttl: Duration::from_secs(1),
    };
    let forever_cache = cell_mappings::CacheOptions {
        capacity: 10,
        ttl: Duration::MAX,
    };
    let forever = cell_mappings::RetryPolicy {
        max_delay: Duration::MAX,
        ..cell_mappings::RetryPolicy::default()
    };
    for (options, field) in [
        (
            Options::default().connection_timeout(Duration::MAX),
            "connection_timeout",
        ),
        (
            Options::default().max_connections(u32::MAX),
            "max_connections",
        ),
        (Options::default().cache(Some(huge_cache)), "cache.capacity"),
        (Options::default().cache(Some(forever_cache)), "cache.ttl"),
        (Options::default().retry(forever), "retry.max_delay"),
        (
            Options::default().sqlite_mmap_size(u64::MAX),
            "sqlite_mmap_size",
        ),
    ] {
        for &backend in compiled_backends() {
            let url = match mapping_testkit::admin_url(backend) {
                Some(url) => url,
                None => "sqlite://".to_owned(),
            };
            match Database::open_with(&url, options.clone()) {
                Err(Error::InvalidInput { field: got, .. }) => assert_eq!(got, field),
                other => panic!("{field} on {backend:?}: {other:?}"),
            }
        }
    }
}

#[test]
fn a_pool_with_no_free_connection_times_out() {
    for &backend in compiled_backends() {
        let t = TestDb::with_options(
            backend,
            Options::default()
                .max_connections(1)
                .connection_timeout(Duration::from_millis(250)),
        );
        let cell = t.cell();
        // The open transaction holds the only connection; a call on the pool
        // waits for it, up to the timeout.
        let err = t
            .transaction::<_, cell_mappings::Error, _>(|tx| {
                tx.cells().get_by_uuid(cell.uuid)?;
                Ok(t.cells().get_all().unwrap_err())
            })
            .unwrap();
        match err {
            Error::PoolTimeout { waited_ms } => {
                assert!(waited_ms >= 250, "{backend:?}: waited only {waited_ms} ms")
            }
            other => panic!("{backend:?}: expected PoolTimeout, got {other:?}"),
        }
        // Once the transaction is over the pool serves again.
        assert_eq!(t.cells().get_all().unwrap(), vec![cell], "{backend:?}");
    }
}

/// Kills the test database's server-side connections (the shared server
/// keeps running): idle pooled connections are replaced transparently, a
/// transaction whose connection dies fails with a typed error, and the pool
/// serves again afterwards.
#[cfg_attr(not(any(feature = "postgres", feature = "mysql")), allow(dead_code))]
fn killed_connections_are_survived(backend: cell_mappings::BackendKind) {
    let t = TestDb::new(backend);
    let cell = t.cell();
    let im = t.instance(Some(&cell), "p", "u");
    // Several pooled connections, all idle.
    std::thread::scope(|s| {
        for _ in 0..4 {
            s.spawn(|| t.cells().get_all().unwrap());
        }
    });

    // 1. Idle connections killed: the next calls reconnect and succeed.
    assert!(support::kill_server_connections(&t) >= 1);
    assert_eq!(t.cells().get_by_uuid(cell.uuid).unwrap(), cell);
    assert_eq!(
        t.instance_mappings()
            .get_by_instance_uuid(&im.instance_uuid)
            .unwrap(),
        im
    );
    support::kill_server_connections(&t);
    t.instance_mappings()
        .create(new_instance("p", "u"))
        .unwrap();

    // 2. The connection of an open transaction is killed before its commit:
    // the server rolled it back, so the transaction is run again on a fresh
    // connection and succeeds once; nothing is written twice.
    let before = t.stats().retries;
    let killed = std::cell::Cell::new(false);
    t.transaction::<_, cell_mappings::Error, _>(|tx| {
        tx.cells().get_all()?;
        if !killed.replace(true) {
            support::kill_server_connections(&t);
        }
        tx.instance_mappings().create(new_instance("p", "u"))?;
        Ok(())
    })
    .unwrap();
    assert!(
        t.stats().retries > before,
        "{backend:?}: the rolled-back transaction was not retried"
    );

    // 2b. With retries off, the same failure is a typed "connection lost"
    // error (not OutcomeUnknown: the commit was never sent), no panic.
    let no_retry = t.reopen(Options::default().retry(cell_mappings::RetryPolicy::never()));
    let err = no_retry
        .transaction::<_, cell_mappings::Error, _>(|tx| {
            tx.cells().get_all()?;
            support::kill_server_connections(&t);
            tx.instance_mappings().create(new_instance("p", "u"))?;
            Ok(())
        })
        .unwrap_err();
    assert!(
        matches!(err, Error::Database { .. }),
        "{backend:?}: {err:?}"
    );
    assert_eq!(
        transience(&err),
        Transience::ConnectionLost,
        "{backend:?}: {err:?}"
    );

    // 3. Subsequent calls succeed on fresh connections.
    assert_eq!(t.cells().get_all().unwrap(), vec![cell.clone()]);
    assert_eq!(
        t.instance_mappings().get_by_project_id("p").unwrap().len(),
        3
    );
    t.instance_mappings()
        .create(new_instance("p", "u"))
        .unwrap();
}

/// The database disappears (connections killed, database dropped) and comes
/// back: meanwhile calls fail fast with `Error::Connection`, then the same
/// handle serves again.
#[cfg_attr(not(any(feature = "postgres", feature = "mysql")), allow(dead_code))]
fn database_that_comes_back_is_served_again(backend: cell_mappings::BackendKind) {
    let t = TestDb::with_options(
        backend,
        Options::default().connection_timeout(Duration::from_millis(500)),
    );
    let cell = t.cell();
    let name = support::database_name(&t);
    let admin = Database::open(&mapping_testkit::admin_url(backend).unwrap()).unwrap();
    let admin_exec = |sql: &str| {
        admin
            .with_connection(|c| {
                use diesel::connection::SimpleConnection;
                c.batch_execute(sql).map_err(Error::from)
            })
            .unwrap_or_else(|e| panic!("{sql}: {e}"))
    };
    support::kill_server_connections(&t);
    admin_exec(&match backend {
        cell_mappings::BackendKind::Postgres => format!("DROP DATABASE {name} WITH (FORCE)"),
        _ => format!("DROP DATABASE {name}"),
    });
    for _ in 0..2 {
        let err = t.cells().get_by_uuid(cell.uuid).unwrap_err();
        assert!(
            matches!(err, Error::Connection { .. }),
            "{backend:?}: {err:?}"
        );
    }
    admin_exec(&format!("CREATE DATABASE {name}"));
    t.migrate().unwrap();
    let again = t.cells().create(mapping_testkit::new_cell()).unwrap();
    assert_eq!(t.cells().get_all().unwrap(), vec![again]);
}

#[cfg(feature = "postgres")]
#[test]
fn killed_connections_are_survived_postgres() {
    killed_connections_are_survived(cell_mappings::BackendKind::Postgres);
}

#[cfg(feature = "mysql")]
#[test]
fn killed_connections_are_survived_mysql() {
    killed_connections_are_survived(cell_mappings::BackendKind::Mysql);
}

#[cfg(feature = "postgres")]
#[test]
fn database_that_comes_back_is_served_again_postgres() {
    database_that_comes_back_is_served_again(cell_mappings::BackendKind::Postgres);
}

#[cfg(feature = "mysql")]
#[test]
fn database_that_comes_back_is_served_again_mysql() {
    database_that_comes_back_is_served_again(cell_mappings::BackendKind::Mysql);
}
