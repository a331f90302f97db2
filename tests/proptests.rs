//! Property-based tests: random valid and invalid inputs thrown at the object
//! API on every backend. Valid input round-trips exactly; invalid input is
//! `Error::InvalidInput` naming one of the bad fields, and writes nothing.
//!
//! The expected outcome comes from a model of the rules written here, apart
//! from the library's own validation: a UUID is 36 characters, hyphens at
//! 8/13/18/23 and hex digits elsewhere; a VARCHAR(255) value is at most 255
//! characters; no text holds NUL or a character outside the BMP; a TEXT
//! value is at most 65,535 bytes; required values are not empty.

mod support;

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicU64, Ordering};

use cell_mappings::{
    Error, HostMappingUpdate, InstanceMappingUpdate, NewCellMapping, NewHostMapping,
    NewInstanceMapping,
};
use mapping_testkit::{backend_tests, TestDb};
use proptest::prelude::*;
use proptest::test_runner::{Config, TestCaseError, TestRunner};

/// Cases per property and backend: enough to hit every class of input,
/// few enough to keep the suite fast.
const CASES: u32 = 48;

fn runner() -> TestRunner {
    TestRunner::new(Config {
        cases: CASES,
        failure_persistence: None,
        ..Config::default()
    })
}

/// Runs a property against `t`, failing the test with the minimal input.
fn check<S: Strategy>(t: &TestDb, strategy: S, test: impl Fn(S::Value) -> Result<(), TestCaseError>)
where
    S::Value: std::fmt::Debug,
{
    if let Err(e) = runner().run(&strategy, test) {
        panic!("{:?}: {e}", t.backend());
    }
}

// ---- the model --------------------------------------------------------------

fn storable(s: &str) -> bool {
    !s.contains('\0') && s.chars().all(|c| u32::from(c) <= 0xFFFF)
}

fn varchar_ok(s: &str, required: bool) -> bool {
    storable(s) && s.chars().count() <= 255 && !(required && s.is_empty())
}

fn text_ok(s: &str) -> bool {
    storable(s) && s.len() <= 65_535
}

/// The stored form of a uuid argument.
fn canonical(s: &str) -> String {
    uuid::Uuid::parse_str(s)
        .map(|u| u.to_string())
        .unwrap_or_default()
}

/// Every form `Uuid::parse_str` accepts is a uuid argument.
fn uuid_ok(s: &str) -> bool {
    uuid::Uuid::parse_str(s).is_ok()
}

