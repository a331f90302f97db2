//! `cellmap`: the operator CLI over Nova's cell mappings.
//!
//! It reads `nova.conf` (`--config-file`, several allowed, later ones
//! override earlier ones) for `[api_database]/connection`,
//! `[DEFAULT]/transport_url` and `[database]/connection`, and offers the
//! commands of `nova-manage cell_v2` with nova-manage's exit codes, the two
//! online data migrations, and `check` and `stats`. Errors are one line on
//! stderr (`--debug` adds their causes, one per line) with exit code 255
//! (nova-manage's "unexpected error"), or 1 for a configuration file that
//! is missing or malformed (as nova-manage); usage errors exit with 2. A
//! stdout closed by its reader ends the command quietly with 0. See
//! docs/cellv2.md.

// The doc comments of the command-line types are clap's help text, which
// names nova.conf options as `[section]/option`: not intra-doc links.
#![allow(rustdoc::broken_intra_doc_links)]

mod cells;
mod cli;
mod config;
mod health;
mod instances;
mod output;

use std::process::ExitCode;

use clap::Parser;
use mapping_cellv2::{messages, Router, RouterOptions};
use mapping_diesel::{Database, Options};

use cells::{
    create_cell, delete_cell, delete_host, list_cells, list_hosts, map_cell0, update_cell,
};
use cli::{Cli, Command};
use config::Config;
use health::{check, stats};
use instances::{discover_hosts, map_instances, online_data_migrations, verify_instance};
use output::Format;

/// Exit code of an error that stopped the command (nova-manage's 255).
const EXIT_ERROR: u8 = 255;
/// Exit code of a bad `--max-count` (nova-manage's 127).
const EXIT_BAD_MAX_COUNT: u8 = 127;

/// Exit code of a configuration file that is missing or malformed
/// (nova-manage's: oslo.config raises before its error handler, so Python
/// exits with 1).
const EXIT_CONFIG: u8 = 1;

/// Why a command stopped before its end.
#[derive(Debug)]
enum Failure {
    /// An error, printed as one line (`--debug` adds its causes, one per
    /// line), with this exit code.
    Error {
        /// The exit code.
        code: u8,
        /// The one-line message: what was being done, the error and each
        /// of its causes once.
        message: String,
        /// The error and its causes, outermost first, each once.
        causes: Vec<String>,
    },
    /// Stdout was closed by its reader (`cellmap stats | head -1`): the
    /// command ends quietly with 0, as `ls | head` does.
    ClosedPipe,
}

impl Failure {
    /// An error of our own, without a cause (exit 255).
    fn msg(message: impl Into<String>) -> Failure {
        Failure::Error {
            code: EXIT_ERROR,
            message: mapping_cellv2::one_line(&message.into()),
            causes: Vec::new(),
        }
    }

    /// The error `e` met while doing `what` (exit 255).
    fn of(what: &str) -> impl FnOnce(&dyn std::error::Error) -> Failure + '_ {
        move |e| {
            let causes = messages(e);
            Failure::Error {
                code: EXIT_ERROR,
                message: format!("{what}: {}", causes.join(": ")),
                causes,
            }
        }
    }

    /// The same failure with another exit code.
    fn with_code(self, code: u8) -> Failure {
        match self {
            Failure::Error {
                message, causes, ..
            } => Failure::Error {
                code,
                message,
                causes,
            },
            other => other,
        }
    }
}

fn fail<E: std::error::Error>(what: &str) -> impl FnOnce(E) -> Failure + '_ {
    move |e| Failure::of(what)(&e)
}

/// Prints a failure on stderr: one line, and with `debug` the causes, one
/// per line. Returns the exit code.
fn report(failure: Failure, debug: bool) -> u8 {
    match failure {
        Failure::ClosedPipe => 0,
        Failure::Error {
            code,
            message,
            causes,
        } => {
            eprintln!("cellmap: error: {message}");
            if debug {
                for c in causes {
                    eprintln!("  caused by: {c}");
                }
            }
            code
        }
    }
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
    let cli = Cli::parse_from(cli::without_cell_v2(std::env::args_os()));
    let debug = cli.debug;
    output::set_table_width(cli.wide);
    if debug {
        tracing_subscriber::fmt()
            .with_writer(std::io::stderr)
            .with_max_level(tracing::Level::DEBUG)
            .init();
    }
    match run(cli) {
        Ok(code) => ExitCode::from(code),
        Err(f) => ExitCode::from(report(f, debug)),
    }
}

struct Ctx {
    cfg: Config,
    format: Format,
    debug: bool,
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
            Failure::msg(format!(
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
    let cfg = Config::load(&cli.config_file)
        .map_err(|e| Failure::of("configuration")(&e).with_code(EXIT_CONFIG))?;
    let ctx = Ctx {
        cfg,
        format: cli.format,
        debug: cli.debug,
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
        Command::DeleteCell { cell_uuid, force } => delete_cell(&ctx, &cell_uuid, force),
        Command::MapCell0 {
            database_connection,
        } => map_cell0(&ctx, database_connection),
        Command::ListHosts { cell_uuid } => list_hosts(&ctx, cell_uuid.as_deref()),
        Command::DeleteHost { cell_uuid, host } => delete_host(&ctx, &cell_uuid, &host),
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
