//! Servers that answer in German: failures are still recognised by their
//! code. PostgreSQL: the test database's `lc_messages` is set to German
//! (`ALTER DATABASE … SET lc_messages`); the library's sessions pin `C` when
//! they open. MariaDB: each pooled session is switched to German
//! (`SET SESSION lc_messages = 'de_DE'`) after it opened, overriding the
//! pin. In both, a forced deadlock is retried and a killed connection is
//! detected (reads and transactions go on, on fresh connections).
//! The German locale comes from `scripts/locales.sh`.
#![cfg(any(feature = "postgres", feature = "mysql"))]

mod support;

use std::sync::{Arc, Barrier};

use cell_mappings::{
    BackendKind, Database, Error, InstanceMapping, InstanceMappingUpdate, Options,
};
use diesel::connection::SimpleConnection;
use diesel::prelude::*;
use mapping_testkit::{new_instance, TestDb};

#[derive(QueryableByName)]
struct Text {
    #[diesel(sql_type = diesel::sql_types::Text)]
    v: String,
}

/// Two transactions update two mappings in opposite order, lined up by a
/// barrier on their first attempt: the server aborts one as a deadlock.
fn deadlock(db: &Database, a: &InstanceMapping, b: &InstanceMapping) {
    let barrier = Arc::new(Barrier::new(2));
    let before = db.stats().retries;
    std::thread::scope(|s| {
        let handles: Vec<_> = (0..2)
            .map(|i| {
                let barrier = barrier.clone();
                s.spawn(move || {
                    let (first, second) = if i == 0 { (a, b) } else { (b, a) };
                    let update = InstanceMappingUpdate::new().project_id(format!("t{i}"));
                    let mut lined_up = false;
                    db.transaction::<_, cell_mappings::Error, _>(|tx| {
                        tx.instance_mappings().save(first, &update)?;
                        if !lined_up {
                            lined_up = true;
                            barrier.wait();
                        }
                        tx.instance_mappings().save(second, &update)?;
                        Ok(())
                    })
                })
            })
            .collect();
        for h in handles {
            h.join()
                .expect("no panic")
                .expect("the deadlocked transaction was retried and succeeded");
        }
    });
    assert!(db.stats().retries > before, "the deadlock was not retried");
}

/// Kills the test database's sessions: a read goes on (retried), and a
/// transaction whose connection is killed before its commit is retried.
fn killed_connection_is_detected(t: &TestDb, db: &Database, im: &InstanceMapping) {
    support::kill_server_connections(t);
    assert_eq!(
        db.instance_mappings()
            .get_by_instance_uuid(&im.instance_uuid)
            .unwrap()
            .instance_uuid,
        im.instance_uuid
    );
    let before = db.stats().retries;
    let killed = std::cell::Cell::new(false);
    let created = db
        .transaction::<_, cell_mappings::Error, _>(|tx| {
            tx.cells().get_all()?;
            if !killed.replace(true) {
                support::kill_server_connections(t);
            }
            tx.instance_mappings().create(new_instance("p", "u"))
        })
        .unwrap();
    assert!(
        db.stats().retries > before,
        "the lost connection was not retried"
    );
    assert_eq!(
        db.instance_mappings()
            .get_by_instance_uuid(&created.instance_uuid)
            .unwrap(),
        created
    );
}

#[cfg(feature = "postgres")]
#[test]
fn postgres_in_german_still_retries_deadlocks_and_detects_killed_connections() {
    let t = TestDb::new(BackendKind::Postgres);
    let name = support::database_name(&t);
    t.exec(&format!(
        "ALTER DATABASE {name} SET lc_messages = 'de_DE.UTF-8'"
    ));
    // A session that does not pin its language answers in German: the test
    // would fail if the library matched English text.
    let mut raw = diesel::PgConnection::establish(t.url()).expect("raw connection");
    let err = raw.batch_execute("SELECT 1/0").unwrap_err().to_string();
    assert!(
        err.contains("Division durch Null"),
        "PostgreSQL does not answer in German (run scripts/locales.sh): {err}"
    );
    let db = t.reopen(Options::default());
    let a = t.instance(None, "p", "u");
    let b = t.instance(None, "p", "u");
    deadlock(&db, &a, &b);
    killed_connection_is_detected(&t, &db, &a);
}

