//! `cellmap`: the operator CLI over Nova's cell mappings.
//!
//! It reads `nova.conf` (`--config-file`, several allowed, later ones
//! override earlier ones) for `[api_database]/connection`,
//! `[DEFAULT]/transport_url` and `[database]/connection`, and offers the
//! commands of `nova-manage cell_v2` with nova-manage's exit codes, the two
//! online data migrations, and `check` and `stats`. Errors are one line on
//! stderr with exit code 255 (nova-manage's "unexpected error"); usage
//! errors exit with 2. See `crates/cellmap/README.md`.

// The doc comments of the command-line types are clap's help text, which
// names nova.conf options as `[section]/option`: not intra-doc links.
#![allow(rustdoc::broken_intra_doc_links)]

mod config;
mod output;

use std::io::{IsTerminal, Write};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

use clap::{Parser, Subcommand};
use mapping_cellv2::{
    chain, MapInstancesOptions, MapProgress, Router, RouterOptions, VerifyOutcome,
    DEFAULT_BATCH_SIZE, MAP_INSTANCES_BATCH_SIZE,
};
use mapping_diesel::{Database, Options};
use mapping_model::{CellMappingUpdate, NewCellMapping, CELL0_UUID};
use serde_json::json;

use config::Config;
use output::{mask_password, Format, Listing};

/// Exit code of an error that stopped the command (nova-manage's 255).
const EXIT_ERROR: u8 = 255;
/// Exit code of a bad `--max-count` (nova-manage's 127).
const EXIT_BAD_MAX_COUNT: u8 = 127;

