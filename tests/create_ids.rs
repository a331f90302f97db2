//! Creates return the id of the row they wrote, on one connection, through
//! failed creates between them. On MariaDB a create is one round trip
//! (`INSERT … RETURNING id`, see `mysql_insert_returning_id`), and a failed
//! one must not leave its statement blocking the next.

use std::fmt::Debug;
use std::sync::mpsc::RecvTimeoutError;
use std::time::Duration;

use cell_mappings::{
    CellMapping, Database, Error, InstanceMapping, NewCellMapping, NewHostMapping,
    NewInstanceMapping, Options,
};
use mapping_testkit::{backend_tests, new_cell, new_host, new_instance, BackendKind, TestDb};

fn exists<T: Debug>(r: cell_mappings::Result<T>, of: &InstanceMapping) {
    match r {
        Err(Error::InstanceMappingExists { instance_uuid }) => {
            assert_eq!(instance_uuid, of.instance_uuid.as_str())
        }
        other => panic!("expected InstanceMappingExists, got {other:?}"),
    }
}

/// Six creates and two refused ones, on a handle of one connection.
fn creates(db: &Database, cell: &CellMapping) -> Vec<InstanceMapping> {
    let mut ims = db.instance_mappings();
    let a = ims.create(new_instance("p", "u")).expect("a");
    let b = ims.create(new_instance("p", "u").cell(cell)).expect("b");
    // The same uuid with other content: refused, nothing written.
    exists(
        ims.create(NewInstanceMapping::new(
            a.instance_uuid.as_str(),
            "p",
            "other",
        )),
        &a,
    );
    let c = ims.create(new_instance("p", "u")).expect("c");
    let d = ims.create(new_instance("p", "u")).expect("d");
    // Refused inside a caller's transaction.
    exists(
        db.transaction(|tx| {
            tx.instance_mappings().create(NewInstanceMapping::new(
                b.instance_uuid.as_str(),
                "p",
                "u",
            ))
        }),
        &b,
    );
    let e = db
        .transaction(|tx| tx.instance_mappings().create(new_instance("p", "u")))
        .expect("e");
    let f = ims.create(new_instance("p", "u")).expect("f");
    vec![a, b, c, d, e, f]
}

/// Runs `f` on a handle of one connection to `t`'s database, on a thread of
/// its own and bounded in time (a statement left waiting for the rest of a
/// result would block the next create for good); returns the handle, what
/// `f` returned.
///
/// `returning: false` makes the handle read `LAST_INSERT_ID()` on MariaDB,
/// as on a server without `INSERT … RETURNING`.
fn on_one_connection<R: Send + 'static>(
    t: &TestDb,
    returning: bool,
    f: impl FnOnce(&Database) -> R + Send + 'static,
) -> (Database, R) {
    let url = t.url().to_owned();
    let (done, outcome) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let db = Database::open_with(&url, Options::default().max_connections(1)).expect("open");
        if !returning {
            cell_mappings::__private::without_insert_returning(&db);
        }
        let r = f(&db);
        let _ = done.send((db, r));
    });
    match outcome.recv_timeout(Duration::from_secs(120)) {
        Ok(outcome) => outcome,
        Err(RecvTimeoutError::Timeout) => panic!("the creates did not finish in 120 s: hung"),
        Err(RecvTimeoutError::Disconnected) => panic!("the creates failed (see above)"),
    }
}

/// Six instance-mapping creates and two refused ones on one connection:
/// each returns its stored row's id.
fn instance_creates(t: &TestDb, returning: bool) {
    let cell = t.cell();
    let (db, made) = on_one_connection(t, returning, move |db| creates(db, &cell));
    // Each create's id is its stored row's, and they rise.
    for w in made.windows(2) {
        assert!(w[0].id < w[1].id, "ids {} then {}", w[0].id, w[1].id);
    }
    for m in &made {
        let stored = db
            .instance_mappings()
            .get_by_instance_uuid(m.instance_uuid.as_str())
            .expect("stored");
        assert_eq!(&stored, m);
    }
    assert_eq!(
        db.instance_mappings()
            .get_by_project_id("p")
            .expect("listed")
            .len(),
        6
    );
}

/// Cell and host creates, each with a refused one, on one connection.
fn cell_and_host_creates(t: &TestDb, returning: bool) {
    let (db, (cells, hosts)) = on_one_connection(t, returning, |db| {
        let mut cm = db.cells();
        let c1 = cm.create(new_cell()).expect("c1");
        let again = NewCellMapping::new(c1.uuid.to_string(), "rabbit://x/", "sqlite://");
        match cm.create(again) {
            Err(Error::CellMappingExists { .. }) => {}
            other => panic!("expected CellMappingExists, got {other:?}"),
        }
        let c2 = cm.create(new_cell()).expect("c2");
        let mut hm = db.host_mappings();
        let h1 = hm.create(new_host(&c1)).expect("h1");
        match hm.create(NewHostMapping::new(h1.host.clone(), &c2)) {
            Err(Error::HostMappingExists { .. }) => {}
            other => panic!("expected HostMappingExists, got {other:?}"),
        }
        let h2 = hm.create(new_host(&c2)).expect("h2");
        let h3 = hm.create(new_host(&c2)).expect("h3");
        (vec![c1, c2], vec![h1, h2, h3])
    });
    assert!(cells[0].id < cells[1].id);
    for c in &cells {
        assert_eq!(&db.cells().get_by_uuid(c.uuid).expect("stored"), c);
    }
    assert!(hosts[0].id < hosts[1].id && hosts[1].id < hosts[2].id);
    for h in &hosts {
        assert_eq!(&db.host_mappings().get_by_host(&h.host).expect("stored"), h);
    }
}

backend_tests! {
    fn creates_on_one_connection_return_their_ids_through_failures(t) {
        instance_creates(t, true);
    }

    fn cell_and_host_creates_on_one_connection_return_their_ids(t) {
        cell_and_host_creates(t, true);
    }

}

// The same where MySQL reads `LAST_INSERT_ID()` (a server without
// `INSERT … RETURNING`, which CI does not have); only MySQL has that path.
#[cfg(feature = "mysql")]
#[test]
fn creates_without_insert_returning_return_their_ids() {
    instance_creates(&TestDb::new(BackendKind::Mysql), false);
}

#[cfg(feature = "mysql")]
#[test]
fn cell_and_host_creates_without_insert_returning_return_their_ids() {
    cell_and_host_creates(&TestDb::new(BackendKind::Mysql), false);
}
