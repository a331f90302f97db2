//! The opt-in read-through cache of instance-uuid lookups: hits, bounds,
//! invalidation by this process's writes, TTL for everyone else's.

use std::time::Duration;

use cell_mappings::{
    CacheOptions, CellMappingUpdate, Database, Error, FirstTierStats, InstanceMappingUpdate,
    Options,
};
use mapping_testkit::{backend_tests, TestDb};

/// A second handle on the test database with the cache on.
fn cached(t: &TestDb, capacity: usize, ttl: Duration) -> Database {
    t.reopen(Options::default().cache(Some(CacheOptions { capacity, ttl })))
}

fn stats(db: &Database) -> FirstTierStats {
    let s = db.cache_stats().expect("cache is on");
    assert!(s.memcached.is_none(), "memcached tier is off by default");
    s.first_tier.expect("first tier is on")
}

const LONG: Duration = Duration::from_secs(3600);

backend_tests! {
    fn cache_is_off_by_default(t) {
        assert!(t.cache_stats().is_none());
        let cell = t.cell();
        let im = t.instance(Some(&cell), "p", "u");
        t.instance_mappings().get_by_instance_uuid(&im.instance_uuid).unwrap();
        assert!(t.cache_stats().is_none());
    }

    fn second_lookup_is_a_hit(t) {
        let db = cached(t, 100, LONG);
        let cell = t.cell();
        let im = t.instance(Some(&cell), "p", "u");
        let first = db.instance_mappings().get_by_instance_uuid(&im.instance_uuid).unwrap();
        let s = stats(&db);
        assert_eq!((s.hits, s.misses, s.entries), (0, 1, 1));
        // Any spelling of the uuid finds the same entry.
        let again = db
            .instance_mappings()
            .get_by_instance_uuid(im.instance_uuid.as_str().to_uppercase())
            .unwrap();
        assert_eq!(again, first);
        assert_eq!(again, im);
        let s = stats(&db);
        assert_eq!((s.hits, s.misses, s.entries), (1, 1, 1));
    }

    fn unscheduled_and_missing_are_not_cached(t) {
        let db = cached(t, 100, LONG);
        let im = t.instance(None, "p", "u");
        for _ in 0..2 {
            let got = db.instance_mappings().get_by_instance_uuid(&im.instance_uuid).unwrap();
            assert!(got.cell_mapping.is_none());
        }
        let missing = mapping_testkit::uuid();
        for _ in 0..2 {
            assert!(db.instance_mappings().get_by_instance_uuid(&missing).unwrap_err().is_not_found());
        }
        let s = stats(&db);
        assert_eq!((s.hits, s.misses, s.entries), (0, 4, 0));
        // Once scheduled, it is cached.
        let cell = t.cell();
        let mut im = im;
        im = db.instance_mappings().save(&im, &InstanceMappingUpdate::new().cell(Some(&cell))).unwrap();
        for _ in 0..2 {
            let got = db.instance_mappings().get_by_instance_uuid(&im.instance_uuid).unwrap();
            assert_eq!(got.cell_mapping.as_ref(), Some(&cell));
        }
        let s = stats(&db);
        assert_eq!((s.hits, s.entries), (1, 1));
    }

    fn save_invalidates(t) {
        let db = cached(t, 100, LONG);
        let cell = t.cell();
        let mut im = t.instance(Some(&cell), "p", "u");
        db.instance_mappings().get_by_instance_uuid(&im.instance_uuid).unwrap();
        im = db.instance_mappings()
            .save(&im, &InstanceMappingUpdate::new().queued_for_delete(true))
            .unwrap();
        assert_eq!(stats(&db).entries, 0);
        let got = db.instance_mappings().get_by_instance_uuid(&im.instance_uuid).unwrap();
        assert!(got.queued_for_delete);
        assert_eq!(got, im);
        // A clone of the handle shares the cache and invalidates it too.
        let clone = db.clone();
        let other = t.cell();
        im = clone.instance_mappings().save(&im, &InstanceMappingUpdate::new().cell(Some(&other))).unwrap();
        let got = db.instance_mappings().get_by_instance_uuid(&im.instance_uuid).unwrap();
        assert_eq!(got.cell_mapping.as_ref(), Some(&other));
        assert_eq!(stats(&db).hits, 0);
    }

    fn destroy_invalidates(t) {
        let db = cached(t, 100, LONG);
        let cell = t.cell();
        let im = t.instance(Some(&cell), "p", "u");
        db.instance_mappings().get_by_instance_uuid(&im.instance_uuid).unwrap();
        db.instance_mappings().destroy(&im.instance_uuid).unwrap();
        match db.instance_mappings().get_by_instance_uuid(&im.instance_uuid) {
            Err(Error::InstanceMappingNotFound { .. }) => {}
            other => panic!("{other:?}"),
        }
    }

    fn destroy_bulk_invalidates(t) {
        let db = cached(t, 100, LONG);
        let cell = t.cell();
        let ims: Vec<_> = (0..5).map(|_| t.instance(Some(&cell), "p", "u")).collect();
        for im in &ims {
            db.instance_mappings().get_by_instance_uuid(&im.instance_uuid).unwrap();
        }
        assert_eq!(stats(&db).entries, 5);
        let gone = [ims[1].instance_uuid.as_str().to_uppercase(), ims[3].instance_uuid.to_string()];
        assert_eq!(db.instance_mappings().destroy_bulk(&gone).unwrap(), 2);
        assert_eq!(stats(&db).entries, 3);
        for (i, im) in ims.iter().enumerate() {
            let r = db.instance_mappings().get_by_instance_uuid(&im.instance_uuid);
            assert_eq!(r.is_ok(), i != 1 && i != 3, "{i}: {r:?}");
        }
        assert_eq!(stats(&db).hits, 3);
    }

    fn cell_save_and_destroy_clear_the_cache(t) {
        let db = cached(t, 100, LONG);
        let mut cell = t.cell();
        let im = t.instance(Some(&cell), "p", "u");
        db.instance_mappings().get_by_instance_uuid(&im.instance_uuid).unwrap();
        cell = db.cells()
            .save(&cell, &CellMappingUpdate::new().name(Some("renamed")).disabled(true))
            .unwrap();
        let got = db.instance_mappings().get_by_instance_uuid(&im.instance_uuid).unwrap();
        let got_cell = got.cell_mapping.unwrap();
        assert_eq!(got_cell.name.as_deref(), Some("renamed"));
        assert!(got_cell.disabled);
        assert_eq!(got_cell, cell);
        assert_eq!(stats(&db).entries, 1);
        let spare = t.cell();
        db.cells().destroy(spare.uuid).unwrap();
        assert_eq!(stats(&db).entries, 0);
        assert_eq!(stats(&db).hits, 0);
    }

    fn capacity_bounds_the_cache(t) {
        let db = cached(t, 3, LONG);
        let cell = t.cell();
        let ims: Vec<_> = (0..5).map(|_| t.instance(Some(&cell), "p", "u")).collect();
        for im in &ims {
            db.instance_mappings().get_by_instance_uuid(&im.instance_uuid).unwrap();
        }
        let s = stats(&db);
        assert_eq!((s.entries, s.evictions), (3, 2));
        // The newest are kept.
        db.instance_mappings().get_by_instance_uuid(&ims[4].instance_uuid).unwrap();
        assert_eq!(stats(&db).hits, 1);
        db.instance_mappings().get_by_instance_uuid(&ims[0].instance_uuid).unwrap();
        assert_eq!(stats(&db).hits, 1);
    }

    fn other_writers_are_seen_after_the_ttl(t) {
        // `t.db` stands for another process: it shares no cache.
        let ttl = Duration::from_millis(200);
        let db = cached(t, 100, ttl);
        let cell = t.cell();
        let mut im = t.instance(Some(&cell), "p", "u");
        db.instance_mappings().get_by_instance_uuid(&im.instance_uuid).unwrap();
        im = t.instance_mappings()
            .save(&im, &InstanceMappingUpdate::new().queued_for_delete(true))
            .unwrap();
        // Within the TTL a lookup may be served from the cache (stale); once
        // it has passed, the entry expires and the write is seen.
        std::thread::sleep(ttl + Duration::from_millis(50));
        let got = db.instance_mappings().get_by_instance_uuid(&im.instance_uuid).unwrap();
        assert!(got.queued_for_delete);
        let s = stats(&db);
        assert_eq!((s.hits, s.misses, s.expired), (0, 2, 1));
    }

    fn transactions_neither_read_nor_fill_the_cache(t) {
        let db = cached(t, 100, LONG);
        let cell = t.cell();
        let im = t.instance(Some(&cell), "p", "u");
        let uncommitted = mapping_testkit::new_instance("p", "u").cell(&cell);
        db.transaction::<_, cell_mappings::Error, _>(|tx| {
            tx.instance_mappings().get_by_instance_uuid(&im.instance_uuid)?;
            tx.instance_mappings().create(uncommitted.clone())?;
            tx.instance_mappings().get_by_instance_uuid(&uncommitted.instance_uuid)?;
            Err::<(), _>(Error::InvalidInput { field: "test", reason: "roll back".into() })
        })
        .unwrap_err();
        assert_eq!(stats(&db), FirstTierStats::default());
        assert!(db
            .instance_mappings()
            .get_by_instance_uuid(&uncommitted.instance_uuid)
            .unwrap_err()
            .is_not_found());
    }

    fn writes_in_a_transaction_invalidate_even_when_rolled_back(t) {
        let db = cached(t, 100, LONG);
        let cell = t.cell();
        let im = t.instance(Some(&cell), "p", "u");
        db.instance_mappings().get_by_instance_uuid(&im.instance_uuid).unwrap();
        db.transaction::<_, cell_mappings::Error, _>(|tx| {
            tx.instance_mappings().save(&im, &InstanceMappingUpdate::new().queued_for_delete(true))?;
            Err::<(), _>(Error::InvalidInput { field: "test", reason: "roll back".into() })
        })
        .unwrap_err();
        assert_eq!(stats(&db).entries, 0);
        let got = db.instance_mappings().get_by_instance_uuid(&im.instance_uuid).unwrap();
        assert!(!got.queued_for_delete);
        // Committed: the new value is read.
        let saved = db.transaction::<_, cell_mappings::Error, _>(|tx| {
            tx.instance_mappings().save(&im, &InstanceMappingUpdate::new().queued_for_delete(true))
        })
        .unwrap();
        assert!(saved.queued_for_delete);
        assert!(!im.queued_for_delete, "the argument is left as it was");
        let got = db.instance_mappings().get_by_instance_uuid(&im.instance_uuid).unwrap();
        assert!(got.queued_for_delete);
        assert_eq!(stats(&db).hits, 0);
    }

    fn clear_cache_empties_it(t) {
        let db = cached(t, 100, LONG);
        let cell = t.cell();
        let im = t.instance(Some(&cell), "p", "u");
        db.instance_mappings().get_by_instance_uuid(&im.instance_uuid).unwrap();
        db.clear_cache();
        assert_eq!(stats(&db).entries, 0);
        t.clear_cache(); // no cache: a no-op
    }
}
