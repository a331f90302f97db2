//! The spec's picture (docs/router.md): `nova show <uuid>` → nova-api →
//! `instance_mappings` + `cell_mappings` → the cell's database, and
//! `nova list` → every cell at once, merged.
//!
//! Creates a `nova_api` and three cell databases (SQLite files, each with an
//! `instances` table), maps the instances, then
//! 1. shows one instance: the lookup in `nova_api`, then its row read from
//!    its cell;
//! 2. lists across all cells (scatter-gather), merged and sorted,
//!
//! printing which cell answered each part and how long it took. The cells'
//! `database_connection` is a template (`sqlite:////{path}_cell1.sqlite`)
//! expanded against the API database URL, as Nova expands it against
//! `[database]/connection`.
//!
//! ```text
//! cargo run --example router [-- DIR]   # default: target/router-example
//! ```

use std::path::PathBuf;
use std::time::{Duration, Instant};

use cell_mappings::router::{CellResult, Route, Router, RouterOptions};
use cell_mappings::{Database, DbConnection, NewCellMapping, NewInstanceMapping};
use diesel::connection::SimpleConnection;
use diesel::prelude::*;

diesel::table! {
    /// A cell database's instances (a tiny stand-in for Nova's).
    instances (uuid) {
        uuid -> Text,
        display_name -> Text,
        host -> Text,
    }
}

const PER_CELL: [usize; 3] = [40, 25, 60];

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let dir = std::env::args_os()
        .nth(1)
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("target/router-example"));
    let dir = std::path::absolute(&dir)?;
    if dir.exists() {
        std::fs::remove_dir_all(&dir)?;
    }
    std::fs::create_dir_all(&dir)?;
    let base = dir.join("nova");
    let api_url = format!("sqlite:///{}_api.sqlite", base.display());
    let api = Database::open(&api_url)?;
    api.migrate()?;

    // Three cells whose URLs are templates, expanded against this default.
    let default = format!("sqlite:///{}", base.display());
    let mut first_instance = None;
    for (i, &count) in PER_CELL.iter().enumerate() {
        let n = i + 1;
        let cell = api.cells().create(
            NewCellMapping::new(
                uuid::Uuid::new_v4().to_string(),
                "rabbit://nova:secret@mq/",
                format!("sqlite:////{{path}}_cell{n}.sqlite"),
            )
            .name(format!("cell{n}")),
        )?;
        let cell_db = Database::open(&format!("sqlite:///{}_cell{n}.sqlite", base.display()))?;
        let mut mappings = Vec::new();
        cell_db.with_connection(|conn| {
            let mut sql = String::from(
                "CREATE TABLE instances (uuid VARCHAR(36) PRIMARY KEY, \
                 display_name VARCHAR(255) NOT NULL, host VARCHAR(255) NOT NULL);",
            );
            for k in 0..count {
                let u = uuid::Uuid::new_v4().to_string();
                sql.push_str(&format!(
                    "INSERT INTO instances VALUES ('{u}', 'vm-{k:03}-c{n}', 'compute-{n}-{}');",
                    k % 4
                ));
                mappings.push(NewInstanceMapping::new(&u, "demo", "alice").cell(&cell));
            }
            conn.batch_execute(&sql).map_err(cell_mappings::Error::from)
        })?;
        first_instance.get_or_insert_with(|| mappings[count / 2].instance_uuid.clone());
        api.instance_mappings().create_bulk(mappings)?;
    }
    println!(
        "nova_api and 3 cells in {} ({} instances)",
        dir.display(),
        PER_CELL.iter().sum::<usize>()
    );

    let router = Router::new(
        api.clone(),
        RouterOptions::default().default_database_connection(default),
    )?;

    // 1. `nova show <uuid>`: nova_api, then the instance's cell.
    let wanted: uuid::Uuid = first_instance.ok_or("no instance")?.parse()?;
    println!("\nshow {wanted}");
    let start = Instant::now();
    let route = router.route(wanted)?;
    let looked_up = start.elapsed();
    match route {
        Route::NotScheduled(_) => println!("  not scheduled yet: ask the build request"),
        Route::Cell(target) => {
            let cell_name = target.cell().name.clone().unwrap_or_default();
            println!("  nova_api: instance lives in {cell_name} ({looked_up:?})");
            let start = Instant::now();
            let (name, host): (String, String) = target.run(|conn| {
                instances::table
                    .find(wanted.to_string())
                    .select((instances::display_name, instances::host))
                    .first(conn)
            })?;
            println!(
                "  {cell_name}: {name} on {host} ({:?}, first connection included)",
                start.elapsed()
            );
        }
    }

    // 2. `nova list`: every cell at once, merged and sorted.
    println!("\nlist across all cells");
    let start = Instant::now();
    let results = router.scatter_gather_skip_cell0(Duration::from_secs(60), list)?;
    let gathered = start.elapsed();
    let mut all = Vec::new();
    let cells = router.cells()?;
    for cell in cells.iter() {
        let uuid: uuid::Uuid = cell.uuid;
        let name = cell.name.as_deref().unwrap_or("?");
        match results.get(&uuid) {
            Some(CellResult::Ok((rows, took))) => {
                println!("  {name} answered {} instances in {took:?}", rows.len());
                all.extend(rows.iter().cloned().map(|r| (r, name)));
            }
            Some(CellResult::Failed(e)) => println!("  {name} failed: {e}"),
            Some(CellResult::DidNotRespond) => println!("  {name} did not respond"),
            Some(CellResult::Unavailable { last_error, .. }) => {
                println!("  {name} is unavailable: {last_error:?}")
            }
            Some(_) | None => println!("  {name} was not asked"),
        }
    }
    all.sort();
    println!(
        "  merged: {} instances in {gathered:?}; first five by name:",
        all.len()
    );
    for ((name, host), cell) in all.iter().take(5) {
        println!("    {name:<12} {host:<12} {cell}");
    }
    Ok(())
}

/// One cell's instances and how long the query took there.
#[allow(clippy::type_complexity)]
fn list(
    _cell: &cell_mappings::CellMapping,
    conn: &mut DbConnection,
) -> QueryResult<(Vec<(String, String)>, Duration)> {
    let start = Instant::now();
    let rows = instances::table
        .select((instances::display_name, instances::host))
        .order(instances::display_name)
        .load(conn)?;
    Ok((rows, start.elapsed()))
}