#[derive(Parser, Debug)]
#[command(
    name = "cellmap",
    version,
    about = "Nova cell mappings: nova-manage cell_v2's commands, online data migrations, check and stats"
)]
struct Cli {
    /// A nova.conf to read; repeat for several, later files override
    /// earlier ones (default: the first of ~/.nova/nova.conf, ~/nova.conf,
    /// /etc/nova/nova.conf, /etc/nova.conf).
    #[arg(long = "config-file", global = true, value_name = "PATH")]
    config_file: Vec<PathBuf>,
    /// Output format of listings and reports.
    #[arg(long, global = true, value_enum, default_value_t = Format::Table)]
    format: Format,
    /// Log what is done on stderr.
    #[arg(long, global = true)]
    debug: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// List the cells (passwords masked unless --verbose). Exit 0.
    #[command(name = "list_cells", alias = "list-cells")]
    ListCells {
        /// Show the URLs with their passwords.
        #[arg(long)]
        verbose: bool,
    },
    /// Create a cell. Exit 0; 1 transport URL or database connection
    /// missing or invalid; 2 another cell has the same URLs.
    #[command(name = "create_cell", alias = "create-cell")]
    CreateCell {
        /// The cell's name.
        #[arg(long)]
        name: Option<String>,
        /// Message-queue URL (default: [DEFAULT]/transport_url).
        #[arg(long = "transport-url", alias = "transport_url")]
        transport_url: Option<String>,
        /// Database URL (default: [database]/connection).
        #[arg(long = "database_connection", alias = "database-connection")]
        database_connection: Option<String>,
        /// Print the new cell's uuid.
        #[arg(long)]
        verbose: bool,
        /// Create the cell disabled.
        #[arg(long)]
        disabled: bool,
    },
    /// Change a cell. Exit 0; 1 no such cell; 2 cannot be saved; 3 URLs of
    /// another cell; 4 --enable with --disable; 5 enabling/disabling cell0.
    #[command(name = "update_cell", alias = "update-cell")]
    UpdateCell {
        /// The cell.
        #[arg(long = "cell_uuid", alias = "cell-uuid")]
        cell_uuid: String,
        /// New name.
        #[arg(long)]
        name: Option<String>,
        /// New message-queue URL (default: [DEFAULT]/transport_url, as nova-manage).
        #[arg(long = "transport-url", alias = "transport_url")]
        transport_url: Option<String>,
        /// New database URL (default: [database]/connection, as nova-manage).
        #[arg(long = "database_connection", alias = "database-connection")]
        database_connection: Option<String>,
        /// Disable the cell.
        #[arg(long)]
        disable: bool,
        /// Enable the cell.
        #[arg(long)]
        enable: bool,
    },
    /// Delete a cell. Exit 0; 1 no such cell; 2 hosts mapped (no --force);
    /// 3 live instances; 4 mappings of deleted instances (no --force).
    #[command(name = "delete_cell", alias = "delete-cell")]
    DeleteCell {
        /// The cell.
        #[arg(long = "cell_uuid", alias = "cell-uuid")]
        cell_uuid: String,
        /// Also delete its host mappings and the mappings of its deleted instances.
        #[arg(long)]
        force: bool,
    },
    /// Create the cell0 mapping (default database: [database]/connection's
    /// with `_cell0` appended). Exit 0, also when cell0 exists.
    #[command(name = "map_cell0", alias = "map-cell0")]
    MapCell0 {
        /// cell0's database URL.
        #[arg(long = "database_connection", alias = "database-connection")]
        database_connection: Option<String>,
    },
    /// List host mappings. Exit 0; 1 no such cell.
    #[command(name = "list_hosts", alias = "list-hosts")]
    ListHosts {
        /// Only this cell's hosts.
        #[arg(long = "cell_uuid", alias = "cell-uuid")]
        cell_uuid: Option<String>,
    },
    /// Delete a host mapping. Exit 0; 1 no such cell; 2 no such host; 3
    /// host in another cell; 4 instances on the host.
    #[command(name = "delete_host", alias = "delete-host")]
    DeleteHost {
        /// The cell.
        #[arg(long = "cell_uuid", alias = "cell-uuid")]
        cell_uuid: String,
        /// The host.
        #[arg(long)]
        host: String,
    },
    /// Where an instance is. Exit 0 alive in its cell; 1 not mapped; 2
    /// mapped to no cell; 3 deleted but mapped; 4 archived but mapped.
    #[command(name = "verify_instance", alias = "verify-instance")]
    VerifyInstance {
        /// The instance.
        #[arg(long)]
        uuid: String,
        /// Print nothing.
        #[arg(long)]
        quiet: bool,
    },
    /// Map the instances of a cell, oldest first, resumable (nova-manage's
    /// marker). Exit 0 all mapped; 1 more to map; 127 bad --max-count.
    #[command(name = "map_instances", alias = "map-instances")]
    MapInstances {
        /// The cell.
        #[arg(long = "cell_uuid", alias = "cell-uuid")]
        cell_uuid: String,
        /// Map at most this many, then stop (run again to go on).
        #[arg(long = "max-count", alias = "max_count", allow_hyphen_values = true)]
        max_count: Option<String>,
        /// Start from the oldest instance, ignoring an earlier run's marker.
        #[arg(long)]
        reset: bool,
        /// Instances per batch.
        #[arg(long = "batch-size", default_value_t = MAP_INSTANCES_BATCH_SIZE)]
        batch_size: usize,
    },
    /// Map the compute hosts of the cells. Exit 0; 1 with --strict and no
    /// host found.
    #[command(name = "discover_hosts", alias = "discover-hosts")]
    DiscoverHosts {
        /// Only this cell.
        #[arg(long = "cell_uuid", alias = "cell-uuid")]
        cell_uuid: Option<String>,
        /// Tell what is done.
        #[arg(long)]
        verbose: bool,
        /// Exit 0 only if a host was mapped.
        #[arg(long)]
        strict: bool,
        /// Discover by nova-compute service instead of compute node.
        #[arg(long = "by-service", alias = "by_service")]
        by_service: bool,
    },
    /// Run populate_queued_for_delete and populate_user_id. Exit 0 done; 1
    /// more to do (with --max-count); 2 a migration failed; 127 bad --max-count.
    #[command(name = "online_data_migrations", alias = "online-data-migrations")]
    OnlineDataMigrations {
        /// Rows per migration in this run (default: run to the end).
        #[arg(long = "max-count", alias = "max_count", allow_hyphen_values = true)]
        max_count: Option<String>,
    },
    /// Report inconsistencies. Exit 0 none; 1 some.
    Check,
    /// Mappings per cell, per project and unscheduled. Exit 0.
    Stats,
}

