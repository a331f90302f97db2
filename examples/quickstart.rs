//! The main job on the embedded SQLite default: create a `nova_api` database
//! file, migrate it, create cell0 and cell1, map a few thousand instances
//! (some not yet scheduled), then look instances up and print where they live.
//!
//! ```text
//! cargo run --example quickstart [-- PATH]   # default: target/quickstart/nova_api.sqlite
//! ```

use std::collections::BTreeMap;
use std::path::PathBuf;

use cell_mappings::{
    Database, InstanceMappingUpdate, NewCellMapping, NewHostMapping, NewInstanceMapping, CELL0_UUID,
};

const INSTANCES: usize = 3_000;
const PROJECTS: usize = 20;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let path = std::env::args_os()
        .nth(1)
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("target/quickstart/nova_api.sqlite"));
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    for suffix in ["", "-wal", "-shm"] {
        let mut p = path.clone().into_os_string();
        p.push(suffix);
        let _ = std::fs::remove_file(p);
    }
    let url = format!("sqlite:///{}", path.display());
    let db = Database::open(&url)?;
    db.migrate()?;
    println!(
        "created {} ({:?}), migrations {:?}",
        path.display(),
        db.backend(),
        db.applied_migrations()?
    );

    let cell0 = db.cells().create(
        NewCellMapping::new(
            CELL0_UUID,
            "none:///",
            "sqlite:////var/lib/nova/nova_cell0.sqlite",
        )
        .name("cell0"),
    )?;
    let cell1 = db.cells().create(
        NewCellMapping::new(
            "1a2b3c4d-0000-4000-8000-00000000c311",
            "rabbit://{username}:{password}@{hostname}:5672/cell1",
            "mysql+pymysql://{username}:{password}@{hostname}/nova_cell1",
        )
        .name("cell1"),
    )?;
    db.host_mappings()
        .create(NewHostMapping::new("compute-1", &cell1))?;
    println!("cells: {} and {}", cell0.identity(), cell1.identity());

    // Map the instances in one transaction: most in cell1, every 50th failed
    // to schedule (cell0), every 10th still waiting for the scheduler.
    let uuids: Vec<String> = (0..INSTANCES)
        .map(|i| format!("{:08x}-0000-4000-8000-{:012x}", i + 1, i + 1))
        .collect();
    db.transaction::<_, cell_mappings::Error, _>(|tx| {
        for (i, uuid) in uuids.iter().enumerate() {
            let mut new = NewInstanceMapping::new(
                uuid.as_str(),
                format!("project-{}", i % PROJECTS),
                "user-1",
            );
            if i % 10 != 0 {
                new = new.cell(if i % 50 == 1 { &cell0 } else { &cell1 });
            }
            tx.instance_mappings().create(new)?;
        }
        Ok(())
    })?;
    println!("mapped {INSTANCES} instances across {PROJECTS} projects");

    // The scheduler places one of the waiting instances.
    let waiting = db.instance_mappings().get_by_instance_uuid(&uuids[0])?;
    db.instance_mappings()
        .save(&waiting, &InstanceMappingUpdate::new().cell(Some(&cell1)))?;

    for uuid in [&uuids[0], &uuids[1], &uuids[10], &uuids[2], &uuids[20]] {
        let im = db.instance_mappings().get_by_instance_uuid(uuid)?;
        let place = match &im.cell_mapping {
            Some(cell) => cell.identity(),
            None => "not scheduled yet".to_owned(),
        };
        println!(
            "instance {} (project {}) -> {}",
            im.instance_uuid, im.project_id, place
        );
    }

    let all = db.instance_mappings().get_by_instance_uuids(&uuids)?;
    let mut per_cell: BTreeMap<String, usize> = BTreeMap::new();
    for im in &all {
        let key = im
            .cell_mapping
            .as_ref()
            .and_then(|c| c.name.clone())
            .unwrap_or_else(|| "(unscheduled)".into());
        *per_cell.entry(key).or_default() += 1;
    }
    println!("instances per cell: {per_cell:?}");
    let counts = db
        .instance_mappings()
        .get_counts("project-3", Some("user-1"))?;
    println!(
        "project-3 has {} instances ({} of user-1)",
        counts.project,
        counts.user.unwrap_or(0)
    );
    let cells = db.cells().get_by_project_id("project-3")?;
    println!(
        "project-3 lives in: {}",
        cells
            .iter()
            .map(|c| c.identity())
            .collect::<Vec<_>>()
            .join(", ")
    );
    Ok(())
}
