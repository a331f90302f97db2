//! The measured cases: each one through the object API and, where there is
//! one, through the raw driver; and the query plans behind them.

use std::time::Instant;

use mapping_diesel::__private::{rows_per_statement, url_digest};
use mapping_diesel::{BackendKind, Database};
use mapping_model::{CellMapping, InstanceMapping, InstanceMappingUpdate, NewInstanceMapping};
use mapping_testkit::uuid;

use crate::harness::{fmt_ns, pair, single, Plan, Stats};
use crate::raw::{self, Raw, RawRow};
use crate::setup::{now_text, timestamp_text, Data, Rng};
use crate::{Measured, Report, BULK, CELLS, PER_PROJECT};

#[allow(clippy::too_many_arguments)]
pub(crate) fn run_cases(
    backend: BackendKind,
    size: usize,
    quick: bool,
    db: &Database,
    cached: &Database,
    raw: &mut dyn Raw,
    data: &Data,
    report: &mut Report,
) {
    let plan = Plan::standard(quick);
    let raw = std::cell::RefCell::new(raw);
    // `MAPPING_BENCH_ONLY=case,case` runs only those cases (for profiling).
    let only = std::env::var("MAPPING_BENCH_ONLY").ok();
    let want = |case: &str| {
        only.as_deref()
            .is_none_or(|o| o.split(',').any(|c| c == case))
    };
    let mut push = |case: &'static str, rows: usize, (object, raw): (Stats, Stats)| {
        eprintln!(
            "   {size:>8} {case:<16} object {:>10}  raw {:>10}  ratio {:.2}",
            fmt_ns(object.median()),
            fmt_ns(raw.median()),
            object.median() / raw.median()
        );
        report.results.push(Measured {
            backend,
            size,
            case,
            object,
            raw: Some(raw),
            rows,
        });
    };
    let n = data.uuids.len();

    let mut pick = Rng(42);
    let projects = data.projects();
    if want("lookup_one") {
        // Lookup of one mapping with its cell, warm pool.
        // Separate random streams: neither side reads rows the other has
        // just brought into a cache.
        let (mut r1, mut r2) = (Rng(0x9E37_79B9), Rng(0x85EB_CA6B));
        push(
            "lookup_one",
            1,
            pair(
                plan,
                || {
                    db.instance_mappings()
                        .get_by_instance_uuid(&data.uuids[r1.below(n)])
                        .expect("lookup")
                },
                || raw.borrow_mut().lookup_one(&data.uuids[r2.below(n)]),
            ),
        );
    }
    if want("lookup_1000") {
        // Lookup of 1,000 uuids at once.
        // Separate sets per side (see above).
        let (sets_a, sets_b) = (data.uuid_sets(&mut pick), data.uuid_sets(&mut pick));
        let (mut k1, mut k2) = (0usize, 0usize);
        push(
            "lookup_1000",
            1000,
            pair(
                plan,
                || {
                    k1 += 1;
                    db.instance_mappings()
                        .get_by_instance_uuids(&sets_a[k1 % sets_a.len()])
                        .expect("lookup many")
                },
                || {
                    k2 += 1;
                    raw.borrow_mut().lookup_many(&sets_b[k2 % sets_b.len()])
                },
            ),
        );
    }
    if want("counts") {
        // Counts for a project and a user.
        let (mut r1, mut r2) = (Rng(7), Rng(0xC2B2_AE35));
        push(
            "counts",
            1,
            pair(
                plan,
                || {
                    let i = r1.below(projects) * PER_PROJECT;
                    db.instance_mappings()
                        .get_counts(&Data::project(i), Some(&Data::user(i)))
                        .expect("counts")
                },
                || {
                    let i = r2.below(projects) * PER_PROJECT;
                    raw.borrow_mut().counts(&Data::project(i), &Data::user(i))
                },
            ),
        );
    }
    if want("list_project") {
        // Listing a project of 1,000 mappings.
        let (mut r1, mut r2) = (Rng(11), Rng(0x27D4_EB2F));
        push(
            "list_project",
            PER_PROJECT,
            pair(
                plan,
                || {
                    let p = Data::project(r1.below(projects) * PER_PROJECT);
                    db.instance_mappings().get_by_project_id(&p).expect("list")
                },
                || {
                    let p = Data::project(r2.below(projects) * PER_PROJECT);
                    raw.borrow_mut().list_project(&p)
                },
            ),
        );
    }
    if want("cell_memory") {
        // Peak heap of listing one cell (1/8 of the table): paged against whole.
        let m = crate::memory::cell_listing(db, &data.cells[0]);
        eprintln!(
            "   {size:>8} cell_memory      {} rows: walk peak {:?}, get_by_cell_id peak {:?}",
            m.rows, m.walk_peak, m.list_peak
        );
        report.memory.push((backend, size, m));
    }
    if want("create_one") || want("schedule_one") || want("schedule_same") {
        // Create one (unscheduled) mapping; the new rows feed the next cases.
        let created_obj = std::cell::RefCell::new(Vec::<InstanceMapping>::new());
        // The raw side's rows: uuid, id, created_at as sent.
        let created_raw = std::cell::RefCell::new(Vec::<(String, i64, String)>::new());
        let cap = if quick { 400 } else { 20_000 };
        push(
            "create_one",
            1,
            pair(
                plan.at_most(cap),
                || {
                    let m = db
                        .instance_mappings()
                        .create(NewInstanceMapping::new(uuid(), "bench-new", "user-new"))
                        .expect("create");
                    created_obj.borrow_mut().push(m);
                },
                || {
                    let u = uuid();
                    let now = now_text(backend);
                    let id = raw
                        .borrow_mut()
                        .insert_one(&u, "bench-new", "user-new", &now);
                    created_raw.borrow_mut().push((u, id, now));
                    id
                },
            ),
        );

        // Schedule one: assign its cell. With both scheduling cases, each
        // takes half of the created rows.
        let both = want("schedule_one") && want("schedule_same");
        let pool = created_obj.borrow().len().min(created_raw.borrow().len()) as u64;
        let pool = if both { pool / 2 } else { pool };
        let cell = &data.cells[0];
        let update = InstanceMappingUpdate::new().cell(Some(cell));
        let object_side = || {
            let m = created_obj.borrow_mut().pop().expect("a created mapping");
            db.instance_mappings().save(&m, &update).expect("schedule");
        };
        if want("schedule_one") {
            // The raw side: the bare keyed `UPDATE`, which checks nothing.
            push(
                "schedule_one",
                1,
                pair(plan.at_most(pool), object_side, || {
                    let (u, _, _) = created_raw.borrow_mut().pop().expect("a created row");
                    raw.borrow_mut().schedule(&u, cell.id, &now_text(backend))
                }),
            );
        }
        if want("schedule_same") {
            // The raw side runs the object API's own statement (the cell
            // checked, the row compared), binding the same values: what the
            // library adds over the driver for the same work.
            let sample = created_obj.borrow().last().cloned();
            let sql = sample.and_then(|m| {
                mapping_diesel::__private::save_statement_sql(db, &m, &update).expect("render")
            });
            match sql {
                None => eprintln!("   {size:>8} schedule_same    (no one-statement save here)"),
                Some(sql) => {
                    raw.borrow_mut().prepare_save(&sql);
                    let mut same = SameSave::new(backend, cell);
                    push(
                        "schedule_same",
                        1,
                        pair(plan.at_most(pool), object_side, || {
                            let (u, id, created) =
                                created_raw.borrow_mut().pop().expect("a created row");
                            let n = same.run(&mut **raw.borrow_mut(), &u, id, &created);
                            assert_eq!(n, 1, "the raw save matched no row: {sql}");
                        }),
                    );
                }
            }
        }
    }
    if want("bulk_create_10k") {
        // Bulk create of 10,000 mappings in one transaction (removed again,
        // untimed, after each sample so the table keeps its size).
        let samples = if quick { 2 } else { 7 };
        let per_statement = rows_per_statement(backend);
        let mut obj_ns = Vec::new();
        let mut raw_ns = Vec::new();
        for i in 0..=samples {
            let batch: Vec<NewInstanceMapping> = (0..BULK)
                .map(|j| {
                    NewInstanceMapping::new(uuid(), "bench-bulk", Data::user(j))
                        .cell(&data.cells[j % CELLS])
                })
                .collect();
            let uuids: Vec<String> = batch.iter().map(|b| b.instance_uuid.clone()).collect();
            let start = Instant::now();
            db.instance_mappings().create_bulk(batch).expect("bulk");
            let o = start.elapsed();
            db.instance_mappings().destroy_bulk(&uuids).expect("clean");
            let rows: Vec<RawRow> = (0..BULK)
                .map(|j| RawRow {
                    uuid: uuid(),
                    cell_id: data.cells[j % CELLS].id,
                    project: "bench-bulk".into(),
                    user: Data::user(j),
                })
                .collect();
            let start = Instant::now();
            raw.borrow_mut()
                .bulk_insert(&rows, per_statement, &now_text(backend));
            let r = start.elapsed();
            let uuids: Vec<&str> = rows.iter().map(|r| r.uuid.as_str()).collect();
            db.instance_mappings().destroy_bulk(&uuids).expect("clean");
            if i > 0 {
                obj_ns.push(o.as_nanos() as f64);
                raw_ns.push(r.as_nanos() as f64);
            }
        }
        push(
            "bulk_create_10k",
            BULK,
            (Stats::new(obj_ns, 1), Stats::new(raw_ns, 1)),
        );
    }
    if want("cache_hit") {
        // A cache hit (cache on, every key of the set already cached).
        let hot: Vec<&String> = (0..1000).map(|_| &data.uuids[pick.below(n)]).collect();
        for u in &hot {
            cached
                .instance_mappings()
                .get_by_instance_uuid(u)
                .expect("warm");
        }
        let mut k = 0usize;
        let hits = single(plan, || {
            k += 1;
            cached
                .instance_mappings()
                .get_by_instance_uuid(hot[k % hot.len()])
                .expect("hit")
        });
        eprintln!(
            "   {size:>8} cache_hit        {:>10}",
            fmt_ns(hits.median())
        );
        report.results.push(Measured {
            backend,
            size,
            case: "cache_hit",
            object: hits,
            raw: None,
            rows: 1,
        });
    }
}

