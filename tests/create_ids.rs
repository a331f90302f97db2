//! Creates return the id of the row they wrote, on one connection, through
//! failed creates between them. On MariaDB a create is one round trip
//! (`INSERT … RETURNING id`), which its first use on a connection, and its
//! first use after a failure, learns by running once with
//! `LAST_INSERT_ID()` (see `mysql_insert_returning_id`).

use std::fmt::Debug;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::RecvTimeoutError;
use std::sync::Arc;
use std::time::Duration;

use cell_mappings::{CellMapping, Database, Error, InstanceMapping, NewInstanceMapping, Options};
use mapping_testkit::{backend_tests, new_instance, BackendKind};

/// Counts the library's "first use of INSERT … RETURNING" events on this thread.
struct FirstUses(Arc<AtomicUsize>);

impl tracing::Subscriber for FirstUses {
    fn enabled(&self, _: &tracing::Metadata<'_>) -> bool {
        true
    }
    fn new_span(&self, _: &tracing::span::Attributes<'_>) -> tracing::span::Id {
        tracing::span::Id::from_u64(1)
    }
    fn record(&self, _: &tracing::span::Id, _: &tracing::span::Record<'_>) {}
    fn record_follows_from(&self, _: &tracing::span::Id, _: &tracing::span::Id) {}
    fn event(&self, event: &tracing::Event<'_>) {
        struct Message(String);
        impl tracing::field::Visit for Message {
            fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn Debug) {
                if field.name() == "message" {
                    self.0 = format!("{value:?}");
                }
            }
        }
        let mut m = Message(String::new());
        event.record(&mut m);
        if m.0.contains("first use of INSERT") {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }
    fn enter(&self, _: &tracing::span::Id) {}
    fn exit(&self, _: &tracing::span::Id) {}
}

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

backend_tests! {
    fn creates_on_one_connection_return_their_ids_through_failures(t) {
        let url = t.url().to_owned();
        let cell = t.cell();
        // On a thread of its own, bounded: a statement left waiting for the
        // rest of a result would block the next create for good.
        let (done, outcome) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let db = Database::open_with(&url, Options::default().max_connections(1))
                .expect("open");
            let first_uses = Arc::new(AtomicUsize::new(0));
            let made = tracing::subscriber::with_default(FirstUses(first_uses.clone()), || {
                creates(&db, &cell)
            });
            let _ = done.send((db, made, first_uses.load(Ordering::SeqCst)));
        });
        let (db, made, first_uses) = match outcome.recv_timeout(Duration::from_secs(120)) {
            Ok(outcome) => outcome,
            Err(RecvTimeoutError::Timeout) => panic!("the creates did not finish in 120 s: hung"),
            Err(RecvTimeoutError::Disconnected) => panic!("the creates failed (see above)"),
        };
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
        assert_eq!(db.instance_mappings().get_by_project_id("p").expect("listed").len(), 6);
        // MariaDB: the statement learns its columns on its first use (a),
        // and again after each failure emptied the statement cache (c, e);
        // every other create was one round trip. The others have RETURNING
        // prepared as any statement.
        let want = if t.backend() == BackendKind::Mysql { 3 } else { 0 };
        assert_eq!(first_uses, want);
    }
}