/// An error that stops the command, printed as one line.
#[derive(Debug)]
struct Failure(String);

impl Failure {
    fn of(what: &str) -> impl FnOnce(&dyn std::error::Error) -> Failure + '_ {
        move |e| Failure(format!("{what}: {}", chain(e)))
    }
}

fn fail<E: std::error::Error>(what: &str) -> impl FnOnce(E) -> Failure + '_ {
    move |e| Failure::of(what)(&e)
}

fn main() -> ExitCode {
    std::panic::set_hook(Box::new(|info| {
        let msg = info
            .payload()
            .downcast_ref::<&str>()
            .map(|s| (*s).to_owned())
            .or_else(|| info.payload().downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "unknown".into());
        eprintln!("cellmap: internal error: {msg}");
        std::process::exit(i32::from(EXIT_ERROR));
    }));
    let cli = Cli::parse();
    if cli.debug {
        tracing_subscriber::fmt()
            .with_writer(std::io::stderr)
            .with_max_level(tracing::Level::DEBUG)
            .init();
    }
    match run(cli) {
        Ok(code) => ExitCode::from(code),
        Err(Failure(msg)) => {
            eprintln!("cellmap: error: {msg}");
            ExitCode::from(EXIT_ERROR)
        }
    }
}

struct Ctx {
    cfg: Config,
    format: Format,
}

impl Ctx {
    fn transport_url(&self) -> Option<&str> {
        self.cfg.get("DEFAULT", "transport_url")
    }

    fn database_connection(&self) -> Option<&str> {
        self.cfg.get("database", "connection")
    }

    fn api(&self) -> Result<Database, Failure> {
        let url = self.cfg.get("api_database", "connection").ok_or_else(|| {
            Failure(format!(
                "no [api_database]/connection in {}",
                if self.cfg.files.is_empty() {
                    "any configuration file (give --config-file)".to_owned()
                } else {
                    self.cfg
                        .files
                        .iter()
                        .map(|p| p.display().to_string())
                        .collect::<Vec<_>>()
                        .join(", ")
                }
            ))
        })?;
        let options = {
            let mut o = Options::default();
            o.default_transport_url = self.transport_url().map(str::to_owned);
            o.default_database_connection = self.database_connection().map(str::to_owned);
            o.max_connections = 4;
            o
        };
        Database::open_with(url, options).map_err(fail("cannot open the API database"))
    }

    fn router(&self, api: &Database) -> Result<Router, Failure> {
        let mut options = RouterOptions::default();
        if let Some(db) = self.database_connection() {
            options = options.default_database_connection(db);
        }
        Router::new(api.clone(), options).map_err(fail("cannot set up the cell router"))
    }
}

fn parse_max_count(raw: Option<&str>) -> Result<Option<i64>, u8> {
    match raw {
        None => Ok(None),
        Some(s) => match s.trim().parse::<i64>() {
            Ok(n) if n >= 1 => Ok(Some(n)),
            _ => {
                eprintln!("Must supply a positive value for max-count");
                Err(EXIT_BAD_MAX_COUNT)
            }
        },
    }
}

