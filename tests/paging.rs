//! Keyset-paged walks of a cell's and a project's mappings.

mod support;

use cell_mappings::{Error, InstanceMapping};
use mapping_testkit::backend_tests;
use support::raw_instance;

fn ids(ims: &[InstanceMapping]) -> Vec<i32> {
    ims.iter().map(|im| im.id).collect()
}

backend_tests! {
    fn a_cell_is_walked_page_by_page_in_id_order(t) {
        let a = t.cell();
        let b = t.cell();
        let mut want = Vec::new();
        for i in 0..7 {
            want.push(t.instance(Some(&a), if i % 2 == 0 { "p" } else { "q" }, "u").id);
            t.instance(Some(&b), "p", "u");
        }
        t.instance(None, "p", "u");
        for size in [1, 3, 7, 8, 1000] {
            let got: Vec<InstanceMapping> =
                t.instance_mappings().walk_by_cell_id(a.id, size).collect::<Result<_, _>>().unwrap();
            assert_eq!(ids(&got), want, "page size {size}");
            assert!(got.iter().all(|im| im.cell_mapping.as_ref() == Some(&a)));
        }
        let first = t.instance_mappings().get_page_by_cell_id(a.id, None, 3).unwrap();
        assert_eq!(ids(&first), want[..3]);
        let next = t.instance_mappings().get_page_by_cell_id(a.id, Some(first[2].id), 3).unwrap();
        assert_eq!(ids(&next), want[3..6]);
        let last = t.instance_mappings().get_page_by_cell_id(a.id, Some(want[6]), 3).unwrap();
        assert!(last.is_empty());
        assert_eq!(t.instance_mappings().walk_by_cell_id(i32::MAX, 5).count(), 0);
    }

    fn a_project_walk_includes_unscheduled_and_odd_rows(t) {
        let a = t.cell();
        let mut want = vec![t.instance(Some(&a), "p", "u").id, t.instance(None, "p", "u").id];
        t.instance(Some(&a), "other", "u");
        raw_instance(t, "not a uuid at all", None, "p", None, None);
        let got: Vec<InstanceMapping> =
            t.instance_mappings().walk_by_project_id("p", 2).collect::<Result<_, _>>().unwrap();
        assert_eq!(got.len(), 3);
        want.push(got[2].id);
        assert_eq!(ids(&got), want);
        assert_eq!(got[2].instance_uuid, "not a uuid at all", "read as stored");
        assert_eq!(got, t.instance_mappings().get_by_project_id("p").unwrap().into_iter().collect::<Vec<_>>().tap_sort());
    }

    fn bad_page_sizes_are_refused(t) {
        for size in [0, cell_mappings::MAX_PAGE_SIZE + 1] {
            assert!(matches!(
                t.instance_mappings().get_page_by_cell_id(1, None, size),
                Err(Error::InvalidInput { field: "limit", .. })
            ));
            let mut ims = t.instance_mappings();
            let mut walk = ims.walk_by_project_id("p", size);
            assert!(matches!(walk.next(), Some(Err(Error::InvalidInput { field: "limit", .. }))));
            assert!(walk.next().is_none(), "a walk ends after an error");
        }
        assert!(matches!(
            t.instance_mappings().get_page_by_project_id("", None, 5),
            Err(Error::InvalidInput { field: "project_id", .. })
        ));
    }

    fn a_walk_inside_a_transaction_sees_its_writes(t) {
        let a = t.cell();
        t.transaction::<_, Error, _>(|tx| {
            for _ in 0..4 {
                tx.instance_mappings().create(mapping_testkit::new_instance("p", "u").cell(&a))?;
            }
            assert_eq!(tx.instance_mappings().walk_by_cell_id(a.id, 3).count(), 4);
            Ok(())
        })
        .unwrap();
    }
}

/// Sorting by id, inline.
trait TapSort {
    fn tap_sort(self) -> Self;
}

impl TapSort for Vec<InstanceMapping> {
    fn tap_sort(mut self) -> Self {
        self.sort_by_key(|im| im.id);
        self
    }
}
