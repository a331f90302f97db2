//! `migrate()` under a database-wide lock: four OS processes (this test
//! binary re-run as a child, see `run_as_child`) migrate the same empty
//! database at once, and four adopt the same database made by Nova's
//! migrations, on every backend. Every process returns Ok and the result is
//! one correct schema.

#[path = "support/nova.rs"]
mod nova;

use std::io::Read;
use std::process::{Command, Stdio};

use cell_mappings::__private::MIGRATIONS;
use cell_mappings::Database;
use mapping_testkit::{compiled_backends, TestDb};

const CHILD_URL: &str = "MAPPING_MIGRATE_CHILD_URL";
const PROCESSES: usize = 4;

/// The child's side: when this binary was re-run by `migrate_in_processes`
/// (the environment names the database), waits until the parent closes its
/// stdin (so that all children start together), migrates, and returns true.
/// The child re-runs the parent's own test, so no test is ever ignored.
fn run_as_child() -> bool {
    let Ok(url) = std::env::var(CHILD_URL) else {
        return false;
    };
    let mut go = Vec::new();
    std::io::stdin().read_to_end(&mut go).unwrap();
    let db = Database::open(&url).expect("open");
    db.migrate().expect("migrate");
    true
}

/// Starts four children on `url` (this binary re-running `test`, the
/// caller's own test, as a child), releases them at once, and asserts that
/// each exits successfully.
fn migrate_in_processes(test: &str, url: &str) {
    let exe = std::env::current_exe().unwrap();
    let mut children: Vec<_> = (0..PROCESSES)
        .map(|_| {
            Command::new(&exe)
                .args([test, "--exact", "--nocapture", "--test-threads=1"])
                .env(CHILD_URL, url)
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .expect("spawn child")
        })
        .collect();
    // All are running: closing their stdin releases them together.
    for c in &mut children {
        drop(c.stdin.take());
    }
    for c in children {
        let out = c.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "a migrating process failed:\n{}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            stdout.contains("1 passed"),
            "the child did not run its migration:\n{stdout}"
        );
    }
}

fn expected_versions() -> Vec<String> {
    MIGRATIONS.iter().map(|m| m.version()).collect()
}

#[test]
fn four_processes_migrate_the_same_empty_database() {
    if run_as_child() {
        return;
    }
    for &backend in compiled_backends() {
        let t = TestDb::empty(backend);
        migrate_in_processes("four_processes_migrate_the_same_empty_database", t.url());
        t.check_schema()
            .unwrap_or_else(|e| panic!("{backend:?}: {e}"));
        assert_eq!(
            t.applied_migrations().unwrap(),
            expected_versions(),
            "{backend:?}"
        );
        // The schema works.
        let cell = t.cell();
        t.instance(Some(&cell), "p", "u");
    }
}

#[test]
fn four_processes_adopt_the_same_nova_database() {
    if run_as_child() {
        return;
    }
    for &backend in compiled_backends() {
        let t = TestDb::empty(backend);
        t.exec(&nova::nova_ddl(backend, 255, true));
        migrate_in_processes("four_processes_adopt_the_same_nova_database", t.url());
        t.check_schema()
            .unwrap_or_else(|e| panic!("{backend:?}: {e}"));
        let applied = t.applied_migrations().unwrap();
        assert_eq!(
            applied.len(),
            expected_versions().len(),
            "{backend:?}: {applied:?}"
        );
        let cell = t.cell();
        t.instance(Some(&cell), "p", "u");
    }
}