fn run(cli: Cli) -> Result<u8, Failure> {
    let cfg = Config::load(&cli.config_file).map_err(fail("configuration"))?;
    let ctx = Ctx {
        cfg,
        format: cli.format,
    };
    match cli.command {
        Command::ListCells { verbose } => list_cells(&ctx, verbose),
        Command::CreateCell {
            name,
            transport_url,
            database_connection,
            verbose,
            disabled,
        } => create_cell(
            &ctx,
            name,
            transport_url,
            database_connection,
            verbose,
            disabled,
        ),
        Command::UpdateCell {
            cell_uuid,
            name,
            transport_url,
            database_connection,
            disable,
            enable,
        } => update_cell(
            &ctx,
            &cell_uuid,
            name,
            transport_url,
            database_connection,
            disable,
            enable,
        ),
        Command::DeleteCell { cell_uuid, force } => {
            let api = ctx.api()?;
            let router = ctx.router(&api)?;
            let outcome = mapping_cellv2::delete_cell(&api, &router, &cell_uuid, force)
                .map_err(fail("delete_cell"))?;
            use mapping_cellv2::DeleteCellOutcome as O;
            let msg = match outcome {
                O::Deleted => None,
                O::NotFound => Some(format!("Cell with uuid {cell_uuid} was not found.")),
                O::HasHosts => Some(format!(
                    "There are existing hosts mapped to cell with uuid {cell_uuid}."
                )),
                O::HasInstances => Some(format!(
                    "There are existing instances mapped to cell with uuid {cell_uuid}."
                )),
                O::HasInstanceMappings => Some(format!(
                    "There are instance mappings to cell with uuid {cell_uuid}, but all instances \
                     have been deleted in the cell. Run 'nova-manage db archive_deleted_rows' \
                     or use --force."
                )),
            };
            if let Some(m) = msg {
                eprintln!("{m}");
            }
            Ok(exit(outcome.exit_code()))
        }
        Command::MapCell0 {
            database_connection,
        } => map_cell0(&ctx, database_connection),
        Command::ListHosts { cell_uuid } => list_hosts(&ctx, cell_uuid.as_deref()),
        Command::DeleteHost { cell_uuid, host } => {
            let api = ctx.api()?;
            let router = ctx.router(&api)?;
            let outcome = mapping_cellv2::delete_host(&api, &router, &cell_uuid, &host)
                .map_err(fail("delete_host"))?;
            use mapping_cellv2::DeleteHostOutcome as O;
            let msg = match outcome {
                O::Deleted => None,
                O::CellNotFound => Some(format!("Cell with uuid {cell_uuid} was not found.")),
                O::HostNotFound => Some(format!("The host {host} was not found.")),
                O::InOtherCell => Some(format!(
                    "The host {host} was not found in the cell {cell_uuid}."
                )),
                O::HasInstances => Some(format!("There are instances on the host {host}.")),
            };
            if let Some(m) = msg {
                eprintln!("{m}");
            }
            Ok(exit(outcome.exit_code()))
        }
        Command::VerifyInstance { uuid, quiet } => verify_instance(&ctx, &uuid, quiet),
        Command::MapInstances {
            cell_uuid,
            max_count,
            reset,
            batch_size,
        } => {
            let max_count = match parse_max_count(max_count.as_deref()) {
                Ok(m) => m,
                Err(code) => return Ok(code),
            };
            map_instances(&ctx, &cell_uuid, max_count, reset, batch_size)
        }
        Command::DiscoverHosts {
            cell_uuid,
            verbose,
            strict,
            by_service,
        } => discover_hosts(&ctx, cell_uuid.as_deref(), verbose, strict, by_service),
        Command::OnlineDataMigrations { max_count } => {
            let max_count = match parse_max_count(max_count.as_deref()) {
                Ok(m) => m,
                Err(code) => return Ok(code),
            };
            online_data_migrations(&ctx, max_count)
        }
        Command::Check => check(&ctx),
        Command::Stats => stats(&ctx),
    }
}

/// An exit code of the library's outcomes (all within 0..=5).
fn exit(code: i32) -> u8 {
    u8::try_from(code).unwrap_or(EXIT_ERROR)
}

fn list_cells(ctx: &Ctx, verbose: bool) -> Result<u8, Failure> {
    let api = ctx.api()?;
    let mut cells = api.cells().get_all().map_err(fail("listing cells"))?;
    cells.sort_by(|a, b| {
        a.name
            .as_deref()
            .unwrap_or("")
            .cmp(b.name.as_deref().unwrap_or(""))
    });
    let mut l = Listing::new(vec![
        ("Name", "name"),
        ("UUID", "uuid"),
        ("Transport URL", "transport_url"),
        ("Database Connection", "database_connection"),
        ("Disabled", "disabled"),
    ]);
    let show = |u: &str| {
        if verbose {
            u.to_owned()
        } else {
            mask_password(u)
        }
    };
    for c in cells {
        l.push(vec![
            json!(c.name.unwrap_or_default()),
            json!(c.uuid.to_string()),
            json!(show(&c.transport_url)),
            json!(show(&c.database_connection)),
            json!(c.disabled),
        ]);
    }
    l.print(ctx.format);
    Ok(0)
}

