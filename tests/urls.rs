//! Opening databases through every URL form of `ConnectionUrl` that users have in
//! `nova.conf`, on every backend compiled in; SQLite connection settings.

use cell_mappings::{BackendKind, Database, Error, UrlError};
use diesel::prelude::*;
use diesel::sql_types::Text;
use mapping_testkit::{admin_url, compiled_backends, TestDb};

#[derive(QueryableByName)]
struct Pragma {
    #[diesel(sql_type = Text)]
    v: String,
}

fn pragma(db: &Database, name: &str) -> String {
    // The busy_timeout pragma's one column is called `timeout`.
    let column = if name == "busy_timeout" {
        "timeout"
    } else {
        name
    };
    db.with_connection(|c| {
        diesel::sql_query(format!(
            "SELECT CAST({column} AS TEXT) AS v FROM pragma_{name}"
        ))
        .get_result::<Pragma>(c)
        .map(|p| p.v)
        .map_err(Error::from)
    })
    .unwrap()
}

#[test]
fn sqlite_file_connections_use_wal_foreign_keys_and_busy_timeout() {
    let t = TestDb::new(BackendKind::Sqlite);
    assert_eq!(pragma(&t, "journal_mode"), "wal");
    assert_eq!(pragma(&t, "foreign_keys"), "1");
    assert_eq!(pragma(&t, "busy_timeout"), "5000");
}

#[test]
fn sqlite_memory_enforces_foreign_keys_and_keeps_one_database() {
    let db = Database::open("sqlite://").unwrap();
    db.migrate().unwrap();
    assert_eq!(pragma(&db, "foreign_keys"), "1");
    // The pool must hand out the same in-memory database every time.
    for _ in 0..3 {
        assert!(db.cells().get_all().unwrap().is_empty());
    }
}

