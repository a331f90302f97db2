//! Pooled connections used a moment ago are handed out without a ping
//! (`Options::ping_idle_after`); one that died meanwhile costs a read or a
//! re-runnable write one retry, never an error.

use std::time::Duration;

use cell_mappings::{BackendKind, Options};
use mapping_testkit::backend_tests;

/// Ends every other session on the test database, as a server restart or
/// an idle-connection reaper would.
fn kill_other_sessions(t: &mapping_testkit::TestDb) {
    match t.backend() {
        BackendKind::Sqlite => {}
        BackendKind::Postgres => t.exec(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
             WHERE datname = current_database() AND pid <> pg_backend_pid()",
        ),
        BackendKind::Mysql => {
            // Through `t`'s own connection, which is spared.
            let ids: Vec<i64> = t
                .with_connection(|c| {
                    use diesel::prelude::*;
                    #[derive(QueryableByName)]
                    struct Id {
                        #[diesel(sql_type = diesel::sql_types::BigInt)]
                        id: i64,
                    }
                    diesel::sql_query(
                        "SELECT CAST(ID AS SIGNED) AS id FROM information_schema.PROCESSLIST \
                         WHERE DB = DATABASE() AND ID <> CONNECTION_ID()",
                    )
                    .load::<Id>(c)
                    .map(|v| v.into_iter().map(|i| i.id).collect())
                    .map_err(cell_mappings::Error::from)
                })
                .unwrap();
            for id in ids {
                // The session may be gone already.
                let _ = t.with_connection(|c| {
                    use diesel::connection::SimpleConnection;
                    c.batch_execute(&format!("KILL {id}"))
                        .map_err(cell_mappings::Error::from)
                });
            }
        }
    }
}

backend_tests! {
    fn recently_used_connection_that_died_is_replaced_for_reads(t) {
        for window in [Duration::ZERO, Duration::from_secs(3600)] {
            let db = t.reopen(Options::default().ping_idle_after(window));
            let cell = t.cell();
            let im = t.instance(Some(&cell), "p", "u");
            // Warm the pool: one idle connection, used a moment ago.
            assert_eq!(db.instance_mappings().get_by_instance_uuid(&im.instance_uuid).unwrap(), im);
            kill_other_sessions(t);
            // Pinged (ZERO) or not (an hour), the read succeeds.
            assert_eq!(db.instance_mappings().get_by_instance_uuid(&im.instance_uuid).unwrap(), im);
            assert_eq!(db.instance_mappings().get_by_instance_uuid(&im.instance_uuid).unwrap(), im);
        }
    }

    fn recently_used_connection_that_died_is_replaced_for_writes(t) {
        // A create goes without a ping; its connection turns out dead, so it
        // is run again on a fresh one (finding whether its row was written):
        // a lost connection costs no error.
        let db = t.reopen(Options::default().ping_idle_after(Duration::from_secs(3600)));
        let cell = t.cell();
        db.instance_mappings().get_counts("p", None).unwrap();
        kill_other_sessions(t);
        let im = db.instance_mappings().create(mapping_testkit::new_instance("p", "u").cell(&cell)).unwrap();
        assert_eq!(t.instance_mappings().get_by_instance_uuid(&im.instance_uuid).unwrap(), im);
    }
}

backend_tests! {
    fn sqlite_files_are_memory_mapped_as_configured(t) {
        use diesel::prelude::*;
        #[derive(QueryableByName)]
        struct Mmap {
            #[diesel(sql_type = diesel::sql_types::BigInt)]
            mmap_size: i64,
        }
        for size in [0u64, 64 * 1024 * 1024] {
            let db = t.reopen(Options::default().sqlite_mmap_size(size));
            // Harmless elsewhere; on SQLite the pragma is what was asked for.
            let cell = t.cell();
            let im = t.instance(Some(&cell), "p", "u");
            assert_eq!(db.instance_mappings().get_by_instance_uuid(&im.instance_uuid).unwrap(), im);
            if t.backend() == BackendKind::Sqlite {
                let got = db
                    .with_connection(|c| {
                        diesel::sql_query("PRAGMA mmap_size")
                            .get_result::<Mmap>(c)
                            .map_err(cell_mappings::Error::from)
                    })
                    .unwrap();
                assert_eq!(got.mmap_size as u64, size);
            }
        }
    }
}