/// nova-manage's check of a transport URL: `scheme://...` with a scheme.
fn valid_transport_url(url: &str) -> bool {
    url.split_once("://").is_some_and(|(scheme, _)| {
        !scheme.is_empty()
            && scheme
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'))
    })
}

fn create_cell(
    ctx: &Ctx,
    name: Option<String>,
    transport_url: Option<String>,
    database_connection: Option<String>,
    verbose: bool,
    disabled: bool,
) -> Result<u8, Failure> {
    let Some(transport) = transport_url.or_else(|| ctx.transport_url().map(str::to_owned)) else {
        eprintln!("Must specify --transport-url if [DEFAULT]/transport_url is not set in the configuration file.");
        return Ok(1);
    };
    if !valid_transport_url(&transport) {
        eprintln!("Invalid transport URL: {}", mask_password(&transport));
        return Ok(1);
    }
    let Some(db) = database_connection.or_else(|| ctx.database_connection().map(str::to_owned))
    else {
        eprintln!("Must specify --database_connection if [database]/connection is not set in the configuration file.");
        return Ok(1);
    };
    let api = ctx.api()?;
    let cells = api.cells().get_all().map_err(fail("listing cells"))?;
    if let Some(other) = cells
        .iter()
        .find(|c| c.database_connection == db || c.transport_url == transport)
    {
        eprintln!(
            "The specified transport_url and/or database_connection combination already exists for another cell with uuid {}.",
            other.uuid
        );
        return Ok(2);
    }
    let uuid = uuid::Uuid::new_v4().to_string();
    let mut new = NewCellMapping::new(uuid.clone(), transport, db).disabled(disabled);
    if let Some(n) = name {
        new = new.name(n);
    }
    api.cells().create(new).map_err(fail("creating the cell"))?;
    match ctx.format {
        Format::Json => println!("{}", json!({ "uuid": uuid })),
        Format::Table if verbose => println!("{uuid}"),
        Format::Table => {}
    }
    Ok(0)
}

#[allow(clippy::too_many_arguments)]
fn update_cell(
    ctx: &Ctx,
    cell_uuid: &str,
    name: Option<String>,
    transport_url: Option<String>,
    database_connection: Option<String>,
    disable: bool,
    enable: bool,
) -> Result<u8, Failure> {
    let api = ctx.api()?;
    let cell = match api.cells().get_by_uuid(cell_uuid) {
        Ok(c) => c,
        Err(mapping_model::Error::CellMappingNotFound { .. }) => {
            eprintln!("Cell with uuid {cell_uuid} was not found.");
            return Ok(1);
        }
        Err(e) => return Err(Failure::of("reading the cell")(&e)),
    };
    // As nova-manage: a URL not given is taken from the configuration.
    let transport = transport_url.or_else(|| ctx.transport_url().map(str::to_owned));
    let db = database_connection.or_else(|| ctx.database_connection().map(str::to_owned));
    if let Some(t) = &transport {
        if !valid_transport_url(t) {
            eprintln!("Invalid transport URL: {}", mask_password(t));
            return Ok(2);
        }
    }
    let cells = api.cells().get_all().map_err(fail("listing cells"))?;
    if let Some(other) = cells.iter().find(|c| {
        c.uuid != cell.uuid
            && (Some(&c.database_connection) == db.as_ref()
                || Some(&c.transport_url) == transport.as_ref())
    }) {
        eprintln!(
            "The specified transport_url and/or database_connection combination already exists for another cell with uuid {}.",
            other.uuid
        );
        return Ok(3);
    }
    if disable && enable {
        eprintln!("Cell cannot be disabled and enabled at the same time.");
        return Ok(4);
    }
    let mut update = CellMappingUpdate::new();
    if let Some(n) = &name {
        update = update.name(Some(n));
    }
    if let Some(t) = transport {
        update = update.transport_url(t);
    }
    if let Some(d) = db {
        update = update.database_connection(d);
    }
    if disable || enable {
        if cell.is_cell0() {
            eprintln!("Cell0 cannot be disabled.");
            return Ok(5);
        }
        if disable == cell.disabled {
            eprintln!(
                "Cell {cell_uuid} is already {}",
                if disable { "disabled" } else { "enabled" }
            );
        } else {
            update = update.disabled(disable);
        }
    }
    if let Err(e) = api.cells().save(&cell, &update) {
        eprintln!("Unable to update CellMapping: {}", chain(&e));
        return Ok(2);
    }
    Ok(0)
}