#[test]
fn sqlite_url_forms_open_the_same_file() {
    let dir = std::env::temp_dir().join(format!("mapping_urls_{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("nova_api.sqlite");
    let abs = format!("sqlite:///{}", file.display()); // sqlite:////tmp/...
    assert!(abs.starts_with("sqlite:////"));
    let db = Database::open(&abs).unwrap();
    db.migrate().unwrap();
    let cell = db.cells().create(mapping_testkit::new_cell()).unwrap();
    drop(db);
    let pysqlite = format!(
        "sqlite+pysqlite:///{}?check_same_thread=false",
        file.display()
    );
    for url in [abs.clone(), pysqlite, file.display().to_string()] {
        let db = Database::open(&url).unwrap_or_else(|e| panic!("{url}: {e}"));
        assert_eq!(db.cells().get_by_uuid(cell.uuid).unwrap(), cell, "{url}");
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

/// The SQLAlchemy spelling of a server URL, as found in nova.conf.
fn sqlalchemy_form(backend: BackendKind, url: &str) -> Vec<String> {
    let rest = url.split_once("://").map(|(_, r)| r).unwrap_or(url);
    match backend {
        BackendKind::Postgres => vec![
            format!("postgresql+psycopg2://{rest}"),
            format!("postgresql://{rest}"),
            format!("postgres://{rest}"),
        ],
        BackendKind::Mysql => vec![
            format!("mysql+pymysql://{rest}?charset=utf8"),
            format!("mysql+pymysql://{rest}?charset=utf8mb4&plugin=dbcounter"),
            format!("mysql://{rest}"),
        ],
        BackendKind::Sqlite => vec![],
    }
}

#[test]
fn server_url_forms_reach_the_same_database() {
    for &backend in compiled_backends() {
        if backend == BackendKind::Sqlite {
            continue;
        }
        let t = TestDb::new(backend);
        let cell = t.cell();
        for url in sqlalchemy_form(backend, t.url()) {
            let db = Database::open(&url).unwrap_or_else(|e| panic!("{backend:?} {url}: {e}"));
            assert_eq!(db.backend(), backend);
            assert_eq!(db.cells().get_by_uuid(cell.uuid).unwrap(), cell, "{url}");
        }
    }
}

#[test]
fn bad_urls_are_refused_without_the_password() {
    for url in [
        "oracle://nova:s3cr3t@db/nova_api",
        "mysql+pymysql://nova:s3cr3t@db:notaport/nova_api",
        "",
    ] {
        let err = Database::open(url).unwrap_err();
        assert!(matches!(err, Error::Url(_)), "{url}: {err:?}");
        assert!(!err.to_string().contains("s3cr3t"), "{err}");
        assert!(!format!("{err:?}").contains("s3cr3t"), "{err:?}");
        // The typed cause is kept, and it holds no password either.
        let cause = std::error::Error::source(&err).expect("a source");
        let typed = cause
            .downcast_ref::<UrlError>()
            .expect("the source is a UrlError");
        assert_eq!(
            Some(typed),
            cell_mappings::ConnectionUrl::parse(url).err().as_ref()
        );
        assert!(!chain(&err).contains("s3cr3t"), "{}", chain(&err));
        assert!(!format!("{typed:?}").contains("s3cr3t"), "{typed:?}");
    }
}

/// The error and its causes, each on its own line.
fn chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        out.push('\n');
        out.push_str(&c.to_string());
        cur = c.source();
    }
    out
}

#[test]
fn migration_errors_keep_their_cause_without_the_password() {
    for &backend in compiled_backends() {
        let t = TestDb::new(backend);
        // diesel's migrations table, but not as diesel makes it: reading the
        // applied migrations fails in diesel's harness.
        t.exec("DROP TABLE __diesel_schema_migrations");
        t.exec("CREATE TABLE __diesel_schema_migrations (not_a_version INTEGER)");
        // The URL with a password, even where the server does not ask for one.
        let url = with_password(backend, t.url());
        let db = Database::open(&url).unwrap_or_else(|e| panic!("{backend:?}: {e}"));
        let err = db.applied_migrations().unwrap_err();
        let Error::Migration { ref reason, .. } = err else {
            panic!("{backend:?}: expected a migration error, got {err:?}")
        };
        assert!(reason.contains("applied migrations"), "{reason}");
        let cause =
            std::error::Error::source(&err).expect("the harness error is kept as the source");
        assert!(!cause.to_string().is_empty());
        for shown in [err.to_string(), format!("{err:?}"), chain(&err)] {
            assert!(!shown.contains("s3cr3t"), "{backend:?}: {shown}");
        }
        // A refusal has a reason and no cause.
        let refused = Error::migration_refused("no");
        assert!(std::error::Error::source(&refused).is_none());
    }
}

/// `url` with the user `postgres` given the password `s3cr3t` on
/// PostgreSQL (the test server trusts local connections, so it is not
/// checked); the MariaDB server checks it and SQLite has none, so their
/// URLs are returned as they are.
fn with_password(backend: BackendKind, url: &str) -> String {
    match backend {
        BackendKind::Postgres => {
            let (scheme, rest) = url.split_once("://").unwrap();
            let rest = rest.rsplit_once('@').map_or(rest, |(_, host)| host);
            format!("{scheme}://postgres:s3cr3t@{rest}")
        }
        _ => url.to_owned(),
    }
}

#[test]
fn unreachable_server_is_a_connection_error_without_the_password() {
    let mut urls = vec![];
    if compiled_backends().contains(&BackendKind::Postgres) {
        urls.push("postgresql+psycopg2://nova:s3cr3t@127.0.0.1:1/nova_api");
    }
    if compiled_backends().contains(&BackendKind::Mysql) {
        urls.push("mysql+pymysql://nova:s3cr3t@127.0.0.1:1/nova_api?charset=utf8");
    }
    urls.push("sqlite:////nonexistent-dir/for/sure/nova_api.sqlite");
    for url in urls {
        let err = Database::open(url).unwrap_err();
        assert!(matches!(err, Error::Connection { .. }), "{url}: {err:?}");
        assert!(!err.to_string().contains("s3cr3t"), "{err}");
        assert!(!format!("{err:?}").contains("s3cr3t"), "{err:?}");
    }
}

#[test]
fn wrong_password_message_is_redacted() {
    for &backend in compiled_backends() {
        let Some(admin) = admin_url(backend) else {
            continue;
        };
        let rest = admin.split_once("://").map(|(_, r)| r).unwrap();
        let (_, host_db) = rest.rsplit_once('@').unwrap();
        let scheme = if backend == BackendKind::Postgres {
            "postgres"
        } else {
            "mysql"
        };
        let url = format!("{scheme}://no_such_user_x:s3cr3t@{host_db}");
        match Database::open(&url) {
            Err(err) => {
                assert!(!err.to_string().contains("s3cr3t"), "{err}");
                assert!(!format!("{err:?}").contains("s3cr3t"), "{err:?}");
            }
            Ok(db) => panic!("{backend:?}: unknown user was let in: {db:?}"),
        }
    }
}

/// `mysql+pymysql://…@localhost:PORT` reaches the server on PORT over TCP,
/// as PyMySQL does; plain `mysql://…@localhost:PORT` keeps
/// libmysqlclient's reading and takes the local server's socket. Two
/// servers: the local MariaDB on its socket, and a listener on another
/// loopback port that counts the connections it accepts (and never answers).
#[cfg(feature = "mysql")]
#[test]
fn pymysql_localhost_reaches_the_port_not_the_socket() {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;
    use std::time::Duration;

    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let accepted = Arc::new(AtomicUsize::new(0));
    let count = Arc::clone(&accepted);
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for s in listener.incoming().flatten() {
            count.fetch_add(1, Ordering::SeqCst);
            held.push(s);
        }
    });
    let short = cell_mappings::Options::default()
        .connection_timeout(Duration::from_secs(2))
        .connect_timeout(Duration::from_secs(1));

    // PyMySQL's URL: the listener on the port is reached (and the open fails,
    // since it never answers).
    let r = Database::open_with(
        &format!("mysql+pymysql://root@localhost:{port}/test"),
        short.clone(),
    );
    assert!(r.is_err(), "the silent listener cannot have answered");
    assert!(
        accepted.load(Ordering::SeqCst) >= 1,
        "PyMySQL's localhost must be TCP to port {port}"
    );

    // libmysqlclient's URL: the local server's socket, whatever the port.
    let before = accepted.load(Ordering::SeqCst);
    match Database::open_with(&format!("mysql://root@localhost:{port}/test"), short) {
        Ok(db) => assert_eq!(db.backend(), BackendKind::Mysql),
        Err(e) => panic!(
            "\n*** the local MariaDB's socket did not answer for mysql://root@localhost: {e}\n\
             *** (scripts/services.sh starts MariaDB with its default socket)\n"
        ),
    }
    assert_eq!(
        accepted.load(Ordering::SeqCst),
        before,
        "mysql:// localhost must use the socket"
    );
}
