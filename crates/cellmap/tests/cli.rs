//! The `cellmap` binary run as a process against a real `nova_api` and
//! real cell databases on every backend: exit codes, table and JSON output,
//! `nova.conf` with several sections and files, and errors.

use std::path::PathBuf;
use std::process::Command;

use mapping_testkit::{CellDb, TestDb};
use serde_json::Value;

/// A run of the binary.
struct Out {
    code: i32,
    stdout: String,
    stderr: String,
}

impl Out {
    fn json(&self) -> Value {
        serde_json::from_str(&self.stdout)
            .unwrap_or_else(|e| panic!("stdout is not JSON ({e}): {}", self.stdout))
    }
}

/// Two nova.conf files: the first with a wrong API database that the
/// second overrides, the first also holding the defaults.
struct Conf {
    dir: PathBuf,
    files: Vec<PathBuf>,
}

impl Drop for Conf {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn conf(t: &TestDb, transport_default: bool) -> Conf {
    let dir = std::env::temp_dir().join(format!("cellmap-cli-{}", mapping_testkit::uuid()));
    std::fs::create_dir_all(&dir).unwrap();
    let first = dir.join("nova.conf");
    let second = dir.join("nova-api.conf");
    let mut text = String::from("# written by the test\n[DEFAULT]\n");
    if transport_default {
        text.push_str("transport_url = rabbit://nova:topsecret@mq:5672/\n");
    }
    text.push_str(
        "debug = true\n\n[api_database]\nconnection = mysql+pymysql://nobody:x@127.0.0.1:1/none\n\n\
         [database]\nconnection = mysql+pymysql://nova:dbsecret@db/nova?charset=utf8\n",
    );
    std::fs::write(&first, text).unwrap();
    std::fs::write(
        &second,
        format!("[api_database]\nconnection = {}\n", t.url()),
    )
    .unwrap();
    Conf {
        dir,
        files: vec![first, second],
    }
}

fn cellmap(conf: &Conf, args: &[&str]) -> Out {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_cellmap"));
    for f in &conf.files {
        cmd.arg("--config-file").arg(f);
    }
    raw(cmd.args(args))
}

fn raw(cmd: &mut Command) -> Out {
    let out = cmd
        .env("HOME", std::env::temp_dir())
        .output()
        .expect("run cellmap");
    Out {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

fn assert_code(out: &Out, code: i32) {
    assert_eq!(
        out.code, code,
        "exit code\nstdout: {}\nstderr: {}",
        out.stdout, out.stderr
    );
}

/// A one-line error on stderr without backtrace.
fn assert_one_line_error(out: &Out) {
    assert_code(out, 255);
    let lines: Vec<&str> = out.stderr.lines().collect();
    assert_eq!(lines.len(), 1, "one line: {:?}", out.stderr);
    assert!(lines[0].starts_with("cellmap: error: "), "{}", lines[0]);
    assert!(!out.stderr.contains("backtrace") && !out.stderr.contains("panicked"));
}

mapping_testkit::backend_tests! {
    fn cells_are_created_listed_updated_and_deleted(t) {
        let c = conf(t, true);
        let out = cellmap(&c, &["create_cell", "--name", "cell1", "--database_connection", "mysql://nova:cellpw@db1/nova_cell1", "--verbose"]);
        assert_code(&out, 0);
        let uuid = out.stdout.trim().to_owned();
        assert_eq!(t.cells().get_by_uuid(&uuid).unwrap().transport_url, "rabbit://nova:topsecret@mq:5672/");
        // Same URLs again: 2.
        assert_code(&cellmap(&c, &["create_cell", "--database_connection", "mysql://nova:cellpw@db1/nova_cell1"]), 2);

        let out = cellmap(&c, &["list_cells"]);
        assert_code(&out, 0);
        assert!(out.stdout.contains("| cell1 "), "{}", out.stdout);
        assert!(out.stdout.contains("mysql://nova:****@db1/nova_cell1"));
        assert!(!out.stdout.contains("cellpw") && !out.stdout.contains("topsecret"));
        let out = cellmap(&c, &["list_cells", "--verbose", "--format", "json"]);
        assert_code(&out, 0);
        let cells = out.json();
        assert_eq!(cells[0]["uuid"], uuid.as_str());
        assert_eq!(cells[0]["database_connection"], "mysql://nova:cellpw@db1/nova_cell1");
        assert_eq!(cells[0]["disabled"], false);

        assert_code(&cellmap(&c, &["update_cell", "--cell_uuid", &mapping_testkit::uuid()]), 1);
        assert_code(&cellmap(&c, &["update_cell", "--cell_uuid", &uuid, "--enable", "--disable"]), 4);
        let out = cellmap(&c, &["update_cell", "--cell_uuid", &uuid, "--name", "renamed", "--disable", "--database_connection", "mysql://nova:cellpw@db1/nova_cell1"]);
        assert_code(&out, 0);
        let cell = t.cells().get_by_uuid(&uuid).unwrap();
        assert_eq!((cell.name.as_deref(), cell.disabled), (Some("renamed"), true));

        assert_code(&cellmap(&c, &["map_cell0"]), 0);
        let cell0 = t.cells().get_by_uuid(mapping_model::CELL0_UUID).unwrap();
        assert_eq!(cell0.database_connection, "mysql+pymysql://nova:dbsecret@db/nova_cell0?charset=utf8");
        assert_code(&cellmap(&c, &["map_cell0"]), 0);
        assert_code(&cellmap(&c, &["update_cell", "--cell_uuid", mapping_model::CELL0_UUID, "--disable", "--transport-url", "none:///", "--database_connection", "sqlite:///other"]), 5);

        assert_code(&cellmap(&c, &["delete_cell", "--cell_uuid", &mapping_testkit::uuid()]), 1);
        assert_code(&cellmap(&c, &["delete_cell", "--cell_uuid", &uuid]), 0);
        assert!(t.cells().get_by_uuid(&uuid).is_err());
    }

    fn create_cell_without_a_transport_url_exits_1(t) {
        let c = conf(t, false);
        let out = cellmap(&c, &["create_cell", "--database_connection", "mysql://db/x"]);
        assert_code(&out, 1);
        assert_code(&cellmap(&c, &["create_cell", "--transport-url", "not a url", "--database_connection", "mysql://db/x"]), 1);
    }

    fn map_instances_runs_in_batches_with_exit_codes(t) {
        let c = conf(t, true);
        let cdb = CellDb::new(t.backend());
        let cell = cdb.map_in(t);
        let uuids = cdb.add_many(5, "p", "u", 0);
        for expected in [1, 1, 0] {
            let out = cellmap(&c, &["map_instances", "--cell_uuid", &cell.uuid.to_string(), "--max-count", "2", "--format", "json"]);
            assert_code(&out, expected);
            let r = out.json();
            assert_eq!(r[0]["complete"], expected == 0);
            assert!(out.stderr.is_empty(), "no progress bar off a terminal: {}", out.stderr);
        }
        assert_eq!(t.instance_mappings().get_by_instance_uuids(&uuids).unwrap().len(), 5);
        assert_code(&cellmap(&c, &["map_instances", "--cell_uuid", &cell.uuid.to_string(), "--max-count", "0"]), 127);
        assert_code(&cellmap(&c, &["map_instances", "--cell_uuid", &cell.uuid.to_string(), "--max-count", "abc"]), 127);
        let out = cellmap(&c, &["map_instances", "--cell_uuid", &cell.uuid.to_string(), "--reset"]);
        assert_code(&out, 0);
        assert!(out.stdout.contains("| Processed |"), "{}", out.stdout);
        let out = cellmap(&c, &["map_instances", "--cell_uuid", &mapping_testkit::uuid()]);
        assert_one_line_error(&out);
    }

    fn hosts_are_discovered_listed_and_deleted(t) {
        let c = conf(t, true);
        let cdb = CellDb::new(t.backend());
        let cell = cdb.map_in(t);
        assert_code(&cellmap(&c, &["discover_hosts", "--strict"]), 1);
        cdb.add_compute_node("compute-a");
        let out = cellmap(&c, &["discover_hosts", "--strict", "--format", "json"]);
        assert_code(&out, 0);
        assert_eq!(out.json()[0]["host"], "compute-a");
        let out = cellmap(&c, &["list_hosts", "--cell_uuid", &cell.uuid.to_string(), "--format", "json"]);
        assert_code(&out, 0);
        assert_eq!(out.json()[0]["cell_uuid"], cell.uuid.to_string());
        assert_code(&cellmap(&c, &["list_hosts", "--cell_uuid", &mapping_testkit::uuid()]), 1);
        let out = cellmap(&c, &["list_hosts"]);
        assert!(out.stdout.contains("| compute-a "), "{}", out.stdout);
        // A cell with hosts is not deleted without --force.
        assert_code(&cellmap(&c, &["delete_cell", "--cell_uuid", &cell.uuid.to_string()]), 2);
        assert_code(&cellmap(&c, &["delete_host", "--cell_uuid", &cell.uuid.to_string(), "--host", "nope"]), 2);
        let other = t.cell();
        assert_code(&cellmap(&c, &["delete_host", "--cell_uuid", &other.uuid.to_string(), "--host", "compute-a"]), 3);
        let i = mapping_testkit::NewCellInstance::new("p", "u", mapping_testkit::at(0)).host("compute-a");
        cdb.add_instance(&i);
        assert_code(&cellmap(&c, &["delete_host", "--cell_uuid", &cell.uuid.to_string(), "--host", "compute-a"]), 4);
        cdb.delete_instance(&i.uuid);
        assert_code(&cellmap(&c, &["delete_host", "--cell_uuid", &cell.uuid.to_string(), "--host", "compute-a"]), 0);
        assert_code(&cellmap(&c, &["delete_cell", "--cell_uuid", &cell.uuid.to_string()]), 0);
    }

    fn delete_cell_with_instances(t) {
        let c = conf(t, true);
        let cdb = CellDb::new(t.backend());
        let cell = cdb.map_in(t);
        let uuids = cdb.add_many(2, "p", "u", 0);
        assert_code(&cellmap(&c, &["map_instances", "--cell_uuid", &cell.uuid.to_string()]), 0);
        assert_code(&cellmap(&c, &["delete_cell", "--cell_uuid", &cell.uuid.to_string(), "--force"]), 3);
        cdb.delete_instance(&uuids[0]);
        cdb.delete_instance(&uuids[1]);
        assert_code(&cellmap(&c, &["delete_cell", "--cell_uuid", &cell.uuid.to_string()]), 4);
        assert_code(&cellmap(&c, &["delete_cell", "--cell_uuid", &cell.uuid.to_string(), "--force"]), 0);
        assert!(t.instance_mappings().get_by_instance_uuids(&uuids).unwrap().is_empty());
    }

    fn verify_check_stats_and_migrations(t) {
        let c = conf(t, true);
        let cdb = CellDb::new(t.backend());
        let cell = cdb.map_in(t);
        let uuids = cdb.add_many(3, "p", "u", 0);
        assert_code(&cellmap(&c, &["map_instances", "--cell_uuid", &cell.uuid.to_string()]), 0);
        let out = cellmap(&c, &["verify_instance", "--uuid", &uuids[0]]);
        assert_code(&out, 0);
        assert!(out.stdout.contains(&cell.uuid.to_string()));
        assert_code(&cellmap(&c, &["verify_instance", "--uuid", &mapping_testkit::uuid(), "--quiet"]), 1);
        cdb.delete_instance(&uuids[1]);
        assert_code(&cellmap(&c, &["verify_instance", "--uuid", &uuids[1]]), 3);

        let out = cellmap(&c, &["check", "--format", "json"]);
        assert_code(&out, 1);
        let r = out.json();
        assert_eq!(r["ok"], false);
        assert_eq!(r["problems"][0]["kind"], "deleted_not_queued_for_delete");
        assert_eq!(r["problems"][0]["sample"][0], uuids[1].as_str());

        t.exec("UPDATE instance_mappings SET queued_for_delete = NULL, user_id = NULL");
        let out = cellmap(&c, &["online_data_migrations", "--max-count", "2"]);
        assert_code(&out, 1);
        assert!(out.stdout.contains("| populate_queued_for_delete |"), "{}", out.stdout);
        let out = cellmap(&c, &["online_data_migrations", "--format", "json"]);
        assert_code(&out, 0);
        assert_code(&cellmap(&c, &["online_data_migrations", "--max-count", "-1"]), 127);
        let out = cellmap(&c, &["check"]);
        assert_code(&out, 0);
        assert!(out.stdout.starts_with("No problems found"), "{}", out.stdout);

        let out = cellmap(&c, &["stats", "--format", "json"]);
        assert_code(&out, 0);
        let s = out.json();
        assert_eq!(s["total"], 3);
        assert_eq!(s["unscheduled"], 0);
        assert_eq!(s["projects"][0]["project_id"], "p");
        let out = cellmap(&c, &["stats"]);
        assert!(out.stdout.contains("Unscheduled: 0   Total: 3"), "{}", out.stdout);
    }

    fn errors_are_one_line(t) {
        let c = conf(t, true);
        // A missing configuration file.
        let out = raw(Command::new(env!("CARGO_BIN_EXE_cellmap")).args(["--config-file", "/nonexistent/nova.conf", "list_cells"]));
        assert_one_line_error(&out);
        assert!(out.stderr.contains("/nonexistent/nova.conf"), "{}", out.stderr);
        // A bad URL in [api_database]/connection, with a password.
        std::fs::write(&c.files[1], "[api_database]\nconnection = nosuchdb://admin:hunter2@h/x\n").unwrap();
        let out = cellmap(&c, &["list_cells"]);
        assert_one_line_error(&out);
        assert!(!out.stderr.contains("hunter2"), "{}", out.stderr);
        // No [api_database]/connection at all.
        let only_first = Conf { dir: std::env::temp_dir().join("unused-cellmap-dir"), files: vec![c.files[0].clone()] };
        std::fs::write(&c.files[0], "[DEFAULT]\n").unwrap();
        let out = cellmap(&only_first, &["list_cells"]);
        assert_one_line_error(&out);
        assert!(out.stderr.contains("[api_database]/connection"), "{}", out.stderr);
        // A syntax error names the line.
        std::fs::write(&c.files[0], "[DEFAULT]\nthis is not an option\n").unwrap();
        let out = cellmap(&only_first, &["list_cells"]);
        assert_one_line_error(&out);
        assert!(out.stderr.contains("line 2"), "{}", out.stderr);
        // Usage errors are clap's (exit 2).
        assert_eq!(cellmap(&c, &["no_such_command"]).code, 2);
    }
}