/// `[database]/connection` with `_cell0` appended to the database name, as
/// nova-manage derives cell0's database.
fn cell0_connection(main: &str) -> String {
    match main.find('?') {
        Some(q) => format!("{}_cell0{}", &main[..q], &main[q..]),
        None => format!("{main}_cell0"),
    }
}

fn map_cell0(ctx: &Ctx, database_connection: Option<String>) -> Result<u8, Failure> {
    let Some(db) = database_connection.or_else(|| ctx.database_connection().map(cell0_connection))
    else {
        return Err(Failure(
            "no --database_connection and no [database]/connection in the configuration".into(),
        ));
    };
    let api = ctx.api()?;
    match api
        .cells()
        .create(NewCellMapping::new(CELL0_UUID, "none:///", db).name("cell0"))
    {
        Ok(_) => Ok(0),
        Err(e) if e.is_already_exists() => {
            eprintln!("Cell0 is already setup");
            Ok(0)
        }
        Err(e) => Err(Failure::of("creating cell0")(&e)),
    }
}

fn list_hosts(ctx: &Ctx, cell_uuid: Option<&str>) -> Result<u8, Failure> {
    let api = ctx.api()?;
    let mut hosts = match cell_uuid {
        Some(u) => match api.cells().get_by_uuid(u) {
            Ok(cell) => api
                .host_mappings()
                .get_by_cell_id(cell.id)
                .map_err(fail("listing hosts"))?,
            Err(mapping_model::Error::CellMappingNotFound { .. }) => {
                eprintln!("Cell with uuid {u} was not found.");
                return Ok(1);
            }
            Err(e) => return Err(Failure::of("reading the cell")(&e)),
        },
        None => api
            .host_mappings()
            .get_all()
            .map_err(fail("listing hosts"))?,
    };
    hosts.sort_by(|a, b| a.host.cmp(&b.host));
    let mut l = Listing::new(vec![
        ("Cell Name", "cell_name"),
        ("Cell UUID", "cell_uuid"),
        ("Hostname", "host"),
    ]);
    for h in hosts {
        l.push(vec![
            json!(h.cell_mapping.name),
            json!(h.cell_mapping.uuid.to_string()),
            json!(h.host),
        ]);
    }
    l.print(ctx.format);
    Ok(0)
}

fn verify_instance(ctx: &Ctx, uuid: &str, quiet: bool) -> Result<u8, Failure> {
    let api = ctx.api()?;
    let router = ctx.router(&api)?;
    let outcome =
        mapping_cellv2::verify_instance(&api, &router, uuid).map_err(fail("verify_instance"))?;
    let (status, cell, text) = match &outcome {
        VerifyOutcome::Alive(c) => (
            "alive",
            Some(c),
            format!(
                "Instance {uuid} is in cell: {} ({})",
                c.name.as_deref().unwrap_or(""),
                c.uuid
            ),
        ),
        VerifyOutcome::NotMapped => (
            "not_mapped",
            None,
            format!("Instance {uuid} is not mapped to a cell (upgrade is incomplete) or instance does not exist"),
        ),
        VerifyOutcome::NoCell => (
            "no_cell",
            None,
            format!("Instance {uuid} is not mapped to a cell"),
        ),
        VerifyOutcome::Deleted(c) => (
            "deleted",
            Some(c),
            format!("The instance with uuid {uuid} has been deleted.\nExecute `nova-manage db archive_deleted_rows` command to archive this deleted instance and remove its instance_mapping."),
        ),
        VerifyOutcome::Archived(c) => (
            "archived",
            Some(c),
            format!("The instance with uuid {uuid} has been archived.\nHowever its instance_mapping remains."),
        ),
    };
    if !quiet {
        match ctx.format {
            Format::Table => println!("{text}"),
            Format::Json => println!(
                "{}",
                json!({"uuid": uuid, "status": status, "cell_uuid": cell.map(|c| c.uuid.to_string())})
            ),
        }
    }
    Ok(exit(outcome.exit_code()))
}

