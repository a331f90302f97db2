//! Writes whose connection is lost around the commit: a distinct
//! `Error::OutcomeUnknown`, never retried; creating the same mapping again
//! finds its own row. And the in-memory SQLite database, which never
//! silently turns into a fresh empty one.

mod support;

use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use cell_mappings::__private::{transience, Transience};
use cell_mappings::{Database, Error, NewInstanceMapping, Options};
use mapping_testkit::{new_instance, uuid};

/// A loopback TCP relay in front of a database server. Once armed, it
/// forwards the client's next `COMMIT` (or other trigger) to the server,
/// waits for the server's answer (so the statement is done), drops that
/// answer and cuts the client off: the statement ran, the client sees a lost
/// connection.
struct CommitCutter {
    port: u16,
    armed: Arc<AtomicBool>,
    trigger: Arc<std::sync::Mutex<&'static [u8]>>,
}

impl CommitCutter {
    fn start(upstream_port: u16) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind relay");
        let port = listener.local_addr().unwrap().port();
        let armed = Arc::new(AtomicBool::new(false));
        let armed2 = armed.clone();
        let trigger = Arc::new(std::sync::Mutex::new(&b"COMMIT"[..]));
        let trigger2 = trigger.clone();
        std::thread::spawn(move || {
            for client in listener.incoming() {
                let Ok(client) = client else { return };
                let Ok(server) = TcpStream::connect(("127.0.0.1", upstream_port)) else {
                    return;
                };
                let cut = Arc::new(AtomicBool::new(false));
                let (mut c_in, mut s_out) =
                    (client.try_clone().unwrap(), server.try_clone().unwrap());
                let (armed, cut2, trigger) = (armed2.clone(), cut.clone(), trigger2.clone());
                // client → server
                std::thread::spawn(move || {
                    let mut buf = vec![0u8; 64 * 1024];
                    loop {
                        let n = match c_in.read(&mut buf) {
                            Ok(0) | Err(_) => break,
                            Ok(n) => n,
                        };
                        let chunk = &buf[..n];
                        let t = *trigger.lock().unwrap();
                        if chunk.windows(t.len()).any(|w| w == t)
                            && armed.swap(false, Ordering::SeqCst)
                        {
                            cut2.store(true, Ordering::SeqCst);
                        }
                        if s_out.write_all(chunk).is_err() {
                            break;
                        }
                    }
                    let _ = s_out.shutdown(Shutdown::Write);
                });
                // server → client
                let (mut s_in, mut c_out) = (server, client);
                std::thread::spawn(move || {
                    let mut buf = vec![0u8; 64 * 1024];
                    loop {
                        let n = match s_in.read(&mut buf) {
                            Ok(0) | Err(_) => break,
                            Ok(n) => n,
                        };
                        if cut.load(Ordering::SeqCst) {
                            // The commit's answer: dropped, and the client cut off.
                            let _ = c_out.shutdown(Shutdown::Both);
                            let _ = s_in.shutdown(Shutdown::Both);
                            break;
                        }
                        if c_out.write_all(&buf[..n]).is_err() {
                            break;
                        }
                    }
                });
            }
        });
        Self {
            port,
            armed,
            trigger,
        }
    }

    fn arm(&self) {
        self.arm_on(b"COMMIT");
    }

    /// Arms the relay on the next statement that contains `trigger`.
    fn arm_on(&self, trigger: &'static [u8]) {
        *self.trigger.lock().unwrap() = trigger;
        self.armed.store(true, Ordering::SeqCst);
    }
}

fn port_of(url: &str) -> u16 {
    let after = url.rsplit_once('@').map_or(url, |(_, h)| h);
    let hostport = after.split('/').next().unwrap();
    hostport.rsplit_once(':').unwrap().1.parse().unwrap()
}

