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