/// A progress line on stderr, only when stdout and stderr are terminals.
struct Progress {
    on: bool,
    start: Instant,
}

impl Progress {
    fn new() -> Self {
        Self {
            on: std::io::stdout().is_terminal() && std::io::stderr().is_terminal(),
            start: Instant::now(),
        }
    }

    fn update(&mut self, p: MapProgress) {
        if !self.on {
            return;
        }
        let secs = self.start.elapsed().as_secs_f64().max(0.001);
        let width = 30usize;
        let frac = if p.total == 0 {
            1.0
        } else {
            (p.processed as f64 / p.total as f64).min(1.0)
        };
        let filled = (frac * width as f64) as usize;
        eprint!(
            "\r[{}{}] {}/{} instances, {:.0}/s ",
            "#".repeat(filled),
            "-".repeat(width - filled),
            p.processed,
            p.total,
            p.processed as f64 / secs
        );
        let _ = std::io::stderr().flush();
    }

    fn finish(&self) {
        if self.on {
            eprintln!();
        }
    }
}

fn map_instances(
    ctx: &Ctx,
    cell_uuid: &str,
    max_count: Option<i64>,
    reset: bool,
    batch_size: usize,
) -> Result<u8, Failure> {
    let api = ctx.api()?;
    let router = ctx.router(&api)?;
    let mut progress = Progress::new();
    let start = Instant::now();
    let report = mapping_cellv2::map_instances(
        &api,
        &router,
        cell_uuid,
        MapInstancesOptions {
            max_count,
            reset,
            batch_size,
        },
        &mut |p| progress.update(p),
    );
    progress.finish();
    let report = report.map_err(fail("map_instances"))?;
    let secs = start.elapsed().as_secs_f64();
    let mut l = Listing::new(vec![
        ("Processed", "processed"),
        ("Mapped", "mapped"),
        ("Already Mapped", "already_mapped"),
        ("Unmappable", "unmappable"),
        ("Complete", "complete"),
        ("Seconds", "seconds"),
    ]);
    l.push(vec![
        json!(report.processed),
        json!(report.mapped),
        json!(report.already_mapped),
        json!(report.unmappable),
        json!(report.complete),
        json!((secs * 1000.0).round() / 1000.0),
    ]);
    l.print(ctx.format);
    Ok(if report.complete { 0 } else { 1 })
}

fn discover_hosts(
    ctx: &Ctx,
    cell_uuid: Option<&str>,
    verbose: bool,
    strict: bool,
    by_service: bool,
) -> Result<u8, Failure> {
    let api = ctx.api()?;
    let router = ctx.router(&api)?;
    let found = mapping_cellv2::discover_hosts(&api, &router, cell_uuid, by_service)
        .map_err(fail("discover_hosts"))?;
    if verbose || ctx.format == Format::Json {
        let mut l = Listing::new(vec![("Hostname", "host"), ("Cell UUID", "cell_uuid")]);
        for d in &found {
            l.push(vec![json!(d.host), json!(d.cell_uuid.to_string())]);
        }
        l.print(ctx.format);
    }
    Ok(if strict && found.is_empty() { 1 } else { 0 })
}

