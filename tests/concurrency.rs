//! Duplicates, races and retries under real concurrency (std threads and a
//! `Barrier`), on every backend: a SQLite file in WAL mode with a busy
//! timeout, PostgreSQL and MariaDB.

mod support;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Barrier};
use std::thread;
use std::time::{Duration, Instant};

use cell_mappings::__private::{transience, Transience};
use cell_mappings::{
    BackendKind, Database, Error, InstanceMapping, InstanceMappingUpdate, NewCellMapping,
    NewHostMapping, NewInstanceMapping, Options, RetryPolicy,
};
use mapping_testkit::{backend_tests, new_cell, new_instance, uuid, TestDb};

const THREADS: usize = 16;

/// Runs `f(i)` on `n` threads released together by a barrier; returns the
/// results in thread order. Fails the test (instead of hanging) if the
/// threads do not all finish within a generous bound.
fn race<T: Send + 'static>(n: usize, f: impl Fn(usize) -> T + Send + Sync + 'static) -> Vec<T> {
    let barrier = Arc::new(Barrier::new(n));
    let f = Arc::new(f);
    let (done_tx, done_rx) = mpsc::channel();
    let handles: Vec<_> = (0..n)
        .map(|i| {
            let (barrier, f, done_tx) = (barrier.clone(), f.clone(), done_tx.clone());
            thread::spawn(move || {
                barrier.wait();
                let out = f(i);
                let _ = done_tx.send(());
                out
            })
        })
        .collect();
    for _ in 0..n {
        done_rx
            .recv_timeout(Duration::from_secs(120))
            .expect("a thread hung: the callers deadlocked");
    }
    handles
        .into_iter()
        .map(|h| h.join().expect("thread panicked"))
        .collect()
}

fn count_outcomes<T: std::fmt::Debug>(
    results: &[cell_mappings::Result<T>],
    is_expected_err: impl Fn(&Error) -> bool,
) -> usize {
    let mut ok = 0;
    for r in results {
        match r {
            Ok(_) => ok += 1,
            Err(e) if is_expected_err(e) => {}
            Err(e) => panic!("unexpected error: {e:?}"),
        }
    }
    ok
}

