//! Batch operations: `create_bulk` (all or nothing, chunked to each backend's
//! bind-parameter limit) and every uuid-list operation at 100,000 uuids.

use cell_mappings::__private::rows_per_statement;
use cell_mappings::{Error, NewInstanceMapping};
use mapping_testkit::{backend_tests, new_instance, uuid};

fn news(n: usize, project: &str, user: &str) -> Vec<NewInstanceMapping> {
    (0..n).map(|_| new_instance(project, user)).collect()
}

fn uuids_of(news: &[NewInstanceMapping]) -> Vec<String> {
    news.iter().map(|n| n.instance_uuid.clone()).collect()
}

backend_tests! {
    fn bulk_create_writes_every_row_with_its_cell(t) {
        let (c1, c2) = (t.cell(), t.cell());
        // More rows than one statement holds, so the batch spans statements.
        let n = rows_per_statement(t.backend()) * 2 + 7;
        let mut batch = news(n, "p1", "u1");
        for (i, new) in batch.iter_mut().enumerate() {
            match i % 3 {
                0 => new.cell_mapping = Some(c1.clone()),
                1 => new.cell_mapping = Some(c2.clone()),
                _ => {}
            }
            if i % 5 == 0 {
                new.queued_for_delete = Some(true);
            }
        }
        let uuids = uuids_of(&batch);
        assert_eq!(t.instance_mappings().create_bulk(batch.clone()).unwrap(), n);
        let got = t.instance_mappings().get_by_instance_uuids(&uuids).unwrap();
        assert_eq!(got.len(), n);
        let by_uuid: std::collections::HashMap<_, _> =
            got.iter().map(|m| (m.instance_uuid.clone(), m)).collect();
        for new in &batch {
            let m = by_uuid[new.instance_uuid.as_str()];
            assert_eq!(m.cell_mapping, new.cell_mapping);
            assert_eq!(m.project_id, "p1");
            assert_eq!(m.user_id.as_deref(), Some("u1"));
            assert_eq!(m.queued_for_delete, new.queued_for_delete.unwrap_or(false));
            assert!(m.created_at.is_some() && m.updated_at.is_none());
            assert!(m.id > 0);
        }
        // Written as false, not NULL: counted.
        let expected = batch.iter().filter(|b| b.queued_for_delete.is_none()).count() as i64;
        assert_eq!(t.instance_mappings().get_counts("p1", None).unwrap().project, expected);
        // And readable one by one like any other mapping.
        let one = t.instance_mappings().get_by_instance_uuid(&uuids[1]).unwrap();
        assert_eq!(one.cell_mapping.as_ref(), Some(&c2));
    }

    fn bulk_create_of_nothing_is_zero(t) {
        assert_eq!(t.instance_mappings().create_bulk(Vec::new()).unwrap(), 0);
    }

    fn bulk_create_with_an_existing_uuid_writes_nothing(t) {
        let cell = t.cell();
        let existing = t.instance(Some(&cell), "p", "u");
        let mut batch = news(rows_per_statement(t.backend()) + 10, "p", "u");
        // In the second statement, so the first one has already run.
        let at = rows_per_statement(t.backend()) + 3;
        batch.insert(at, NewInstanceMapping::new(existing.instance_uuid.clone(), "p", "u"));
        let fresh: Vec<String> = uuids_of(&batch)
            .into_iter()
            .filter(|u| *u != existing.instance_uuid)
            .collect();
        match t.instance_mappings().create_bulk(batch) {
            Err(Error::InstanceMappingExists { instance_uuid }) => {
                assert_eq!(instance_uuid, existing.instance_uuid)
            }
            other => panic!("{other:?}"),
        }
        assert!(t.instance_mappings().get_by_instance_uuids(&fresh).unwrap().is_empty());
        assert_eq!(t.instance_mappings().get_by_project_id("p").unwrap().len(), 1);
    }

    fn bulk_create_with_a_uuid_twice_writes_nothing(t) {
        let mut batch = news(10, "p", "u");
        let twice = batch[4].instance_uuid.to_uppercase();
        batch.push(NewInstanceMapping::new(twice, "p", "u"));
        match t.instance_mappings().create_bulk(batch.clone()) {
            Err(Error::InstanceMappingExists { instance_uuid }) => {
                assert_eq!(instance_uuid, batch[4].instance_uuid)
            }
            other => panic!("{other:?}"),
        }
        assert!(t.instance_mappings().get_by_project_id("p").unwrap().is_empty());
    }

    fn bulk_create_with_an_invalid_row_writes_nothing(t) {
        let mut batch = news(10, "p", "u");
        batch[7].project_id = String::new();
        let err = t.instance_mappings().create_bulk(batch).unwrap_err();
        assert!(matches!(err, Error::InvalidInput { field: "project_id", .. }), "{err:?}");
        batch = news(3, "p", "u");
        batch[1].instance_uuid = "not-a-uuid".into();
        let err = t.instance_mappings().create_bulk(batch).unwrap_err();
        assert!(matches!(err, Error::InvalidInput { field: "instance_uuid", .. }), "{err:?}");
        assert!(t.instance_mappings().get_by_project_id("p").unwrap().is_empty());
    }

    fn bulk_create_into_a_missing_cell_writes_nothing(t) {
        let cell = t.cell();
        let mut gone = t.cell();
        t.cells().destroy(gone.uuid).unwrap();
        gone.id += 1000;
        let mut batch = news(20, "p", "u");
        for (i, b) in batch.iter_mut().enumerate() {
            b.cell_mapping = Some(if i == 13 { gone.clone() } else { cell.clone() });
        }
        match t.instance_mappings().create_bulk(batch) {
            Err(Error::CellMappingNotFound { uuid }) => assert_eq!(uuid, gone.uuid.to_string()),
            other => panic!("{other:?}"),
        }
        assert!(t.instance_mappings().get_by_project_id("p").unwrap().is_empty());
    }

    fn bulk_create_in_a_transaction_rolls_back_with_it(t) {
        let batch = news(50, "p", "u");
        let err = t
            .transaction::<_, cell_mappings::Error, _>(|tx| {
                tx.instance_mappings().create_bulk(batch.clone())?;
                Err::<(), _>(Error::InvalidInput { field: "test", reason: "roll back".into() })
            })
            .unwrap_err();
        assert!(matches!(err, Error::InvalidInput { field: "test", .. }));
        assert!(t.instance_mappings().get_by_project_id("p").unwrap().is_empty());
    }

    fn failed_bulk_create_leaves_the_transaction_usable(t) {
        let existing = t.instance(None, "p", "u");
        let mut batch = news(30, "p", "u");
        batch.push(NewInstanceMapping::new(existing.instance_uuid.clone(), "p", "u"));
        let other = new_instance("p", "u");
        t.transaction::<_, cell_mappings::Error, _>(|tx| {
            let err = tx.instance_mappings().create_bulk(batch.clone()).unwrap_err();
            assert!(matches!(err, Error::InstanceMappingExists { .. }), "{err:?}");
            tx.instance_mappings().create(other.clone())?;
            Ok(())
        })
        .unwrap();
        let all = t.instance_mappings().get_by_project_id("p").unwrap();
        assert_eq!(all.len(), 2);
    }

    fn count_by_uuids_and_user_counts_only_that_users_live_rows(t) {
        let cell = t.cell();
        let mut batch = vec![
            new_instance("p", "u").cell(&cell),
            new_instance("p", "u"),
            new_instance("p", "u").queued_for_delete(true),
            new_instance("p", "u"),
            new_instance("p", "other").cell(&cell),
            new_instance("p", "u"),
        ];
        batch[1].queued_for_delete = Some(false);
        let uuids = uuids_of(&batch);
        t.instance_mappings().create_bulk(batch).unwrap();
        // Rows from old releases: NULL queued_for_delete, NULL user_id.
        t.exec(&format!(
            "UPDATE instance_mappings SET queued_for_delete = NULL WHERE instance_uuid = '{}'",
            uuids[3]
        ));
        t.exec(&format!(
            "UPDATE instance_mappings SET user_id = NULL WHERE instance_uuid = '{}'",
            uuids[5]
        ));
        let mut asked = uuids.clone();
        asked.push(uuid());
        assert_eq!(t.instance_mappings().get_count_by_uuids_and_user(&asked, "u").unwrap(), 2);
        assert_eq!(t.instance_mappings().get_count_by_uuids_and_user(&asked, "other").unwrap(), 1);
        assert_eq!(t.instance_mappings().get_count_by_uuids_and_user(&asked[..1], "u").unwrap(), 1);
        assert_eq!(t.instance_mappings().get_count_by_uuids_and_user(&[] as &[String], "u").unwrap(), 0);
    }

    fn one_hundred_thousand_uuids(t) {
        const N: usize = 100_000;
        let cell = t.cell();
        let batch: Vec<NewInstanceMapping> =
            (0..N).map(|_| new_instance("big", "bob").cell(&cell)).collect();
        let uuids = uuids_of(&batch);
        assert_eq!(t.instance_mappings().create_bulk(batch).unwrap(), N);
        // Unknown uuids mixed in are ignored.
        let mut asked = uuids.clone();
        asked.extend((0..1000).map(|_| uuid()));
        let got = t.instance_mappings().get_by_instance_uuids(&asked).unwrap();
        assert_eq!(got.len(), N);
        assert!(got.iter().all(|m| m.cell_mapping.as_ref() == Some(&cell)));
        assert_eq!(
            t.instance_mappings().get_count_by_uuids_and_user(&asked, "bob").unwrap(),
            N as i64
        );
        assert_eq!(t.instance_mappings().get_count_by_uuids_and_user(&asked, "eve").unwrap(), 0);
        assert_eq!(t.instance_mappings().destroy_bulk(&asked).unwrap(), N);
        assert!(t.instance_mappings().get_by_project_id("big").unwrap().is_empty());
    }
}
