//! Profiling mode (`mapping-bench --profile CASE`): loads the table as the
//! timed run does, warms both sides, then runs `--iters N` iterations of
//! one case through the object API and the same number through the raw
//! baseline, each in a function of its own, with no timing. Meant for
//! callgrind, whose instruction counts stay stable on a loaded machine:
//!
//! ```text
//! cargo build --profile profiling -p mapping-bench --features all-backends
//! valgrind --tool=callgrind --collect-atstart=no \
//!     --toggle-collect='*profile_object*' --toggle-collect='*profile_raw*' \
//!     --callgrind-out-file=target/bench/cg.lookup_one.sqlite \
//!     target/profiling/mapping-bench --profile lookup_one --iters 2000 \
//!     --backends sqlite --sizes 10000
//! callgrind_annotate --inclusive=yes target/bench/cg.lookup_one.sqlite | grep profile_
//! ```
//!
//! Only the client's instructions are counted (the servers are other
//! processes): the per-call cost of the object API over the raw client.

use std::hint::black_box;

use mapping_diesel::Database;

use crate::raw::Raw;
use crate::setup::{Data, Rng};
use crate::PER_PROJECT;

/// The cases this mode knows.
pub(crate) const CASES: &[&str] = &[
    "lookup_one",
    "lookup_1000",
    "counts",
    "list_project",
    "schedule_one",
    "create_one",
];

/// Runs `iters` iterations of `case` per side (warm-up first, not counted).
pub(crate) fn run(case: &str, iters: usize, db: &Database, raw: &mut dyn Raw, data: &Data) {
    assert!(CASES.contains(&case), "--profile: one of {CASES:?}");
    let warm = (iters / 10).max(10);
    let mut fresh = Fresh::new(case, warm + iters, db);
    profile_warm(case, warm, db, raw, data, &mut fresh);
    profile_object(case, iters, db, data, &mut fresh);
    profile_raw(case, iters, raw, data, &mut fresh);
    eprintln!("   profiled {case}: {iters} iterations per side");
}

/// The inputs of iteration `i` (the same on both sides).
struct Inputs {
    uuid_sets: Vec<Vec<String>>,
}

impl Inputs {
    fn new(case: &str, data: &Data) -> Self {
        let uuid_sets = if case == "lookup_1000" {
            data.uuid_sets(&mut Rng(42))
        } else {
            Vec::new()
        };
        Self { uuid_sets }
    }
}

/// Unscheduled mappings made before the collected functions run, for the
/// write cases: one per iteration and side.
struct Fresh {
    backend: mapping_diesel::BackendKind,
    objects: Vec<mapping_model::InstanceMapping>,
    uuids: Vec<String>,
}

impl Fresh {
    fn new(case: &str, n: usize, db: &Database) -> Self {
        if case != "schedule_one" {
            return Self {
                backend: db.backend(),
                objects: Vec::new(),
                uuids: Vec::new(),
            };
        }
        let make = |tag: &str| -> Vec<String> {
            let news: Vec<_> = (0..n)
                .map(|_| {
                    mapping_model::NewInstanceMapping::new(mapping_testkit::uuid(), tag, "user")
                })
                .collect();
            let uuids = news.iter().map(|m| m.instance_uuid.clone()).collect();
            db.instance_mappings()
                .create_bulk(news)
                .expect("fresh mappings");
            uuids
        };
        let object_uuids = make("profile-object");
        let objects = db
            .instance_mappings()
            .get_by_instance_uuids(&object_uuids)
            .expect("read fresh");
        Self {
            backend: db.backend(),
            objects,
            uuids: make("profile-raw"),
        }
    }
}

fn project_of(i: usize, data: &Data) -> (String, String) {
    let p = (i * 7919) % data.projects();
    (Data::project(p * PER_PROJECT), Data::user(i))
}

fn uuid_of(i: usize, data: &Data) -> &str {
    &data.uuids[(i * 7919) % data.uuids.len()]
}

#[inline(never)]
fn profile_warm(
    case: &str,
    iters: usize,
    db: &Database,
    raw: &mut dyn Raw,
    data: &Data,
    fresh: &mut Fresh,
) {
    object_iters(case, iters, db, data, fresh);
    raw_iters(case, iters, raw, data, fresh);
}

/// The object API's iterations (the function callgrind collects in).
#[inline(never)]
fn profile_object(case: &str, iters: usize, db: &Database, data: &Data, fresh: &mut Fresh) {
    object_iters(case, iters, db, data, fresh);
}

/// The raw baseline's iterations (the function callgrind collects in).
#[inline(never)]
fn profile_raw(case: &str, iters: usize, raw: &mut dyn Raw, data: &Data, fresh: &mut Fresh) {
    raw_iters(case, iters, raw, data, fresh);
}

fn object_iters(case: &str, iters: usize, db: &Database, data: &Data, fresh: &mut Fresh) {
    let inputs = Inputs::new(case, data);
    let schedule = mapping_model::InstanceMappingUpdate::new().cell(Some(&data.cells[0]));
    for i in 0..iters {
        match case {
            "lookup_one" => {
                black_box(
                    db.instance_mappings()
                        .get_by_instance_uuid(uuid_of(i, data)),
                )
                .expect("lookup");
            }
            "lookup_1000" => {
                let set = &inputs.uuid_sets[i % inputs.uuid_sets.len()];
                black_box(db.instance_mappings().get_by_instance_uuids(set)).expect("lookup many");
            }
            "counts" => {
                let (p, u) = project_of(i, data);
                black_box(db.instance_mappings().get_counts(&p, Some(&u))).expect("counts");
            }
            "list_project" => {
                let (p, _) = project_of(i, data);
                black_box(db.instance_mappings().get_by_project_id(&p)).expect("list");
            }
            "create_one" => {
                let new = mapping_model::NewInstanceMapping::new(
                    mapping_testkit::uuid(),
                    "bench-new",
                    "user-new",
                );
                black_box(db.instance_mappings().create(new)).expect("create");
            }
            "schedule_one" => {
                let m = fresh.objects.pop().expect("a fresh mapping");
                black_box(db.instance_mappings().save(&m, &schedule)).expect("schedule");
            }
            _ => unreachable!("checked in run"),
        }
    }
}

fn raw_iters(case: &str, iters: usize, raw: &mut dyn Raw, data: &Data, fresh: &mut Fresh) {
    let inputs = Inputs::new(case, data);
    for i in 0..iters {
        match case {
            "lookup_one" => {
                black_box(raw.lookup_one(uuid_of(i, data)));
            }
            "lookup_1000" => {
                black_box(raw.lookup_many(&inputs.uuid_sets[i % inputs.uuid_sets.len()]));
            }
            "counts" => {
                let (p, u) = project_of(i, data);
                black_box(raw.counts(&p, &u));
            }
            "list_project" => {
                let (p, _) = project_of(i, data);
                black_box(raw.list_project(&p));
            }
            "create_one" => {
                let u = mapping_testkit::uuid();
                let now = crate::setup::now_text(fresh.backend);
                black_box(raw.insert_one(&u, "bench-new", "user-new", &now));
            }
            "schedule_one" => {
                let u = fresh.uuids.pop().expect("a fresh uuid");
                let now = crate::setup::now_text(fresh.backend);
                black_box(raw.schedule(&u, data.cells[0].id, &now));
            }
            _ => unreachable!("checked in run"),
        }
    }
}