backend_tests! {
    fn many_threads_create_the_same_instance_uuid(t) {
        let new = new_instance("p", "u");
        let db = t.db.clone();
        let n = new.clone();
        let results = race(THREADS, move |_| db.instance_mappings().create(n.clone()));
        let ok = count_outcomes(&results, |e| matches!(e, Error::InstanceMappingExists { instance_uuid } if *instance_uuid == new.instance_uuid));
        assert_eq!(ok, 1, "exactly one create may win: {results:?}");
        assert_eq!(t.instance_mappings().get_by_project_id("p").unwrap().len(), 1);
    }

    fn many_threads_create_the_same_cell_and_host(t) {
        let new = new_cell();
        let db = t.db.clone();
        let n = new.clone();
        let results = race(THREADS, move |_| db.cells().create(n.clone()));
        let ok = count_outcomes(&results, |e| matches!(e, Error::CellMappingExists { uuid } if *uuid == new.uuid));
        assert_eq!(ok, 1, "{results:?}");
        let cell = t.cells().get_by_uuid(&new.uuid).unwrap();

        let host = format!("compute-{}", uuid());
        let db = t.db.clone();
        let new_host = NewHostMapping::new(host.clone(), &cell);
        let results = race(THREADS, move |_| db.host_mappings().create(new_host.clone()));
        let ok = count_outcomes(&results, |e| matches!(e, Error::HostMappingExists { host: h } if *h == host));
        assert_eq!(ok, 1, "{results:?}");
        assert_eq!(t.cells().get_all().unwrap().len(), 1);
        assert_eq!(t.host_mappings().get_all().unwrap().len(), 1);
    }

    fn stale_save_after_destroy_elsewhere_is_not_found(t) {
        // Loaded through one handle, destroyed through another: the save
        // must not be a silent no-op, nor bring the row back.
        let other = t.reopen(Options::default());
        let im = t.instance(None, "p", "u");
        other.instance_mappings().destroy(&im.instance_uuid).unwrap();
        let err = t
            .instance_mappings()
            .save(&im, &InstanceMappingUpdate::new().queued_for_delete(true))
            .unwrap_err();
        assert!(matches!(err, Error::InstanceMappingNotFound { .. }), "{err:?}");
        assert!(!im.queued_for_delete, "the object changed although nothing was saved");
        assert!(t.instance_mappings().get_by_instance_uuid(&im.instance_uuid).unwrap_err().is_not_found());
    }

    fn save_racing_destroy_is_saved_or_not_found(t) {
        let cell = t.cell();
        for _ in 0..20 {
            let im = t.instance(None, "p", "u");
            let (db, cell) = (t.db.clone(), cell.clone());
            let results = race(2, move |i| {
                if i == 0 {
                    let m = im.clone();
                    db.instance_mappings()
                        .save(&m, &InstanceMappingUpdate::new().cell(Some(&cell)))
                        .map(|_| "saved")
                } else {
                    db.instance_mappings().destroy(&im.instance_uuid).map(|()| "destroyed")
                }
            });
            assert!(results[1].is_ok(), "{results:?}");
            match &results[0] {
                Ok(_) | Err(Error::InstanceMappingNotFound { .. }) => {}
                Err(e) => panic!("save racing a destroy gave {e:?}"),
            }
        }
        // Whatever the interleaving, nothing was resurrected.
        assert!(t.instance_mappings().get_by_project_id("p").unwrap().is_empty());
    }

    fn concurrent_scheduling_of_different_mappings_all_lands(t) {
        let cells: Vec<_> = (0..3).map(|_| t.cell()).collect();
        const PER_THREAD: usize = 6;
        let threads = 8;
        let mappings: Vec<InstanceMapping> =
            (0..threads * PER_THREAD).map(|_| t.instance(None, "p", "u")).collect();
        let (db, cells2, mappings2) = (t.db.clone(), cells.clone(), mappings.clone());
        let results = race(threads, move |i| -> cell_mappings::Result<()> {
            let mine = &mappings2[i * PER_THREAD..(i + 1) * PER_THREAD];
            // Half of the threads save one by one, half in one transaction
            // (mappings in reverse order, to mix lock orders).
            if i % 2 == 0 {
                for (k, m) in mine.iter().enumerate() {
                    let mut m = m.clone();
                    m = db.instance_mappings()
                        .save(&m, &InstanceMappingUpdate::new().cell(Some(&cells2[(i + k) % 3])))?;
                }
                Ok(())
            } else {
                db.transaction::<_, cell_mappings::Error, _>(|tx| {
                    for (k, m) in mine.iter().enumerate().rev() {
                        let m = m.clone();
                        tx.instance_mappings().save(
                            &m,
                            &InstanceMappingUpdate::new().cell(Some(&cells2[(i + k) % 3])).queued_for_delete(true),
                        )?;
                    }
                    Ok(())
                })
            }
        });
        for r in &results {
            assert!(r.is_ok(), "{results:?}");
        }
        for (n, m) in mappings.iter().enumerate() {
            let (i, k) = (n / PER_THREAD, n % PER_THREAD);
            let got = t.instance_mappings().get_by_instance_uuid(&m.instance_uuid).unwrap();
            assert_eq!(got.cell_mapping.as_ref(), Some(&cells[(i + k) % 3]), "mapping {n} lost its update");
            assert_eq!(got.queued_for_delete, i % 2 == 1);
        }
    }

    fn transient_conflicts_are_retried(t) {
        match t.backend() {
            BackendKind::Sqlite => sqlite_busy_is_retried(t),
            BackendKind::Postgres | BackendKind::Mysql => real_deadlock_is_retried(t),
        }
    }
}

/// Two transactions update two mappings in opposite order, lined up by a
/// barrier so that each holds the lock the other wants: the server detects
/// the deadlock and aborts one, which is retried and then succeeds.
fn real_deadlock_is_retried(t: &TestDb) {
    let a = t.instance(None, "p", "u");
    let b = t.instance(None, "p", "u");
    let before = t.stats().retries;
    let results = opposite_order_transactions(&t.db, &a, &b);
    for r in &results {
        assert!(r.is_ok(), "both transactions must succeed: {results:?}");
    }
    let retried = t.stats().retries - before;
    assert!(
        retried >= 1,
        "the deadlock was not retried ({retried} retries)"
    );
    // Both transactions landed, one after the other: the two rows agree.
    let got_a = t
        .instance_mappings()
        .get_by_instance_uuid(&a.instance_uuid)
        .unwrap();
    let got_b = t
        .instance_mappings()
        .get_by_instance_uuid(&b.instance_uuid)
        .unwrap();
    assert_eq!(got_a.project_id, got_b.project_id);
    assert!(["t0", "t1"].contains(&got_a.project_id.as_str()));

    // With retries switched off the same collision surfaces as a typed,
    // transient error in one of the two callers.
    let never = t.reopen(Options::default().retry(RetryPolicy::never()));
    let results = opposite_order_transactions(&never, &a, &b);
    let failed: Vec<_> = results.iter().filter_map(|r| r.as_ref().err()).collect();
    assert_eq!(failed.len(), 1, "{results:?}");
    assert!(
        matches!(failed[0], Error::Database { .. }),
        "{:?}",
        failed[0]
    );
    assert_eq!(
        transience(failed[0]),
        Transience::RolledBack,
        "{:?}",
        failed[0]
    );
    assert_eq!(never.stats().retries, 0);
}

