//! The server really goes away mid-run: PostgreSQL and MariaDB are stopped
//! and started again while a `Database` is in use. Calls made while the
//! server is down fail with typed errors (nothing panics), and the same
//! handle serves again, reads and writes, once the server is back.
//!
//! This binary holds one test on purpose: cargo runs test binaries one after
//! another, so no other test is using the shared servers while this one
//! restarts them. It needs root (as CI and `scripts/test-all.sh` have) and
//! runs only when `MAPPING_TEST_RESTART_SERVERS=1` (set by
//! `scripts/test-all.sh`); otherwise it says so loudly, and under CI
//! (`CI=true`) it fails instead of passing silently.

use std::io::Write;
use std::process::Command;
use std::time::{Duration, Instant};

use cell_mappings::{BackendKind, Error, InstanceMappingUpdate, Options};
use mapping_testkit::{compiled_backends, TestDb};

fn run(cmd: &str) -> bool {
    Command::new("sh")
        .arg("-c")
        .arg(cmd)
        .status()
        .map(|s| s.success())
        .unwrap_or(false)
}

fn wait_until(what: &str, check: &str, want: bool) {
    let deadline = Instant::now() + Duration::from_secs(90);
    while run(check) != want {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

const PG_UP: &str = "pg_isready -q -h 127.0.0.1 -p 5432";
const MY_UP: &str = "mysqladmin --protocol=tcp -h 127.0.0.1 -P 3306 -uroot ping >/dev/null 2>&1";

fn stop(backend: BackendKind) {
    match backend {
        BackendKind::Postgres => {
            assert!(
                run("pg_ctlcluster --skip-systemctl-redirect $(ls /etc/postgresql | sort -V | tail -n1) main stop -m fast"),
                "stopping PostgreSQL failed"
            );
            wait_until("PostgreSQL to stop", PG_UP, false);
        }
        BackendKind::Mysql => {
            assert!(
                run("mysqladmin --protocol=tcp -h 127.0.0.1 -P 3306 -uroot shutdown"),
                "stopping MariaDB failed"
            );
            wait_until("MariaDB to stop", MY_UP, false);
            // The port closes before the process has finished shutting down;
            // it removes its pid file last. Starting again before that would
            // find it still running and start nothing.
            wait_until("MariaDB to exit", "test -e /run/mysqld/mysqld.pid", false);
        }
        BackendKind::Sqlite => unreachable!("SQLite has no server"),
    }
}

/// Starts the server. MariaDB: `--pidfile` names this server's process, for
/// the Galera test nodes (tests/galera.rs) are `mariadbd` processes too, and
/// by executable alone start-stop-daemon would take one of them for it.
fn start(backend: BackendKind) {
    match backend {
        BackendKind::Postgres => {
            assert!(
                run("pg_ctlcluster --skip-systemctl-redirect $(ls /etc/postgresql | sort -V | tail -n1) main start"),
                "starting PostgreSQL failed"
            );
            wait_until("PostgreSQL to start", PG_UP, true);
        }
        BackendKind::Mysql => {
            assert!(
                run("mkdir -p /run/mysqld && chown mysql:mysql /run/mysqld; \
                     start-stop-daemon --start --oknodo --background \
                     --pidfile /run/mysqld/mysqld.pid --exec /usr/sbin/mariadbd -- --user=mysql"),
                "starting MariaDB failed"
            );
            wait_until("MariaDB to start", MY_UP, true);
        }
        BackendKind::Sqlite => unreachable!("SQLite has no server"),
    }
}

/// Starts the server again if the test fails half-way, so that the test
/// binaries after this one still find it.
struct Restore(BackendKind);

impl Drop for Restore {
    fn drop(&mut self) {
        let up = match self.0 {
            BackendKind::Postgres => PG_UP,
            _ => MY_UP,
        };
        if !run(up) {
            start(self.0);
        }
    }
}

fn survives_a_restart(backend: BackendKind) {
    let t = TestDb::with_options(
        backend,
        Options::default()
            .max_connections(4)
            .connection_timeout(Duration::from_secs(3)),
    );
    let cell = t.cell();
    let mut im = t.instance(None, "p", "u");
    assert_eq!(
        t.instance_mappings()
            .get_by_instance_uuid(&im.instance_uuid)
            .unwrap(),
        im
    );

    let restore = Restore(backend);
    stop(backend);
    // While the server is down: typed errors, for reads and for writes.
    let read = t
        .instance_mappings()
        .get_by_instance_uuid(&im.instance_uuid);
    assert!(
        matches!(
            read,
            Err(Error::Connection { .. } | Error::Database { .. } | Error::PoolTimeout { .. })
        ),
        "{backend:?} read while down: {read:?}"
    );
    let write = t.cells().create(mapping_testkit::new_cell());
    assert!(
        matches!(
            write,
            Err(Error::Connection { .. } | Error::Database { .. } | Error::PoolTimeout { .. })
        ),
        "{backend:?} write while down: {write:?}"
    );
    start(backend);
    drop(restore);

    // The same handle serves again: reads, then writes, then reads of them.
    assert_eq!(
        t.instance_mappings()
            .get_by_instance_uuid(&im.instance_uuid)
            .unwrap(),
        im
    );
    im = t
        .instance_mappings()
        .save(&im, &InstanceMappingUpdate::new().cell(Some(&cell)))
        .unwrap();
    let got = t
        .instance_mappings()
        .get_by_instance_uuid(&im.instance_uuid)
        .unwrap();
    assert_eq!(got.cell_mapping.as_ref(), Some(&cell));
    let again = t.instance(Some(&cell), "p", "u");
    assert_eq!(
        t.instance_mappings().get_by_project_id("p").unwrap().len(),
        2
    );
    assert!(t
        .instance_mappings()
        .get_by_instance_uuid(&again.instance_uuid)
        .is_ok());
}

#[test]
fn servers_restarted_mid_run_are_survived() {
    let servers: Vec<BackendKind> = compiled_backends()
        .iter()
        .copied()
        .filter(|b| *b != BackendKind::Sqlite)
        .collect();
    if std::env::var("MAPPING_TEST_RESTART_SERVERS").as_deref() != Ok("1") {
        let _ = writeln!(
            std::io::stderr().lock(),
            "\n*** SERVER-RESTART TEST NOT RUN: set MAPPING_TEST_RESTART_SERVERS=1 \
             (scripts/test-all.sh does) to stop and start {servers:?} ***\n"
        );
        assert!(
            std::env::var("CI").is_err() || servers.is_empty(),
            "CI must run the server-restart test (MAPPING_TEST_RESTART_SERVERS=1)"
        );
        return;
    }
    for backend in servers {
        survives_a_restart(backend);
    }
}