pub(crate) fn explain(backend: BackendKind, raw: &mut dyn Raw, data: &Data, report: &mut Report) {
    let u = &data.uuids[data.uuids.len() / 2];
    let list: Vec<String> = data
        .uuids
        .iter()
        .step_by(997)
        .take(1000)
        .map(|u| format!("'{u}'"))
        .collect();
    let in_list = match backend {
        BackendKind::Postgres => format!(
            "= ANY('{{{}}}'::varchar[])",
            list.iter()
                .map(|s| s.trim_matches('\''))
                .collect::<Vec<_>>()
                .join(",")
        ),
        _ => format!("IN ({})", list.join(", ")),
    };
    // The reads' form of a list on PostgreSQL (see `UuidInArray` in
    // mapping-diesel); `destroy_bulk` still binds `= ANY`.
    let read_list = match backend {
        BackendKind::Postgres => format!(
            "IN (SELECT unnest('{{{}}}'::text[]))",
            list.iter()
                .map(|s| s.trim_matches('\''))
                .collect::<Vec<_>>()
                .join(",")
        ),
        _ => in_list.clone(),
    };
    let f = match backend {
        BackendKind::Postgres => "false",
        _ => "0",
    };
    let (p, user) = (Data::project(0), Data::user(0));
    let (cols, from) = (raw::COLUMNS, raw::FROM);
    let queries: Vec<(&'static str, String)> = vec![
        (
            "get_by_instance_uuid",
            format!("SELECT {cols} FROM {from} WHERE instance_mappings.instance_uuid = '{u}' LIMIT 1"),
        ),
        (
            "get_by_instance_uuids (1,000)",
            format!("SELECT {cols} FROM {from} WHERE instance_mappings.instance_uuid {read_list}"),
        ),
        (
            "save (schedule)",
            format!(
                "UPDATE instance_mappings SET updated_at = '2026-01-01 00:00:00', cell_id = {} \
                 WHERE instance_uuid = '{u}'",
                data.cells[0].id
            ),
        ),
        (
            "get_counts (project)",
            format!(
                "SELECT COUNT(*) FROM instance_mappings WHERE project_id = '{p}' AND queued_for_delete = {f}"
            ),
        ),
        (
            "get_counts (user)",
            format!(
                "SELECT COUNT(*) FROM instance_mappings WHERE project_id = '{p}' AND \
                 queued_for_delete = {f} AND user_id = '{user}'"
            ),
        ),
        (
            "get_by_project_id",
            format!("SELECT {cols} FROM {from} WHERE instance_mappings.project_id = '{p}'"),
        ),
        (
            "get_count_by_uuids_and_user",
            format!(
                "SELECT COUNT(*) FROM instance_mappings WHERE instance_uuid {read_list} AND \
                 COALESCE(user_id, '') = '{user}' AND queued_for_delete = {f}"
            ),
        ),
        (
            "destroy_bulk",
            format!("DELETE FROM instance_mappings WHERE instance_uuid {in_list}"),
        ),
    ];
    let prefix = match backend {
        BackendKind::Sqlite => "EXPLAIN QUERY PLAN ",
        _ => "EXPLAIN ",
    };
    for (what, sql) in queries {
        let rows = raw.text_query(&format!("{prefix}{sql}"));
        let shown = if sql.len() > 160 {
            format!("{}…", &sql[..160])
        } else {
            sql
        };
        report.explains.push((backend, what, shown, rows));
    }
}

