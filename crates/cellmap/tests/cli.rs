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

/// A one-line error on stderr without backtrace, exit 255.
fn assert_one_line_error(out: &Out) {
    assert_one_line_error_code(out, 255);
}

/// A one-line error on stderr without backtrace, exit `code`.
fn assert_one_line_error_code(out: &Out, code: i32) {
    assert_code(out, code);
    let lines: Vec<&str> = out.stderr.lines().collect();
    assert_eq!(lines.len(), 1, "one line: {:?}", out.stderr);
    assert!(lines[0].starts_with("cellmap: error: "), "{}", lines[0]);
    assert!(!out.stderr.contains("backtrace") && !out.stderr.contains("panicked"));
}

/// Runs the binary with its stdout a pipe whose reading end is closed
/// before the binary writes anything, as `cellmap … | head -0` would.
fn closed_pipe(conf: &Conf, args: &[&str]) -> (std::process::ExitStatus, String) {
    use std::io::Read;
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_cellmap"));
    for f in &conf.files {
        cmd.arg("--config-file").arg(f);
    }
    let mut child = cmd
        .args(args)
        .env("HOME", std::env::temp_dir())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("run cellmap");
    drop(child.stdout.take());
    let mut stderr = String::new();
    child
        .stderr
        .take()
        .expect("stderr")
        .read_to_string(&mut stderr)
        .expect("read stderr");
    (child.wait().expect("wait for cellmap"), stderr)
}

/// `ls | head`: exit 0, or killed by SIGPIPE; nothing on stderr.
fn assert_quiet_end(status: std::process::ExitStatus, stderr: &str) {
    #[cfg(unix)]
    {
        use std::os::unix::process::ExitStatusExt;
        let sigpipe = 13;
        assert!(
            status.code() == Some(0) || status.signal() == Some(sigpipe),
            "exit 0 or SIGPIPE, got {status:?}; stderr: {stderr}"
        );
    }
    #[cfg(not(unix))]
    assert_eq!(status.code(), Some(0), "stderr: {stderr}");
    assert!(stderr.is_empty(), "nothing on stderr: {stderr}");
}

/// A URL of `backend` that cannot be reached: a closed loopback port on
/// the servers, a file in a directory that does not exist on SQLite.
fn unreachable_url(backend: mapping_testkit::BackendKind, db: &str) -> String {
    match backend {
        mapping_testkit::BackendKind::Postgres => {
            format!("postgresql+psycopg2://nova:pw@127.0.0.1:1/{db}")
        }
        mapping_testkit::BackendKind::Mysql => format!("mysql+pymysql://nova:pw@127.0.0.1:1/{db}"),
        _ => format!("sqlite:////nonexistent-cellmap-dir/{db}.sqlite"),
    }
}