#[cfg_attr(not(any(feature = "postgres", feature = "mysql")), allow(dead_code))]
fn lost_around_the_commit(backend: cell_mappings::BackendKind) {
    let t = mapping_testkit::TestDb::new(backend);
    let cell = t.cell();

    // 1. Killed between the statement and the commit (a server-side kill
    // from another connection): OutcomeUnknown, not retried. The server
    // rolled it back, so creating it again (any content) is never refused.
    let new = new_instance("p", "u").cell(&cell);
    let before = t.stats().retries;
    let err = t
        .transaction::<_, cell_mappings::Error, _>(|tx| {
            tx.instance_mappings().create(new.clone())?;
            support::kill_server_connections(&t);
            Ok(())
        })
        .unwrap_err();
    assert!(
        matches!(err, Error::OutcomeUnknown { .. }),
        "{backend:?}: {err:?}"
    );
    assert_eq!(transience(&err), Transience::ConnectionLost);
    assert_eq!(t.stats().retries, before, "{backend:?}: retried");
    let mut other = new.clone();
    other.project_id = "q".into();
    let again = t.instance_mappings().create(other).unwrap();
    assert_eq!(again.project_id, "q");
    assert_eq!(
        t.instance_mappings()
            .get_by_instance_uuid(&new.instance_uuid)
            .unwrap(),
        again
    );

    // 2. The commit is done but its answer is lost (a relay cuts the
    // connection after the server answered the COMMIT).
    let relay = CommitCutter::start(port_of(t.url()));
    let url = t.url().replacen(
        &format!(":{}/", port_of(t.url())),
        &format!(":{}/", relay.port),
        1,
    );
    // In clear text, so that the relay sees the COMMIT.
    let url = match backend {
        cell_mappings::BackendKind::Postgres => format!("{url}?sslmode=disable"),
        _ => url,
    };
    let db = Database::open_with(&url, Options::default()).unwrap();
    // A create in a transaction whose commit answer the relay drops:
    // OutcomeUnknown, and the row as the server stored it.
    let lose_commit_answer = |new: &NewInstanceMapping| {
        relay.arm();
        let err = db
            .transaction::<_, cell_mappings::Error, _>(|tx| {
                tx.instance_mappings().create(new.clone())
            })
            .unwrap_err();
        assert!(
            matches!(err, Error::OutcomeUnknown { .. }),
            "{backend:?}: {err:?}"
        );
        t.instance_mappings()
            .get_by_instance_uuid(&new.instance_uuid)
            .expect("the commit went through")
    };
    let new = new_instance("p", "u").cell(&cell);
    let stored = lose_commit_answer(&new);
    // Different content: refused, the row is someone else's as far as
    // this request goes.
    let mut different = new.clone();
    different.user_id = "someone-else".into();
    assert!(
        matches!(
            db.instance_mappings().create(different),
            Err(Error::InstanceMappingExists { .. })
        ),
        "{backend:?}"
    );
    // The same content: its own row, as stored.
    assert_eq!(db.instance_mappings().create(new.clone()).unwrap(), stored);
    // Once resolved, a further create is an ordinary duplicate.
    assert!(matches!(
        db.instance_mappings().create(new),
        Err(Error::InstanceMappingExists { .. })
    ));

    // 3. A create on its own (not in a caller's transaction) whose commit
    // answer is lost: the library runs it again, which finds its own row.
    let new = new_instance("p", "u").cell(&cell);
    let retries = db.stats().retries;
    relay.arm();
    let created = db.instance_mappings().create(new.clone()).unwrap();
    assert_eq!(db.stats().retries, retries + 1, "{backend:?}: not re-run");
    assert_eq!(
        t.instance_mappings()
            .get_by_instance_uuid(&new.instance_uuid)
            .unwrap(),
        created
    );

    // On a MySQL server without `INSERT … RETURNING`, an unscheduled create
    // outside a transaction is the insert, committed on its own, then
    // `LAST_INSERT_ID()`: lost before the id is read, it is run again and
    // finds its own row.
    // A fresh handle: its connection prepares `LAST_INSERT_ID()` now, so
    // the statement's text crosses the relay (a cached one would not).
    if backend == cell_mappings::BackendKind::Mysql {
        let fresh = Database::open_with(&url, Options::default()).unwrap();
        cell_mappings::__private::without_insert_returning(&fresh);
        let new = new_instance("p", "u");
        relay.arm_on(b"LAST_INSERT_ID");
        let created = fresh.instance_mappings().create(new.clone()).unwrap();
        assert_eq!(fresh.stats().retries, 1, "not re-run");
        assert_eq!(
            t.instance_mappings()
                .get_by_instance_uuid(&new.instance_uuid)
                .unwrap(),
            created
        );
    }

    // 4. The row of a create of unknown outcome arrives late, as on a
    // Galera node that applies it only after a retry's read: the re-create
    // reads nothing, its insert then meets the row. It is still its own.
    let new = new_instance("p", "u").cell(&cell);
    let stored = lose_commit_answer(&new);
    t.exec(&format!(
        "DELETE FROM instance_mappings WHERE instance_uuid = '{}'",
        new.instance_uuid
    ));
    let late_insert = format!(
        "INSERT INTO instance_mappings (id, created_at, instance_uuid, cell_id, project_id, user_id, queued_for_delete) \
         VALUES ({}, '{}', '{}', {}, 'p', 'u', {})",
        stored.id,
        stored.created_at.unwrap().format("%Y-%m-%d %H:%M:%S%.6f"),
        new.instance_uuid,
        cell.id,
        t.sql_bool(false)
    );
    let holder = t.reopen(Options::default());
    let watcher = t.reopen(Options::default());
    let recreated = holder
        .with_connection(|c| {
            use diesel::connection::SimpleConnection;
            c.batch_execute(&format!("BEGIN; {late_insert}"))?;
            let recreated = std::thread::scope(|s| {
                let create = s.spawn(|| db.instance_mappings().create(new.clone()));
                // Until the re-create's insert waits on the late row.
                let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
                while lock_waits(&watcher, backend) == 0 {
                    assert!(
                        !create.is_finished(),
                        "{backend:?}: the re-create did not wait"
                    );
                    assert!(
                        std::time::Instant::now() < deadline,
                        "{backend:?}: no lock wait; sessions: {}",
                        sessions(&watcher, backend)
                    );
                    std::thread::yield_now();
                }
                c.batch_execute("COMMIT").unwrap();
                create.join().unwrap()
            });
            Ok(recreated)
        })
        .unwrap();
    assert_eq!(recreated.unwrap(), stored, "{backend:?}");
}