/// The raw side of `schedule_same`: binds, in the library's order, the
/// values of the object API's one-statement save of a created (unscheduled)
/// mapping into `cell`, computing the URL digests on each call as the
/// library does.
struct SameSave {
    backend: BackendKind,
    cell_id: i32,
    cell_uuid: String,
    name: Option<String>,
    transport_url: String,
    database_connection: String,
    created_at: Option<String>,
    updated_at: Option<String>,
}

impl SameSave {
    fn new(backend: BackendKind, cell: &CellMapping) -> Self {
        let stored = |t: Option<chrono::NaiveDateTime>| t.map(|t| timestamp_text(backend, t));
        Self {
            backend,
            cell_id: cell.id,
            cell_uuid: cell.uuid.hyphenated().to_string(),
            name: cell.name.clone(),
            transport_url: cell.transport_url.clone(),
            database_connection: cell.database_connection.clone(),
            created_at: stored(cell.created_at),
            updated_at: stored(cell.updated_at),
        }
    }

    fn run(&mut self, raw: &mut dyn Raw, uuid: &str, id: i64, created: &str) -> usize {
        use raw::Param::{Int, Text};
        let now = now_text(self.backend);
        // The servers compare the URLs by digest (the statement carries no
        // password); SQLite compares them as they are.
        let (t, d) = match self.backend {
            BackendKind::Sqlite => (self.transport_url.clone(), self.database_connection.clone()),
            _ => (
                url_digest(&self.transport_url),
                url_digest(&self.database_connection),
            ),
        };
        let mut cell = vec![Int(self.cell_id), Text(&self.cell_uuid)];
        cell.extend(self.name.as_deref().map(Text));
        cell.extend([Text(&t), Text(&d)]);
        cell.extend(self.created_at.as_deref().map(Text));
        cell.extend(self.updated_at.as_deref().map(Text));
        let id = i32::try_from(id).expect("an id that fits the column");
        let set = [Text(&now), Int(self.cell_id)];
        let row = [
            Int(id),
            Text(uuid),
            Text("bench-new"),
            Text("user-new"),
            Text(created),
        ];
        let params: Vec<raw::Param<'_>> = match self.backend {
            // MariaDB joins the cell first: `UPDATE … JOIN cell_mappings ON …`.
            BackendKind::Mysql => cell.iter().chain(&set).chain(&row).copied().collect(),
            _ => set.iter().chain(&row).chain(&cell).copied().collect(),
        };
        raw.save_same(&params)
    }
}
