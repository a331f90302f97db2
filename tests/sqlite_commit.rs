//! A SQLite create whose commit fails is an error, not a returned id.
//!
//! An autocommit statement commits at its last step, where its pages are
//! written to the WAL. The creates read their id from `INSERT … RETURNING
//! id`; when the statement was reset right after that row, the commit ran
//! inside `sqlite3_reset`, whose result diesel discards: a commit that
//! could not write returned the new id of a row that was never stored.
//!
//! Alone in its test binary: it limits the size of the files the whole
//! process may write (`RLIMIT_FSIZE`), so that the next commit cannot
//! append to the WAL.

use cell_mappings::Error;
use mapping_testkit::{new_instance, BackendKind, TestDb};

/// Sets the soft limit on the size of files this process writes.
fn limit_file_size(bytes: libc::rlim_t) {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: plain system calls on a local struct; SIGXFSZ is ignored so
    // that a write past the limit fails with EFBIG instead of killing the
    // process.
    unsafe {
        libc::signal(libc::SIGXFSZ, libc::SIG_IGN);
        assert_eq!(libc::getrlimit(libc::RLIMIT_FSIZE, &mut limit), 0);
        limit.rlim_cur = bytes.min(limit.rlim_max);
        assert_eq!(libc::setrlimit(libc::RLIMIT_FSIZE, &limit), 0);
    }
}

#[test]
fn a_create_whose_commit_cannot_write_is_an_error() {
    let t = TestDb::new(BackendKind::Sqlite);
    // Every statement prepared, the WAL in use.
    let first =
        t.db.instance_mappings()
            .create(new_instance("project", "user"))
            .expect("first create");

    // The WAL, where the next commit appends its pages (no checkpoint has
    // emptied it: that takes 1,000 pages).
    let wal = t.sqlite_wal_len();
    assert!(wal > 0, "the database is in WAL mode");
    limit_file_size(wal);
    let refused =
        t.db.instance_mappings()
            .create(new_instance("project", "user"));
    limit_file_size(libc::RLIM_INFINITY);

    // SQLite reports the failed write of the WAL as a disk I/O error.
    let err = refused.expect_err("a create whose commit could not be written returned Ok");
    assert!(
        matches!(
            err,
            Error::Database {
                operation: "instance_mapping.create",
                ..
            }
        ),
        "{err:?}"
    );
    // Nothing of it was stored, and the database goes on working.
    let again =
        t.db.instance_mappings()
            .create(new_instance("project", "user"))
            .expect("a create once files may grow again");
    assert_ne!(again.id, first.id);
    assert_eq!(
        t.db.instance_mappings()
            .get_counts("project", None)
            .expect("counts")
            .project,
        2
    );
}
