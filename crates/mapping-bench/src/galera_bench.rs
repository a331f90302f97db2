//! Lookups and creates on the Galera cluster of `scripts/galera.sh`: directly
//! on node 1, through HAProxy, and with `wsrep_sync_wait = 1`, beside the
//! single MariaDB server of the test services for comparison. Run with
//! `scripts/bench-galera.sh` (figures in docs/galera.md); prints a Markdown
//! table.
//!
//! `MAPPING_TEST_GALERA` (as `scripts/galera.sh env` prints it) names the
//! cluster; `MAPPING_TEST_MYSQL_URL` the single server (default: this
//! machine's). `--quick` makes a smoke run.

#[path = "harness.rs"]
#[allow(dead_code)]
mod harness;

use std::time::Duration;

use diesel::connection::SimpleConnection;
use harness::{fmt_ns, single, Plan};
use mapping_diesel::{ConnectionUrl, Database, Options};
use mapping_model::{Error, NewInstanceMapping};

/// Rows in the table before measuring.
const ROWS: usize = 10_000;

fn fresh(admin: &str, name: &str) -> String {
    let db = Database::open(admin).expect("open the admin URL");
    db.with_connection(|c| {
        c.batch_execute(&format!(
            "DROP DATABASE IF EXISTS {name}; CREATE DATABASE {name}"
        ))
        .map_err(Error::from)
    })
    .expect("create the bench database");
    ConnectionUrl::parse(admin)
        .and_then(|u| u.with_database(name))
        .expect("bench URL")
        .diesel_url()
        .to_owned()
}

fn drop_db(admin: &str, name: &str) {
    if let Ok(db) = Database::open(admin) {
        let _ = db.with_connection(|c| {
            c.batch_execute(&format!("DROP DATABASE IF EXISTS {name}"))
                .map_err(Error::from)
        });
    }
}

fn main() {
    let quick = std::env::args().any(|a| a == "--quick");
    let spec = std::env::var("MAPPING_TEST_GALERA")
        .expect("MAPPING_TEST_GALERA (scripts/galera.sh env) names the cluster");
    let (nodes, proxy) = spec.split_once(';').expect("<nodes>;<haproxy>");
    let node1 = nodes.split(',').next().expect("node 1").to_owned();
    let single_server = std::env::var("MAPPING_TEST_MYSQL_URL")
        .unwrap_or_else(|_| mapping_testkit::DEFAULT_MYSQL_URL.to_owned());
    let name = format!("galera_bench_{}", std::process::id());

    let cluster_db = fresh(&node1, &name);
    let on_proxy = ConnectionUrl::parse(proxy)
        .and_then(|u| u.with_database(&name))
        .expect("proxy URL")
        .diesel_url()
        .to_owned();
    let single_db = fresh(&single_server, &name);

    let opts = |sync: Option<u8>| Options::default().max_connections(1).wsrep_sync_wait(sync);
    let setups: [(&str, &str, Option<u8>); 5] = [
        ("single MariaDB server", &single_db, None),
        ("Galera node 1, direct", &cluster_db, None),
        ("Galera through HAProxy", &on_proxy, None),
        ("Galera node 1, wsrep_sync_wait=1", &cluster_db, Some(1)),
        (
            "Galera through HAProxy, wsrep_sync_wait=1",
            &on_proxy,
            Some(1),
        ),
    ];
    // Load the rows once per database.
    for url in [&single_db, &cluster_db] {
        let db = Database::open(url).expect("open");
        db.migrate().expect("migrate");
        let news: Vec<_> = (0..ROWS)
            .map(|_| NewInstanceMapping::new(uuid::Uuid::new_v4().to_string(), "bench", "u"))
            .collect();
        for chunk in news.chunks(1000) {
            db.instance_mappings()
                .create_bulk(chunk.to_vec())
                .expect("load rows");
        }
    }

    let plan = Plan::standard(quick);
    let create_plan = plan.at_most(if quick { 200 } else { 3000 });
    println!("| setup | lookup by instance uuid | create |");
    println!("|---|---|---|");
    for (label, url, sync) in setups {
        let db = Database::open_with(url, opts(sync)).expect("open");
        let probe = db
            .instance_mappings()
            .create(NewInstanceMapping::new(
                uuid::Uuid::new_v4().to_string(),
                "bench",
                "u",
            ))
            .expect("create");
        let lookup = single(plan, || {
            db.instance_mappings()
                .get_by_instance_uuid(&probe.instance_uuid)
                .expect("lookup")
        });
        let create = single(create_plan, || {
            db.instance_mappings()
                .create(NewInstanceMapping::new(
                    uuid::Uuid::new_v4().to_string(),
                    "bench",
                    "u",
                ))
                .expect("create")
        });
        println!(
            "| {label} | {} (q1 {}, q3 {}) | {} (q1 {}, q3 {}) |",
            fmt_ns(lookup.median()),
            fmt_ns(lookup.q1()),
            fmt_ns(lookup.q3()),
            fmt_ns(create.median()),
            fmt_ns(create.q1()),
            fmt_ns(create.q3()),
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    drop_db(&node1, &name);
    drop_db(&single_server, &name);
}