/// The fields expected to be refused (empty: the call must succeed).
fn bad_fields(checks: &[(&'static str, bool)]) -> BTreeSet<&'static str> {
    checks
        .iter()
        .filter(|(_, ok)| !ok)
        .map(|(f, _)| *f)
        .collect()
}

/// Asserts that `result` is refused naming one of `bad`.
fn refused<T: std::fmt::Debug>(
    result: cell_mappings::Result<T>,
    bad: &BTreeSet<&'static str>,
) -> Result<(), TestCaseError> {
    match result {
        Err(Error::InvalidInput { field, .. }) if bad.contains(field) => Ok(()),
        other => Err(TestCaseError::fail(format!(
            "expected InvalidInput on one of {bad:?}, got {other:?}"
        ))),
    }
}

fn ok<T>(result: cell_mappings::Result<T>) -> Result<T, TestCaseError> {
    result.map_err(|e| TestCaseError::fail(format!("unexpected error: {e:?}")))
}

// ---- the generators -----------------------------------------------------------

/// Text of every class: ordinary, any Unicode (outside the BMP included),
/// empty, around the 255-character limit (in 1- and 3-byte characters), with
/// NUL, with a character outside the BMP.
fn text() -> impl Strategy<Value = String> {
    let bmp = any::<char>().prop_filter("BMP", |c| u32::from(*c) <= 0xFFFF);
    prop_oneof![
        4 => "[a-zA-Z0-9._-]{1,40}",
        2 => "\\PC{0,40}",
        1 => Just(String::new()),
        1 => "[a-z]{250,260}",
        1 => prop::collection::vec(bmp, 250..260).prop_map(String::from_iter),
        1 => ("[a-z]{0,8}", "[a-z]{0,8}").prop_map(|(a, b)| format!("{a}\0{b}")),
        1 => ("[a-z]{0,8}", prop::char::range('\u{10000}', '\u{10FFFF}'))
            .prop_map(|(a, c)| format!("{a}{c}")),
    ]
}

/// UUIDs in canonical and upper case, in other forms, and arbitrary text.
fn uuid_input() -> impl Strategy<Value = String> {
    prop_oneof![
        3 => any::<u128>().prop_map(|n| uuid::Uuid::from_u128(n).hyphenated().to_string()),
        1 => any::<u128>().prop_map(|n| uuid::Uuid::from_u128(n).hyphenated().to_string().to_uppercase()),
        1 => any::<u128>().prop_map(|n| uuid::Uuid::from_u128(n).simple().to_string()),
        1 => any::<u128>().prop_map(|n| uuid::Uuid::from_u128(n).braced().to_string()),
        1 => text(),
    ]
}

/// A prefix unique to each case, so that rows of different cases never
/// collide (MySQL compares case- and accent-insensitively).
fn unique(s: String) -> String {
    static N: AtomicU64 = AtomicU64::new(0);
    if s.is_empty() {
        s
    } else {
        format!("{}-{s}", N.fetch_add(1, Ordering::Relaxed))
    }
}

// ---- the properties -------------------------------------------------------------

backend_tests! {
    fn instance_mappings_round_trip_or_are_refused(t) {
        let cell = t.cell();
        let strategy = (uuid_input(), text(), text(), any::<Option<bool>>(), any::<bool>());
        check(t, strategy, |(uuid, project, user, queued, in_cell)| {
            let bad = bad_fields(&[
                ("instance_uuid", uuid_ok(&uuid)),
                ("project_id", varchar_ok(&project, true)),
                ("user_id", varchar_ok(&user, true)),
            ]);
            let mut new = NewInstanceMapping::new(uuid.clone(), project.clone(), user.clone());
            new.queued_for_delete = queued;
            if in_cell {
                new = new.cell(&cell);
            }
            if bad.is_empty() && t.instance_mappings().get_by_instance_uuid(&uuid).is_ok() {
                // Another spelling of a uuid an earlier case created.
                return Ok(());
            }
            let before = support::snapshot(t);
            let result = t.instance_mappings().create(new);
            if !bad.is_empty() {
                refused(result, &bad)?;
                prop_assert_eq!(support::snapshot(t), before, "a refused create wrote something");
                return Ok(());
            }
            let created = ok(result)?;
            prop_assert_eq!(&created.instance_uuid, &canonical(&uuid));
            prop_assert_eq!(&created.project_id, &project);
            prop_assert_eq!(created.user_id.as_deref(), Some(user.as_str()));
            prop_assert_eq!(created.queued_for_delete, queued.unwrap_or(false));
            prop_assert_eq!(created.cell_mapping.is_some(), in_cell);
            let got = ok(t.instance_mappings().get_by_instance_uuid(&uuid))?;
            prop_assert_eq!(&got, &created);
            prop_assert!(ok(t.instance_mappings().get_by_project_id(&project))?.contains(&created));
            Ok(())
        });
    }

    fn instance_mapping_saves_round_trip_or_change_nothing(t) {
        let cell = t.cell();
        let strategy = (
            proptest::option::of(text()),
            proptest::option::of(text()),
            any::<Option<bool>>(),
            any::<Option<bool>>(),
        );
        check(t, strategy, |(project, user, queued, schedule)| {
            let im = t.instance(None, "p", "u");
            let mut update = InstanceMappingUpdate::new();
            update.project_id = project.clone();
            update.user_id = user.clone();
            update.queued_for_delete = queued;
            update.cell_mapping = schedule.map(|s| s.then(|| cell.clone()));
            let bad = bad_fields(&[
                ("project_id", project.as_deref().is_none_or(|p| varchar_ok(p, true))),
                ("user_id", user.as_deref().is_none_or(|u| varchar_ok(u, true))),
            ]);
            let stored = ok(t.instance_mappings().get_by_instance_uuid(&im.instance_uuid))?;
            let result = t.instance_mappings().save(&im, &update);
            if !bad.is_empty() {
                refused(result, &bad)?;
                prop_assert_eq!(&im, &stored, "the object changed");
                prop_assert_eq!(
                    ok(t.instance_mappings().get_by_instance_uuid(&im.instance_uuid))?,
                    stored,
                    "the row changed"
                );
                return Ok(());
            }
            let saved = ok(result)?;
            prop_assert_eq!(ok(t.instance_mappings().get_by_instance_uuid(&im.instance_uuid))?, saved);
            Ok(())
        });
    }

    fn cells_round_trip_or_are_refused(t) {
        let strategy = (uuid_input(), proptest::option::of(text()), text(), text(), any::<bool>());
        check(t, strategy, |(uuid, name, transport_url, database_connection, disabled)| {
            let bad = bad_fields(&[
                ("uuid", uuid_ok(&uuid)),
                ("name", name.as_deref().is_none_or(|n| varchar_ok(n, false))),
                ("transport_url", text_ok(&transport_url)),
                ("database_connection", text_ok(&database_connection)),
            ]);
            let mut new = NewCellMapping::new(uuid.clone(), transport_url.clone(), database_connection.clone())
                .disabled(disabled);
            new.name = name.clone();
            let before = support::snapshot(t);
            if bad.is_empty() && t.cells().get_by_uuid(&uuid).is_ok() {
                // Another spelling of a uuid an earlier case created.
                return Ok(());
            }
            let result = t.cells().create(new);
            if !bad.is_empty() {
                refused(result, &bad)?;
                prop_assert_eq!(support::snapshot(t), before, "a refused create wrote something");
                return Ok(());
            }
            let created = ok(result)?;
            prop_assert_eq!(&created.uuid.to_string(), &canonical(&uuid));
            prop_assert_eq!(&created.name, &name);
            prop_assert_eq!(&created.transport_url, &transport_url);
            prop_assert_eq!(&created.database_connection, &database_connection);
            prop_assert_eq!(created.disabled, disabled);
            prop_assert_eq!(ok(t.cells().get_by_uuid(&uuid))?, created);
            Ok(())
        });
    }

    fn hosts_round_trip_or_are_refused(t) {
        let cell = t.cell();
        let other = t.cell();
        check(t, (text().prop_map(unique), text().prop_map(unique)), |(host, renamed)| {
            let bad = bad_fields(&[("host", varchar_ok(&host, true))]);
            let before = support::snapshot(t);
            let result = t.host_mappings().create(NewHostMapping::new(host.clone(), &cell));
            if !bad.is_empty() {
                refused(result, &bad)?;
                prop_assert_eq!(support::snapshot(t), before, "a refused create wrote something");
                return Ok(());
            }
            let created = ok(result)?;
            prop_assert_eq!(&created.host, &host);
            prop_assert_eq!(&ok(t.host_mappings().get_by_host(&host))?, &created);
            // Rename and move it.
            let update = HostMappingUpdate::new().host(renamed.clone()).cell(&other);
            let result = t.host_mappings().save(&created, &update);
            if varchar_ok(&renamed, true) {
                let saved = ok(result)?;
                prop_assert_eq!(&ok(t.host_mappings().get_by_host(&renamed))?, &saved);
                prop_assert_eq!(&saved.cell_mapping, &other);
            } else {
                refused(result, &bad_fields(&[("host", false)]))?;
                prop_assert_eq!(&ok(t.host_mappings().get_by_host(&host))?.cell_mapping, &cell);
            }
            Ok(())
        });
    }

    fn lookups_never_panic_and_refuse_exactly_the_bad_input(t) {
        let cell = t.cell();
        t.instance(Some(&cell), "p", "u");
        t.host(&cell);
        let before = support::snapshot(t);
        check(t, (uuid_input(), text(), text(), proptest::option::of(-5i64..50)), |(uuid, s1, s2, limit)| {
            let im = || t.instance_mappings();
            let uuid_bad = bad_fields(&[("instance_uuid", uuid_ok(&uuid))]);
            let cell_bad = bad_fields(&[("cell_uuid", uuid_ok(&uuid))]);
            let s1_ok = varchar_ok(&s1, true);
            let s2_ok = varchar_ok(&s2, true);
            if uuid_bad.is_empty() {
                match im().get_by_instance_uuid(&uuid) {
                    Err(Error::InstanceMappingNotFound { .. }) => {}
                    other => return Err(TestCaseError::fail(format!("{other:?}"))),
                }
                match t.cells().get_by_uuid(&uuid) {
                    Err(Error::CellMappingNotFound { .. }) => {}
                    other => return Err(TestCaseError::fail(format!("{other:?}"))),
                }
                prop_assert!(ok(im().get_by_instance_uuids(std::slice::from_ref(&uuid)))?.is_empty());
                prop_assert_eq!(ok(im().destroy_bulk(std::slice::from_ref(&uuid)))?, 0);
            } else {
                refused(im().get_by_instance_uuid(&uuid), &uuid_bad)?;
                refused(im().get_by_instance_uuids(std::slice::from_ref(&uuid)), &uuid_bad)?;
                refused(im().destroy_bulk(std::slice::from_ref(&uuid)), &uuid_bad)?;
                refused(t.cells().get_by_uuid(&uuid), &cell_bad)?;
                refused(t.cells().destroy(&uuid), &cell_bad)?;
            }
            let project_bad = bad_fields(&[("project_id", s1_ok)]);
            if s1_ok {
                ok(im().get_by_project_id(&s1))?;
                ok(t.cells().get_by_project_id(&s1))?;
                match t.host_mappings().get_by_host(&s1) {
                    Ok(_) | Err(Error::HostMappingNotFound { .. }) => {}
                    other => return Err(TestCaseError::fail(format!("{other:?}"))),
                }
            } else {
                refused(im().get_by_project_id(&s1), &project_bad)?;
                refused(t.cells().get_by_project_id(&s1), &project_bad)?;
                refused(t.host_mappings().get_by_host(&s1), &bad_fields(&[("host", false)]))?;
            }
            let counts_bad = bad_fields(&[("project_id", s1_ok), ("user_id", s2_ok)]);
            let counts = im().get_counts(&s1, Some(&s2));
            if counts_bad.is_empty() { ok(counts)?; } else { refused(counts, &counts_bad)?; }
            let listing_bad = bad_fields(&[
                ("cell_uuid", uuid_ok(&uuid)),
                ("project_id", s1_ok),
                ("limit", limit.is_none_or(|l| l >= 0)),
            ]);
            let listing = im().get_not_deleted_by_cell_and_project(&uuid, Some(&s1), limit);
            if listing_bad.is_empty() {
                prop_assert!(ok(listing)?.is_empty());
            } else {
                refused(listing, &listing_bad)?;
            }
            prop_assert_eq!(&support::snapshot(t), &before, "a lookup wrote something");
            Ok(())
        });
    }
}