fn opposite_order_transactions(
    db: &Database,
    a: &InstanceMapping,
    b: &InstanceMapping,
) -> Vec<cell_mappings::Result<()>> {
    let barrier = Arc::new(Barrier::new(2));
    let attempts = Arc::new(AtomicUsize::new(0));
    let (db, a, b, attempts2) = (db.clone(), a.clone(), b.clone(), attempts.clone());
    let results = race(2, move |i| {
        let (first, second) = if i == 0 { (&a, &b) } else { (&b, &a) };
        let update = InstanceMappingUpdate::new().project_id(format!("t{i}"));
        let mut lined_up = false;
        db.transaction::<_, cell_mappings::Error, _>(|tx| {
            attempts2.fetch_add(1, Ordering::Relaxed);
            tx.instance_mappings().save(&first.clone(), &update)?;
            if !lined_up {
                // Only the first attempt waits: a retry runs alone.
                lined_up = true;
                barrier.wait();
            }
            tx.instance_mappings().save(&second.clone(), &update)?;
            Ok(())
        })
    });
    assert!(attempts.load(Ordering::Relaxed) >= 2);
    results
}

/// SQLite: one connection holds the write lock in an open transaction while
/// another, with no busy timeout, writes: it gets "database is locked" at
/// once, and is retried until the holder commits.
fn sqlite_busy_is_retried(t: &TestDb) {
    let a = t.instance(None, "p", "u");
    let b = t.instance(None, "p", "u");
    let impatient = t.reopen(
        Options::default()
            .sqlite_busy_timeout(Duration::ZERO)
            .retry(RetryPolicy {
                max_attempts: 10_000,
                base_delay: Duration::from_millis(1),
                max_delay: Duration::from_millis(5),
            }),
    );
    // Open the impatient handle's connection before the lock is taken.
    impatient.cells().get_all().unwrap();

    let (locked_tx, locked_rx) = mpsc::channel();
    let holder_db = t.db.clone();
    let watcher = impatient.clone();
    let a2 = a.clone();
    let holder = thread::spawn(move || {
        holder_db.transaction::<_, cell_mappings::Error, _>(|tx| {
            tx.instance_mappings().save(
                &a2.clone(),
                &InstanceMappingUpdate::new().project_id("holder"),
            )?;
            let _ = locked_tx.send(());
            // Keep the write lock until the other writer has been refused
            // and retried at least once.
            let deadline = Instant::now() + Duration::from_secs(60);
            while watcher.stats().retries == 0 {
                assert!(Instant::now() < deadline, "the busy writer never retried");
                thread::yield_now();
            }
            Ok(())
        })
    });
    locked_rx.recv().unwrap();
    let b2 = b.clone();
    impatient
        .instance_mappings()
        .save(&b2, &InstanceMappingUpdate::new().project_id("impatient"))
        .expect("the busy write is retried until it succeeds");
    holder.join().unwrap().unwrap();
    assert!(impatient.stats().retries >= 1);
    let got = |u: &str| {
        t.instance_mappings()
            .get_by_instance_uuid(u)
            .unwrap()
            .project_id
    };
    assert_eq!(got(a.instance_uuid.as_str()), "holder");
    assert_eq!(got(b.instance_uuid.as_str()), "impatient");

    // With retries off, the same refusal is a typed transient error.
    let no_retry = t.reopen(
        Options::default()
            .sqlite_busy_timeout(Duration::ZERO)
            .retry(RetryPolicy::never()),
    );
    no_retry.cells().get_all().unwrap();
    let err = t
        .transaction::<_, cell_mappings::Error, _>(|tx| {
            tx.instance_mappings().save(
                &a.clone(),
                &InstanceMappingUpdate::new().project_id("again"),
            )?;
            Ok(no_retry
                .instance_mappings()
                .save(
                    &b.clone(),
                    &InstanceMappingUpdate::new().project_id("refused"),
                )
                .unwrap_err())
        })
        .unwrap();
    assert_eq!(transience(&err), Transience::RolledBack, "{err:?}");
    assert_eq!(got(b.instance_uuid.as_str()), "impatient");
}