/// No part of a `: `-separated error line is repeated in it.
fn assert_no_repeats(line: &str) {
    for part in line.split(": ").filter(|p| p.len() >= 12) {
        assert_eq!(
            line.matches(part).count(),
            1,
            "{part:?} repeated in {line:?}"
        );
    }
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
        assert_eq!(out.json()["hosts"][0]["host"], "compute-a");
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
        // A missing configuration file: 1, as nova-manage (oslo.config
        // raises before nova-manage's error handler).
        let out = raw(Command::new(env!("CARGO_BIN_EXE_cellmap")).args(["--config-file", "/nonexistent/nova.conf", "list_cells"]));
        assert_one_line_error_code(&out, 1);
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
        assert_one_line_error_code(&out, 1);
        assert!(out.stderr.contains("line 2"), "{}", out.stderr);
        // Usage errors are clap's (exit 2).
        assert_eq!(cellmap(&c, &["no_such_command"]).code, 2);
    }
    fn a_closed_pipe_ends_quietly(t) {
        let c = conf(t, true);
        let cdb = CellDb::new(t.backend());
        let cell = cdb.map_in(t);
        // A large output: 3,000 projects in the stats listing.
        for i in 0..3000 {
            cdb.add_instance(&mapping_testkit::NewCellInstance::new(&format!("project-{i:05}"), "u", mapping_testkit::at(i)));
        }
        assert_code(&cellmap(&c, &["map_instances", "--cell_uuid", &cell.uuid.to_string()]), 0);
        for args in [&["stats"][..], &["stats", "--format", "json"], &["list_cells"], &["list_hosts"]] {
            let (status, stderr) = closed_pipe(&c, args);
            assert_quiet_end(status, &stderr);
        }
        // And as a shell runs it: `cellmap stats | head -1`.
        let files: Vec<String> = c.files.iter().map(|f| format!("--config-file '{}'", f.display())).collect();
        let out = raw(Command::new("sh").arg("-c").arg(format!(
            "'{}' {} stats | head -1",
            env!("CARGO_BIN_EXE_cellmap"),
            files.join(" ")
        )));
        assert!(out.stdout.starts_with("+"), "{}", out.stdout);
        assert!(out.stderr.is_empty(), "nothing on stderr: {}", out.stderr);
    }

    fn malformed_uuids_are_not_found(t) {
        let c = conf(t, true);
        let cell = t.cell();
        for args in [
            &["delete_cell", "--cell_uuid", "not-a-uuid"][..],
            &["update_cell", "--cell_uuid", "not-a-uuid", "--name", "x"],
            &["list_hosts", "--cell_uuid", "not-a-uuid"],
            &["delete_host", "--cell_uuid", "not-a-uuid", "--host", "h"],
            &["verify_instance", "--uuid", "not-a-uuid"],
        ] {
            let out = cellmap(&c, args);
            assert_code(&out, 1);
            let lines: Vec<&str> = out.stderr.lines().chain(out.stdout.lines()).collect();
            assert_eq!(lines.len(), 1, "one line for {args:?}: {lines:?}");
            assert!(lines[0].contains("not-a-uuid") && lines[0].contains("not"), "{}", lines[0]);
        }
        // The cell is still there, unchanged.
        assert_eq!(t.cells().get_by_uuid(cell.uuid).unwrap(), cell);
    }

    fn discover_hosts_goes_on_past_an_unreachable_cell(t) {
        let c = conf(t, true);
        let first = CellDb::new(t.backend());
        let first_cell = first.map_in_named(t, "first");
        let dead = t.cells().create(mapping_model::NewCellMapping::new(mapping_testkit::uuid(), "rabbit://nova:pw@mq:5672/", unreachable_url(t.backend(), "nova_dead")).name("dead")).unwrap();
        let last = CellDb::new(t.backend());
        let last_cell = last.map_in_named(t, "last");
        first.add_compute_node("compute-first");
        last.add_compute_node("compute-last");
        let out = cellmap(&c, &["discover_hosts", "--verbose"]);
        // nova-manage's code for a cell it could not read: 255, at the end.
        assert_code(&out, 255);
        assert_eq!(t.host_mappings().get_by_host("compute-first").unwrap().cell_mapping.uuid, first_cell.uuid);
        assert_eq!(t.host_mappings().get_by_host("compute-last").unwrap().cell_mapping.uuid, last_cell.uuid);
        for cell in [&first_cell, &dead, &last_cell] {
            assert!(out.stdout.contains(&cell.uuid.to_string()), "{} reported: {}", cell.uuid, out.stdout);
        }
        assert!(out.stdout.contains("compute-first") && out.stdout.contains("compute-last"), "{}", out.stdout);
        // Why the dead cell failed: one line on stderr, naming it.
        let lines: Vec<&str> = out.stderr.lines().collect();
        assert_eq!(lines.len(), 1, "{}", out.stderr);
        assert!(lines[0].starts_with("cellmap: error: ") && lines[0].contains(&dead.uuid.to_string()), "{}", lines[0]);
        assert!(!out.stderr.contains("pw@"), "{}", out.stderr);

        // The same in JSON: each cell with what was done or why not.
        last.add_compute_node("compute-last-2");
        let out = cellmap(&c, &["discover_hosts", "--format", "json"]);
        assert_code(&out, 255);
        let r = out.json();
        let cells = r["cells"].as_array().unwrap();
        assert_eq!(cells.len(), 3, "{r}");
        let by_uuid = |u: &mapping_model::Uuid| cells.iter().find(|x| x["uuid"] == u.to_string()).unwrap().clone();
        assert_eq!(by_uuid(&first_cell.uuid)["status"], "ok");
        assert_eq!(by_uuid(&last_cell.uuid)["status"], "ok");
        assert_eq!(by_uuid(&last_cell.uuid)["hosts"][0], "compute-last-2");
        assert_eq!(by_uuid(&dead.uuid)["status"], "error");
        assert!(by_uuid(&dead.uuid)["error"].as_str().unwrap().len() > 5);
        assert_eq!(r["hosts"][0]["host"], "compute-last-2");

        // Without the dead cell: 0, and --strict with nothing new: 1.
        assert_code(&cellmap(&c, &["delete_cell", "--cell_uuid", &dead.uuid.to_string()]), 0);
        assert_code(&cellmap(&c, &["discover_hosts"]), 0);
        assert_code(&cellmap(&c, &["discover_hosts", "--strict"]), 1);
    }

    fn connection_errors_are_one_line_and_debug_adds_the_chain(t) {
        let c = conf(t, true);
        std::fs::write(&c.files[1], format!("[api_database]\nconnection = {}\n", unreachable_url(t.backend(), "nova_api"))).unwrap();
        let out = cellmap(&c, &["list_cells"]);
        assert_one_line_error(&out);
        assert_no_repeats(out.stderr.trim_end());
        assert!(!out.stderr.contains("pw@"), "{}", out.stderr);
        let out = cellmap(&c, &["--debug", "list_cells"]);
        assert_code(&out, 255);
        let first = out.stderr.lines().find(|l| l.starts_with("cellmap: error: ")).expect("error line").to_owned();
        assert_no_repeats(&first);
        let causes: Vec<&str> = out.stderr.lines().filter(|l| l.starts_with("  caused by: ")).collect();
        assert!(!causes.is_empty(), "{}", out.stderr);
        for (i, a) in causes.iter().enumerate() {
            for b in &causes[i + 1..] {
                assert_ne!(a, b, "a cause twice: {}", out.stderr);
            }
        }
    }
    fn check_finds_instances_without_a_mapping_and_map_instances_reports_skips(t) {
        let c = conf(t, true);
        let cdb = CellDb::new(t.backend());
        let cell = cdb.map_in(t);
        let uuids = cdb.add_many(6, "p", "u", 0);
        let mut no_project = mapping_testkit::NewCellInstance::new("p", "u", mapping_testkit::at(100));
        no_project.project_id = None;
        let mut no_user = mapping_testkit::NewCellInstance::new("p", "u", mapping_testkit::at(101));
        no_user.user_id = None;
        cdb.add_instances(&[no_project.clone(), no_user.clone()]);
        // map_instances maps the six, skips the two, says so and exits 2.
        let out = cellmap(&c, &["map_instances", "--cell_uuid", &cell.uuid.to_string()]);
        assert_code(&out, 2);
        assert!(out.stdout.contains("and 1 more") || out.stdout.contains(&no_user.uuid), "{}", out.stdout);
        let err: Vec<&str> = out.stderr.lines().collect();
        assert_eq!(err.len(), 1, "{}", out.stderr);
        assert!(err[0].contains("2 instances") && err[0].contains(&no_project.uuid), "{}", err[0]);
        // Five mappings go (as an operator's mistake would lose them).
        t.instance_mappings().destroy_bulk(&uuids[..5].iter().map(String::as_str).collect::<Vec<_>>()).unwrap();

        let out = cellmap(&c, &["check", "--format", "json"]);
        assert_code(&out, 1);
        let r = out.json();
        let problems = r["problems"].as_array().unwrap();
        let find = |kind: &str| problems.iter().find(|p| p["kind"] == kind).unwrap_or_else(|| panic!("{kind} in {r}")).clone();
        let unmapped = find("instance_not_mapped");
        assert_eq!(unmapped["count"], 5);
        assert_eq!(unmapped["sample"].as_array().unwrap().len(), 5);
        let fix = format!("cellmap map_instances --cell_uuid {}", cell.uuid);
        assert!(unmapped["hint"].as_str().unwrap().contains(&fix), "{unmapped}");
        let unmappable = find("instance_unmappable");
        assert_eq!(unmappable["count"], 2);
        let sample: Vec<&str> = unmappable["sample"].as_array().unwrap().iter().map(|v| v.as_str().unwrap()).collect();
        assert!(sample.contains(&format!("{} (no project_id)", no_project.uuid).as_str()), "{sample:?}");
        assert!(sample.contains(&format!("{} (no user_id)", no_user.uuid).as_str()), "{sample:?}");
        assert_eq!(r["instances_checked"], 8);

        // The table: a count, the first few examples, the command.
        let out = cellmap(&c, &["check"]);
        assert_code(&out, 1);
        assert!(out.stdout.contains("| instance_not_mapped "), "{}", out.stdout);
        assert!(out.stdout.contains(" and 2 more "), "{}", out.stdout);

        // The command it gives fixes it.
        let out = raw(Command::new(env!("CARGO_BIN_EXE_cellmap")).args(c.files.iter().flat_map(|f| ["--config-file".as_ref(), f.as_os_str()])).args(fix.split(' ').skip(1)));
        assert_code(&out, 2);
        let r = cellmap(&c, &["check", "--format", "json"]).json();
        assert!(r["problems"].as_array().unwrap().iter().all(|p| p["kind"] != "instance_not_mapped"), "{r}");

        // Deleted but not queued for delete: the advice is not the online
        // data migrations (they fill only NULLs), it is what removes them.
        cdb.delete_instance(&uuids[5]);
        t.exec(&format!("UPDATE instance_mappings SET queued_for_delete = {} WHERE instance_uuid = '{}'", t.sql_bool(false), uuids[5]));
        let r = cellmap(&c, &["check", "--format", "json"]).json();
        let p = r["problems"].as_array().unwrap().iter().find(|p| p["kind"] == "deleted_not_queued_for_delete").unwrap().clone();
        let hint = p["hint"].as_str().unwrap();
        assert!(hint.contains("nova-manage db archive_deleted_rows"), "{hint}");
        assert!(!hint.contains("run the online data migrations"), "{hint}");
    }

    fn tables_fit_the_terminal_and_wide_prints_everything(t) {
        let c = conf(t, true);
        let cdb = CellDb::new(t.backend());
        let cell = cdb.map_in_named(t, &format!("a-cell-with-a-rather-long-name-{}", "x".repeat(60)));
        cdb.add_many(12, "p", "u", 0);
        // Under a pseudo-terminal 70 columns wide (util-linux `script`).
        let files: Vec<String> = c.files.iter().map(|f| format!("--config-file '{}'", f.display())).collect();
        let run_in_pty = |args: &str| {
            let inner = format!("stty cols 70; '{}' {} {args}", env!("CARGO_BIN_EXE_cellmap"), files.join(" "));
            let out = raw(Command::new("script").args(["-qfec", &inner, "/dev/null"]).env_remove("COLUMNS"));
            assert_code(&out, 0);
            out.stdout.replace('\r', "")
        };
        let out = run_in_pty("list_cells --verbose");
        let table: Vec<&str> = out.lines().filter(|l| l.starts_with('+') || l.starts_with('|')).collect();
        assert!(table.len() >= 5, "{out}");
        for line in &table {
            assert!(line.chars().count() <= 70, "{} wide: {line}\n{out}", line.chars().count());
        }
        assert!(out.contains('…'), "{out}");
        let out = run_in_pty("--wide list_cells --verbose");
        assert!(out.contains(cell.name.as_deref().unwrap()), "{out}");
        assert!(out.contains(&cell.database_connection), "{out}");
        // Piped (not a terminal), tables are whole too.
        let out = cellmap(&c, &["list_cells", "--verbose"]);
        assert!(out.stdout.contains(cell.name.as_deref().unwrap()), "{}", out.stdout);
        // The nova-manage habit: `cellmap cell_v2 <command>`.
        let out = cellmap(&c, &["cell_v2", "list_cells", "--format", "json"]);
        assert_code(&out, 0);
        assert_eq!(out.json()[0]["uuid"], cell.uuid.to_string());
    }

    fn stats_shows_mappings_to_a_missing_cell(t) {
        let c = conf(t, true);
        let cell = t.cell();
        t.instance(Some(&cell), "p", "u");
        t.instance(Some(&cell), "p", "u");
        let orphan = t.instance(Some(&cell), "p", "u");
        // A mapping whose cell_id names no cell, written with the foreign
        // keys off as a foreign tool or a hand edit would.
        let update = format!("UPDATE instance_mappings SET cell_id = {} WHERE instance_uuid = '{}'", cell.id + 1000, orphan.instance_uuid);
        t.exec(&match t.backend() {
            mapping_testkit::BackendKind::Mysql => format!("SET SESSION foreign_key_checks = 0; {update}; SET SESSION foreign_key_checks = 1"),
            mapping_testkit::BackendKind::Postgres => format!("SET session_replication_role = replica; {update}; SET session_replication_role = DEFAULT"),
            _ => format!("PRAGMA foreign_keys = OFF; {update}; PRAGMA foreign_keys = ON"),
        });
        let out = cellmap(&c, &["stats", "--format", "json"]);
        assert_code(&out, 0);
        let s = out.json();
        assert_eq!(s["total"], 3);
        assert_eq!(s["in_missing_cells"], 1, "{s}");
        let out = cellmap(&c, &["stats"]);
        assert!(out.stdout.contains("In missing cells: 1"), "{}", out.stdout);
    }
}
