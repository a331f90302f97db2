//! Passwords of cell URLs appear in no log event and no error, whatever
//! goes wrong: a test binary of its own, since it installs a global
//! subscriber that records every event of every thread.

mod common;

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::{cell_db, register};
use mapping_model::CellMappingUpdate;
use mapping_router::{Router, RouterOptions};
use mapping_testkit::{BackendKind, TestDb};
use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id, Record};
use tracing::{Event, Metadata, Subscriber};

/// Records every event, with all its fields, as text.
struct Recorder {
    log: Arc<Mutex<String>>,
    next_id: AtomicU64,
}

struct Text<'a>(&'a mut String);

impl Visit for Text<'_> {
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        let _ = write!(self.0, " {}={:?}", field.name(), value);
    }
}

impl Subscriber for Recorder {
    fn enabled(&self, _: &Metadata<'_>) -> bool {
        true
    }
    fn new_span(&self, span: &Attributes<'_>) -> Id {
        let mut log = self.log.lock().unwrap();
        span.record(&mut Text(&mut log));
        Id::from_u64(self.next_id.fetch_add(1, Ordering::Relaxed) + 1)
    }
    fn record(&self, _: &Id, values: &Record<'_>) {
        values.record(&mut Text(&mut self.log.lock().unwrap()));
    }
    fn record_follows_from(&self, _: &Id, _: &Id) {}
    fn event(&self, event: &Event<'_>) {
        let mut log = self.log.lock().unwrap();
        event.record(&mut Text(&mut log));
        log.push('\n');
    }
    fn enter(&self, _: &Id) {}
    fn exit(&self, _: &Id) {}
}

#[test]
fn cell_passwords_stay_out_of_logs_and_errors() {
    let log = Arc::new(Mutex::new(String::new()));
    tracing::subscriber::set_global_default(Recorder {
        log: Arc::clone(&log),
        next_id: AtomicU64::new(0),
    })
    .unwrap();
    let secret = "Zq9-very-secret";
    let api = TestDb::new(BackendKind::Sqlite);
    let mut errors = String::new();
    let router = Router::new(
        api.db.clone(),
        RouterOptions::default().connect_timeout(Duration::from_millis(500)),
    )
    .unwrap();
    let closed = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let urls = [
        format!("postgresql+psycopg2://nova:{secret}@127.0.0.1:{closed}/nova_cell1"),
        format!("mysql+pymysql://nova:{secret}@127.0.0.1:{closed}/nova_cell1?charset=utf8"),
        format!("postgres://nova:{secret}@[::1:{closed}/nova"), // malformed
        format!("nosuchdb://nova:{secret}@h/x"),
    ];
    let good = cell_db(BackendKind::Sqlite, &["x"]);
    for url in &urls {
        let mut cell = register(&api, "secret", url);
        let results = router.scatter_gather(&[cell.clone()], Duration::from_secs(30), |_, c| {
            common::batch(c, "SELECT 1")
        });
        let _ = write!(errors, "{results:?}");
        for r in results.values() {
            if let Some(e) = r.error() {
                let _ = write!(errors, "{e} {:?}", std::error::Error::source(e));
            }
        }
        // A URL change is logged with both URLs, redacted.
        cell = api
            .cells()
            .save(
                &cell,
                &CellMappingUpdate::new().database_connection(good.db.url()),
            )
            .unwrap();
        let routed = router.target_cell(&cell, |c| common::batch(c, "SELECT 1"));
        assert!(routed.is_ok(), "{routed:?}");
        router.refresh_cells().unwrap();
    }
    assert!(
        errors.contains("nova_cell1"),
        "errors were recorded: {errors}"
    );
    assert!(!errors.contains(secret), "password in an error: {errors}");
    let log = log.lock().unwrap().clone();
    assert!(
        log.contains("cell database URL changed"),
        "events were recorded: {log}"
    );
    assert!(
        log.contains("database connection failed"),
        "connection failures were logged: {log}"
    );
    assert!(!log.contains(secret), "password in the log: {log}");
}
