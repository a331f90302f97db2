//! A file SQLite database's write-ahead log stays bounded under a stream of
//! creates. SQLite checkpoints the WAL (every 1,000 pages, about 4 MB) only
//! when a write statement is stepped to its end; the creates read their new
//! id from `INSERT … RETURNING id` and once stopped at that first row, so no
//! create ever checkpointed and the WAL grew by about 24 kB per create
//! (see `sqlite_insert_returning_id`).

use mapping_testkit::{new_cell, new_host, new_instance, BackendKind, TestDb};

/// Above one checkpoint's worth of pages and the last transaction, well
/// below what each stream of creates below writes without checkpoints
/// (instances about 70 MB, hosts and cells about 20 MB each).
const BOUND: u64 = 8 << 20;

#[test]
fn wal_stays_bounded_under_creates() {
    let t = TestDb::new(BackendKind::Sqlite);
    let bounded = |after: &str| {
        let len = t.sqlite_wal_len();
        assert!(len <= BOUND, "after {after} creates: WAL of {len} bytes");
    };
    let cell = t.db.cells().create(new_cell()).expect("cell");
    for _ in 0..3000 {
        t.db.instance_mappings()
            .create(new_instance("project", "user"))
            .expect("instance mapping");
    }
    bounded("instance");
    for _ in 0..2000 {
        t.db.host_mappings()
            .create(new_host(&cell))
            .expect("host mapping");
    }
    bounded("host");
    for _ in 0..2000 {
        t.db.cells().create(new_cell()).expect("cell");
    }
    bounded("cell");
    assert_eq!(
        t.db.instance_mappings()
            .get_counts("project", Some("user"))
            .expect("counts")
            .project,
        3000
    );
}