#[cfg(feature = "mysql")]
#[test]
fn mariadb_in_german_still_retries_deadlocks_and_detects_killed_connections() {
    let t = TestDb::new(BackendKind::Mysql);
    let db = t.reopen(Options::default().max_connections(2));
    // Both pooled sessions (held at once, so they are two) switch to German.
    let german = |c: &mut cell_mappings::DbConnection| -> cell_mappings::Result<String> {
        c.batch_execute("SET SESSION lc_messages = 'de_DE'")
            .map_err(Error::from)?;
        let e = c.batch_execute("SELECT * FROM no_such_table").unwrap_err();
        Ok(e.to_string())
    };
    let messages = db
        .with_connection(|c1| {
            let m1 = german(c1)?;
            let m2 = db.with_connection(german)?;
            Ok([m1, m2])
        })
        .unwrap();
    for m in &messages {
        assert!(
            m.contains("existiert nicht"),
            "MariaDB does not answer in German: {m}"
        );
    }
    let lc = db
        .with_connection(|c| {
            diesel::sql_query("SELECT @@session.lc_messages AS v")
                .get_result::<Text>(c)
                .map_err(Error::from)
        })
        .unwrap();
    assert_eq!(lc.v, "de_DE");
    let a = t.instance(None, "p", "u");
    let b = t.instance(None, "p", "u");
    deadlock(&db, &a, &b);
    killed_connection_is_detected(&t, &db, &a);
}

/// Runs its SQL on the test database when dropped (a role or user the test
/// made is dropped even when the test fails).
struct OnDrop<'a>(&'a TestDb, String);

impl Drop for OnDrop<'_> {
    fn drop(&mut self) {
        let _ = self
            .0
            .with_connection(|c| c.batch_execute(&self.1).map_err(Error::from));
    }
}

/// `url` with its user information replaced by `user`.
fn with_user(url: &str, user: &str) -> String {
    let (scheme, rest) = url.split_once("://").expect("a server URL");
    let host = rest.rsplit_once('@').map_or(rest, |(_, host)| host);
    format!("{scheme}://{user}@{host}")
}