backend_tests! {
    fn destroying_a_cell_in_use_says_how_many_remain(t) {
        let cell = t.cell();
        let a = t.instance(Some(&cell), "p", "u");
        t.instance(Some(&cell), "p", "u");
        t.instance(None, "p", "u");
        let h = t.host(&cell);
        let before = support::snapshot(t);
        match t.cells().destroy(cell.uuid) {
            Err(Error::CellMappingInUse { uuid, instance_mappings, host_mappings }) => {
                assert_eq!((uuid.as_str(), instance_mappings, host_mappings), (cell.uuid.to_string().as_str(), 2, 1));
            }
            other => panic!("{other:?}"),
        }
        let err = t.cells().destroy(cell.uuid).unwrap_err();
        assert!(err.to_string().contains("2 instance mapping(s) and 1 host mapping(s)"), "{err}");
        assert_eq!(support::snapshot(t), before, "a refused destroy wrote something");
        let remaining: Vec<_> = t.instance_mappings().get_by_cell_id(cell.id).unwrap().into_iter().map(|m| m.instance_uuid).collect();
        assert_eq!(t.instance_mappings().destroy_bulk(&remaining).unwrap(), 2);
        assert!(remaining.contains(&a.instance_uuid));
        assert!(matches!(
            t.cells().destroy(cell.uuid),
            Err(Error::CellMappingInUse { instance_mappings: 0, host_mappings: 1, .. })
        ));
        t.host_mappings().destroy(&h.host).unwrap();
        t.cells().destroy(cell.uuid).unwrap();
    }

    fn destroying_a_cell_racing_new_mappings_leaves_no_orphan(t) {
        for _ in 0..10 {
            let cell = t.cell();
            let (db, c) = (t.db.clone(), cell.clone());
            let results = race(4, move |i| {
                if i == 0 {
                    db.cells().destroy(c.uuid).map(|()| 0)
                } else {
                    db.instance_mappings().create(new_instance("p", "u").cell(&c)).map(|_| 1)
                }
            });
            let created = results[1..].iter().filter(|r| r.is_ok()).count();
            for r in &results[1..] {
                match r {
                    Ok(_) => {}
                    Err(Error::CellMappingNotFound { uuid }) => assert_eq!(*uuid, cell.uuid.to_string()),
                    Err(e) => panic!("create racing a destroy gave {e:?}"),
                }
            }
            match &results[0] {
                Ok(_) => assert_eq!(created, 0, "a mapping was created in a destroyed cell"),
                Err(Error::CellMappingInUse { instance_mappings, .. }) => {
                    assert!(*instance_mappings >= 1);
                    assert!(t.cells().get_by_uuid(cell.uuid).is_ok());
                }
                Err(e) => panic!("destroy racing creates gave {e:?}"),
            }
            assert_eq!(t.instance_mappings().get_by_cell_id(cell.id).unwrap().len(), created);
        }
    }

    /// A bulk operation that fails half-way leaves nothing written.
    fn failing_transaction_step_leaves_nothing(t) {
        let cell = t.cell();
        let keep: Vec<_> = (0..5).map(|_| t.instance(Some(&cell), "p", "u")).collect();
        let uuids: Vec<_> = keep.iter().map(|m| m.instance_uuid.clone()).collect();
        let before = support::snapshot(t);
        let err = t
            .transaction::<_, cell_mappings::Error, _>(|tx| {
                assert_eq!(tx.instance_mappings().destroy_bulk(&uuids)?, 5);
                tx.instance_mappings().create(NewInstanceMapping::new(uuid(), "p", "u"))?;
                tx.cells().create(new_cell())?;
                // Fails half-way: the uuid is taken.
                tx.cells().create(NewCellMapping::new(cell.uuid, "rabbit://", "mysql://"))?;
                Ok(())
            })
            .unwrap_err();
        assert!(matches!(err, Error::CellMappingExists { .. }), "{err:?}");
        assert_eq!(support::snapshot(t), before, "a failed transaction left writes behind");
    }
}