/// How many statements on this test database wait for a lock (on MySQL:
/// inserts into `instance_mappings` that are running).
#[cfg_attr(not(any(feature = "postgres", feature = "mysql")), allow(dead_code))]
fn lock_waits(db: &Database, backend: cell_mappings::BackendKind) -> i64 {
    use diesel::RunQueryDsl;
    #[derive(diesel::QueryableByName)]
    struct N {
        #[diesel(sql_type = diesel::sql_types::BigInt)]
        n: i64,
    }
    let sql = match backend {
        cell_mappings::BackendKind::Postgres => {
            "SELECT CAST(count(*) AS BIGINT) AS n FROM pg_locks l \
             JOIN pg_stat_activity a ON a.pid = l.pid \
             WHERE NOT l.granted AND a.datname = current_database()"
        }
        _ => {
            // Not information_schema.innodb_trx: InnoDB refreshes it only
            // when it was not read for 100 ms, so a poll never sees a change.
            // An insert into the table that is running can only be waiting
            // on the held row (or about to meet it).
            "SELECT CAST(count(*) AS SIGNED) AS n FROM information_schema.processlist \
             WHERE db = DATABASE() AND id <> CONNECTION_ID() AND command = 'Execute' \
             AND info LIKE 'INSERT INTO `instance_mappings`%'"
        }
    };
    db.with_connection(|c| {
        diesel::sql_query(sql)
            .get_result::<N>(c)
            .map_err(Error::from)
    })
    .unwrap()
    .n
}

#[cfg(feature = "postgres")]
#[test]
fn lost_around_the_commit_postgres() {
    lost_around_the_commit(cell_mappings::BackendKind::Postgres);
}

#[cfg(feature = "mysql")]
#[test]
fn lost_around_the_commit_mysql() {
    lost_around_the_commit(cell_mappings::BackendKind::Mysql);
}

/// A panic inside `db.transaction`, a failed transaction, and connections
/// dropped by the caller's errors: the in-memory database keeps its data.
#[test]
fn in_memory_sqlite_survives_panics_and_errors() {
    let db = Database::open("sqlite://").unwrap();
    db.migrate().unwrap();
    let kept = db
        .instance_mappings()
        .create(NewInstanceMapping::new(uuid(), "p", "u"))
        .unwrap();
    for _ in 0..3 {
        let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            db.transaction(|tx| -> cell_mappings::Result<()> {
                tx.instance_mappings()
                    .create(NewInstanceMapping::new(uuid(), "p", "u"))?;
                panic!("caller's closure panics mid-transaction");
            })
        }));
        assert!(r.is_err());
        // Committed rows are still there; the panicked one was rolled back.
        assert_eq!(
            db.instance_mappings().get_by_project_id("p").unwrap(),
            vec![kept.clone()]
        );
    }
    // A transaction that fails, and a raw connection error.
    let err = db
        .transaction::<_, cell_mappings::Error, _>(|tx| {
            tx.instance_mappings()
                .create(NewInstanceMapping::new(uuid(), "p", "u"))?;
            tx.instance_mappings().create(NewInstanceMapping::new(
                kept.instance_uuid.clone(),
                "p",
                "u",
            ))
        })
        .unwrap_err();
    assert!(matches!(err, Error::InstanceMappingExists { .. }));
    let _ = db.with_connection(|c| {
        use diesel::connection::SimpleConnection;
        c.batch_execute("SELECT * FROM no_such_table")
            .map_err(Error::from)
    });
    assert_eq!(
        db.instance_mappings().get_by_project_id("p").unwrap(),
        vec![kept]
    );
}

/// What every session of the server is doing (for a failure message).
#[cfg_attr(not(any(feature = "postgres", feature = "mysql")), allow(dead_code))]
fn sessions(db: &Database, backend: cell_mappings::BackendKind) -> String {
    use diesel::RunQueryDsl;
    #[derive(diesel::QueryableByName)]
    struct S {
        #[diesel(sql_type = diesel::sql_types::Nullable<diesel::sql_types::Text>)]
        s: Option<String>,
    }
    let sql = match backend {
        cell_mappings::BackendKind::Postgres => {
            "SELECT concat_ws(' | ', pid::text, datname, state, wait_event_type, wait_event, query) AS s \
             FROM pg_stat_activity"
        }
        _ => {
            "SELECT CONCAT_WS(' | ', id, db, command, state, info) AS s \
             FROM information_schema.processlist"
        }
    };
    db.with_connection(|c| diesel::sql_query(sql).load::<S>(c).map_err(Error::from))
        .map(|rows| {
            rows.into_iter()
                .map(|r| r.s.unwrap_or_default())
                .collect::<Vec<_>>()
                .join("\n")
        })
        .unwrap_or_else(|e| e.to_string())
}