/// Runs `save` of `im` on `db` while another session holds the row's lock,
/// and releases the lock once the library has retried at least once: the
/// lock timeout was recognised as transient and the save went through.
fn lock_timeout_is_retried(
    db: &Database,
    im: &InstanceMapping,
    hold: impl FnOnce() -> Box<dyn FnOnce() + Send>,
) {
    let before = db.stats().retries;
    let release = hold();
    std::thread::scope(|s| {
        let saver = s.spawn(|| {
            db.instance_mappings().save(
                im,
                &InstanceMappingUpdate::new().project_id("after-the-lock"),
            )
        });
        let start = std::time::Instant::now();
        while db.stats().retries == before {
            assert!(
                start.elapsed() < std::time::Duration::from_secs(60),
                "the lock timeout was never retried"
            );
            if saver.is_finished() {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        release();
        let saved = saver.join().expect("no panic");
        let saved = saved.expect("the save was retried after the lock timeout and succeeded");
        assert_eq!(saved.project_id, "after-the-lock");
    });
    assert!(
        db.stats().retries > before,
        "the lock timeout was not retried"
    );
}

/// Locks the mapping row `id` in a transaction of a session of its own
/// (the test's superuser); returns once it is held, with what releases it.
fn row_lock(t: &TestDb, id: i32) -> Box<dyn FnOnce() + Send> {
    let holder = t.reopen(Options::default().max_connections(1));
    let (locked_tx, locked_rx) = std::sync::mpsc::channel();
    let (release_tx, release_rx) = std::sync::mpsc::channel::<()>();
    let h = std::thread::spawn(move || {
        holder.with_connection(|c| {
            c.batch_execute(&format!(
                "BEGIN; SELECT 1 FROM instance_mappings WHERE id = {id} FOR UPDATE"
            ))
            .map_err(Error::from)?;
            locked_tx.send(()).unwrap_or(());
            let _ = release_rx.recv();
            c.batch_execute("ROLLBACK").map_err(Error::from)
        })
    });
    locked_rx.recv().expect("the row lock was taken");
    Box::new(move || {
        release_tx.send(()).unwrap_or(());
        h.join().expect("lock holder").expect("rollback");
    })
}

/// PostgreSQL answering in German to a role that is not a superuser (as
/// Nova's `nova` role): the role may not pin `lc_messages`, so failures
/// must be told by their SQLSTATE. A deadlock (40P01, found after the
/// server's 1 s `deadlock_timeout`, before the role's 2 s `lock_timeout`)
/// and a lock timeout (55P03) are both retried.
#[cfg(feature = "postgres")]
#[test]
fn postgres_in_german_for_a_role_that_is_not_a_superuser() {
    let t = TestDb::new(BackendKind::Postgres);
    let name = support::database_name(&t);
    let role = format!("nova_{}", &uuid::Uuid::new_v4().simple().to_string()[..12]);
    t.exec(&format!("CREATE ROLE {role} LOGIN NOSUPERUSER"));
    let _cleanup = OnDrop(&t, format!("DROP OWNED BY {role}; DROP ROLE {role}"));
    t.exec(&format!(
        "GRANT ALL ON ALL TABLES IN SCHEMA public TO {role}; \
         GRANT ALL ON ALL SEQUENCES IN SCHEMA public TO {role}; \
         ALTER ROLE {role} IN DATABASE {name} SET lc_messages = 'de_DE.UTF-8'; \
         ALTER ROLE {role} IN DATABASE {name} SET lock_timeout = '2s'"
    ));
    let db = Database::open_with(&with_user(t.url(), &role), Options::default()).unwrap();
    let (lc, refused) = db
        .with_connection(|c| {
            let refused = c.batch_execute("SET lc_messages TO 'C'").unwrap_err();
            let lc = diesel::sql_query("SELECT current_setting('lc_messages') AS v")
                .get_result::<Text>(c)
                .map_err(Error::from)?;
            Ok((lc.v, refused.to_string()))
        })
        .unwrap();
    assert_eq!(lc, "de_DE.UTF-8", "the role's sessions answer in German");
    assert!(
        refused.contains("Berechtigung") || refused.contains("verweigert"),
        "the role may not change lc_messages (and is told so in German): {refused}"
    );
    let a = t.instance(None, "p", "u");
    let b = t.instance(None, "p", "u");
    deadlock(&db, &a, &b);
    lock_timeout_is_retried(&db, &a, || row_lock(&t, a.id));
}

/// MariaDB for a user that is not root: its sessions pin English messages
/// (any user may), so a lock-wait timeout (1205, SQLSTATE HY000, told by its
/// text) is retried; a deadlock (SQLSTATE 40001) would be in any language.
#[cfg(feature = "mysql")]
#[test]
fn mariadb_lock_wait_timeout_is_retried_for_a_user_that_is_not_root() {
    let t = TestDb::new(BackendKind::Mysql);
    let name = support::database_name(&t);
    let user = format!("nova_{}", &uuid::Uuid::new_v4().simple().to_string()[..12]);
    t.exec(&format!("CREATE USER '{user}'@'%' IDENTIFIED BY 'pw'"));
    let _cleanup = OnDrop(&t, format!("DROP USER IF EXISTS '{user}'@'%'"));
    t.exec(&format!("GRANT ALL ON `{name}`.* TO '{user}'@'%'"));
    let url = with_user(t.url(), &format!("{user}:pw"));
    let db = Database::open_with(&url, Options::default()).unwrap();
    // One connection whose lock waits give up after a second (a session
    // setting: the pool keeps the connection).
    let impatient = Database::open_with(&url, Options::default().max_connections(1)).unwrap();
    impatient
        .with_connection(|c| {
            c.batch_execute("SET SESSION innodb_lock_wait_timeout = 1")
                .map_err(Error::from)
        })
        .unwrap();
    let a = t.instance(None, "p", "u");
    let b = t.instance(None, "p", "u");
    deadlock(&db, &a, &b);
    lock_timeout_is_retried(&impatient, &a, || row_lock(&t, a.id));
}