fn online_data_migrations(ctx: &Ctx, max_count: Option<i64>) -> Result<u8, Failure> {
    let api = ctx.api()?;
    let router = ctx.router(&api)?;
    let per_pass = max_count.unwrap_or(DEFAULT_BATCH_SIZE as i64);
    type Migration =
        fn(&Database, &Router, i64) -> mapping_cellv2::Result<mapping_cellv2::MigrationCount>;
    let migrations: [(&str, Migration); 2] = [
        ("populate_queued_for_delete", |a, r, n| {
            mapping_cellv2::populate_queued_for_delete(a, r, n)
        }),
        ("populate_user_id", |a, r, n| {
            mapping_cellv2::populate_user_id(a, r, n)
        }),
    ];
    let mut totals = [(0u64, 0u64); 2];
    let mut failed = false;
    loop {
        let mut ran = 0;
        for (i, (name, f)) in migrations.iter().enumerate() {
            match f(&api, &router, per_pass) {
                Ok(c) => {
                    totals[i].0 += c.found;
                    totals[i].1 += c.done;
                    ran += c.done;
                }
                Err(e) => {
                    eprintln!("cellmap: error: {name}: {}", chain(&e));
                    failed = true;
                }
            }
        }
        if failed || max_count.is_some() || ran == 0 {
            let mut l = Listing::new(vec![
                ("Migration", "migration"),
                ("Total Needed", "total_needed"),
                ("Completed", "completed"),
            ]);
            for (i, (name, _)) in migrations.iter().enumerate() {
                l.push(vec![json!(name), json!(totals[i].0), json!(totals[i].1)]);
            }
            l.print(ctx.format);
            return Ok(if failed {
                2
            } else if ran > 0 {
                1
            } else {
                0
            });
        }
    }
}

fn check(ctx: &Ctx) -> Result<u8, Failure> {
    let api = ctx.api()?;
    let router = ctx.router(&api)?;
    let report = mapping_cellv2::check(&api, &router).map_err(fail("check"))?;
    // One listing of the problems for both formats.
    let mut problems = Listing::new(vec![
        ("Problem", "kind"),
        ("Count", "count"),
        ("Examples", "sample"),
        ("What to do", "hint"),
    ]);
    for p in &report.problems {
        problems.push(vec![
            json!(p.kind),
            json!(p.count),
            json!(p.sample),
            json!(p.hint),
        ]);
    }
    match ctx.format {
        Format::Json => println!(
            "{}",
            json!({
                "ok": report.is_ok(),
                "cells_checked": report.cells_checked,
                "mappings_checked": report.mappings_checked,
                "problems": problems.to_json(),
            })
        ),
        Format::Table if report.is_ok() => println!(
            "No problems found ({} cells, {} instance mappings checked).",
            report.cells_checked, report.mappings_checked
        ),
        Format::Table => problems.print(ctx.format),
    }
    Ok(if report.is_ok() { 0 } else { 1 })
}

fn stats(ctx: &Ctx) -> Result<u8, Failure> {
    let api = ctx.api()?;
    let s = mapping_cellv2::stats(&api).map_err(fail("stats"))?;
    let mut cells = Listing::new(vec![
        ("Cell Name", "name"),
        ("Cell UUID", "uuid"),
        ("Instances", "instances"),
        ("Hosts", "hosts"),
    ]);
    for c in &s.cells {
        cells.push(vec![
            json!(c.name),
            json!(c.uuid.to_string()),
            json!(c.instances),
            json!(c.hosts),
        ]);
    }
    let mut projects = Listing::new(vec![("Project", "project_id"), ("Instances", "instances")]);
    for (p, n) in &s.projects {
        projects.push(vec![json!(p), json!(n)]);
    }
    match ctx.format {
        Format::Json => println!(
            "{}",
            json!({
                "total": s.total,
                "unscheduled": s.unscheduled,
                "cells": cells.to_json(),
                "projects": projects.to_json(),
            })
        ),
        Format::Table => {
            print!("{}", cells.to_table());
            println!("Unscheduled: {}   Total: {}", s.unscheduled, s.total);
            print!("{}", projects.to_table());
        }
    }
    Ok(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cell0_database_like_nova() {
        assert_eq!(
            cell0_connection("mysql+pymysql://u:p@db/nova?charset=utf8"),
            "mysql+pymysql://u:p@db/nova_cell0?charset=utf8"
        );
        assert_eq!(
            cell0_connection("sqlite:////var/nova.sqlite"),
            "sqlite:////var/nova.sqlite_cell0"
        );
    }

    #[test]
    fn transport_urls() {
        assert!(valid_transport_url("rabbit://u:p@h:5672/"));
        assert!(valid_transport_url("none:///"));
        assert!(!valid_transport_url("rabbit"));
        assert!(!valid_transport_url("://h"));
    }
}
