//! The command line: `cellmap`'s options and subcommands (clap's derive
//! types; their doc comments are the help text).

use std::ffi::OsString;
use std::path::PathBuf;

use clap::{Parser, Subcommand};
use mapping_cellv2::MAP_INSTANCES_BATCH_SIZE;

use crate::output::Format;

/// The arguments without the `cell_v2` of `cellmap cell_v2 <command>`
/// (the nova-manage habit): the first argument that is neither an option
/// nor the value of `--config-file` or `--format` is dropped when it is
/// `cell_v2`. Everything else is left as it was, for clap to judge.
pub(crate) fn without_cell_v2(args: impl IntoIterator<Item = OsString>) -> Vec<OsString> {
    let mut args: Vec<OsString> = args.into_iter().collect();
    let mut i = 1;
    while i < args.len() {
        let arg = args[i].to_string_lossy();
        if arg == "--config-file" || arg == "--format" {
            i += 2;
        } else if arg == "--" {
            return args;
        } else if arg.starts_with('-') {
            i += 1;
        } else {
            if arg == "cell_v2" {
                args.remove(i);
            }
            return args;
        }
    }
    args
}

#[derive(Parser, Debug)]
#[command(
    name = "cellmap",
    version,
    about = "Nova cell mappings: nova-manage cell_v2's commands, online data migrations, check and stats"
)]
pub(crate) struct Cli {
    /// A nova.conf to read; repeat for several, later files override
    /// earlier ones (default: the first of ~/.nova/nova.conf, ~/nova.conf,
    /// /etc/nova/nova.conf, /etc/nova.conf).
    #[arg(long = "config-file", global = true, value_name = "PATH")]
    pub(crate) config_file: Vec<PathBuf>,
    /// Output format of listings and reports.
    #[arg(long, global = true, value_enum, default_value_t = Format::Table)]
    pub(crate) format: Format,
    /// Log what is done on stderr, and print the causes of an error one
    /// per line.
    #[arg(long, global = true)]
    pub(crate) debug: bool,
    /// Print tables whole: no cell cut to the terminal's width, every item
    /// of a list.
    #[arg(long, global = true)]
    pub(crate) wide: bool,
    #[command(subcommand)]
    pub(crate) command: Command,
}

#[derive(Subcommand, Debug)]
pub(crate) enum Command {
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

#[cfg(test)]
mod tests {
    use super::*;

    fn strip(args: &[&str]) -> Vec<String> {
        without_cell_v2(args.iter().map(OsString::from))
            .into_iter()
            .map(|a| a.to_string_lossy().into_owned())
            .collect()
    }

    #[test]
    fn cell_v2_is_dropped_before_the_command_only() {
        assert_eq!(
            strip(&["cellmap", "cell_v2", "list_cells"]),
            ["cellmap", "list_cells"]
        );
        assert_eq!(
            strip(&[
                "cellmap",
                "--config-file",
                "cell_v2",
                "--debug",
                "cell_v2",
                "list_cells"
            ]),
            [
                "cellmap",
                "--config-file",
                "cell_v2",
                "--debug",
                "list_cells"
            ]
        );
        assert_eq!(
            strip(&["cellmap", "list_hosts", "--cell_uuid", "cell_v2"]),
            ["cellmap", "list_hosts", "--cell_uuid", "cell_v2"]
        );
        assert_eq!(
            strip(&["cellmap", "--format=json", "cell_v2", "stats"]),
            ["cellmap", "--format=json", "stats"]
        );
    }
}
