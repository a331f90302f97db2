//! Embeds the top-level `migrations/` folder: one entry per migration folder,
//! with the up/down SQL of each dialect that is present (a missing one is
//! recorded as `None` and refused at run time, and caught by a test).

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

const DIALECTS: [&str; 3] = ["sqlite", "postgres", "mysql"];

fn main() {
    let manifest = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").expect("cargo sets it"));
    let dir = manifest.join("../../migrations");
    println!("cargo:rerun-if-changed={}", dir.display());
    let mut folders: Vec<PathBuf> = std::fs::read_dir(&dir)
        .expect("the top-level migrations/ folder exists")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.is_dir())
        .collect();
    folders.sort();
    let mut out = String::from("&[\n");
    for folder in &folders {
        println!("cargo:rerun-if-changed={}", folder.display());
        let name = folder
            .file_name()
            .and_then(|n| n.to_str())
            .expect("utf-8 folder name");
        writeln!(out, "    EmbeddedMigration {{ name: {name:?},").unwrap();
        for dialect in DIALECTS {
            for dir in ["up", "down"] {
                let file = folder.join(format!("{dir}.{dialect}.sql"));
                println!("cargo:rerun-if-changed={}", file.display());
                writeln!(out, "        {dir}_{dialect}: {},", include(&file)).unwrap();
            }
        }
        writeln!(out, "    }},").unwrap();
    }
    out.push(']');
    let dest =
        PathBuf::from(std::env::var("OUT_DIR").expect("cargo sets it")).join("migrations.rs");
    std::fs::write(dest, out).expect("OUT_DIR is writable");
}

fn include(file: &Path) -> String {
    if file.is_file() {
        format!(
            "Some(include_str!({:?}))",
            file.canonicalize().expect("file exists")
        )
    } else {
        "None".to_owned()
    }
}
