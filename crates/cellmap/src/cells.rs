//! The cell and host commands: `list_cells`, `create_cell`, `update_cell`,
//! `delete_cell`, `map_cell0`, `list_hosts`, `delete_host`.

use mapping_cellv2::chain;
use mapping_model::{CellMappingUpdate, NewCellMapping, CELL0_UUID};
use serde_json::json;

use crate::output::{mask_password, outln, Format, Listing};
use crate::{exit, fail, Ctx, Failure};

/// `list_cells`: every cell, URLs masked unless `--verbose`.
pub(crate) fn list_cells(ctx: &Ctx, verbose: bool) -> Result<u8, Failure> {
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
    l.print(ctx.format)?;
    Ok(0)
}

/// nova-manage's check of a transport URL: `scheme://...` with a scheme.
pub(crate) fn valid_transport_url(url: &str) -> bool {
    url.split_once("://").is_some_and(|(scheme, _)| {
        !scheme.is_empty()
            && scheme
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'))
    })
}

/// `create_cell`: a new cell from the options or nova.conf's defaults.
pub(crate) fn create_cell(
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
        Format::Json => outln!("{}", json!({ "uuid": uuid }))?,
        Format::Table if verbose => outln!("{uuid}")?,
        Format::Table => {}
    }
    Ok(0)
}

#[allow(clippy::too_many_arguments)]
pub(crate) fn update_cell(
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
        // A uuid that is not one names no cell: nova-manage's "not found".
        Err(
            mapping_model::Error::CellMappingNotFound { .. }
            | mapping_model::Error::InvalidInput { .. },
        ) => {
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
pub(crate) fn cell0_connection(main: &str) -> String {
    match main.find('?') {
        Some(q) => format!("{}_cell0{}", &main[..q], &main[q..]),
        None => format!("{main}_cell0"),
    }
}

/// `map_cell0`: creates cell0, its database named after the main one.
pub(crate) fn map_cell0(ctx: &Ctx, database_connection: Option<String>) -> Result<u8, Failure> {
    let Some(db) = database_connection.or_else(|| ctx.database_connection().map(cell0_connection))
    else {
        return Err(Failure::msg(
            "no --database_connection and no [database]/connection in the configuration",
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

/// `list_hosts`: the host mappings, of one cell or of all.
pub(crate) fn list_hosts(ctx: &Ctx, cell_uuid: Option<&str>) -> Result<u8, Failure> {
    let api = ctx.api()?;
    let mut hosts = match cell_uuid {
        Some(u) => match api.cells().get_by_uuid(u) {
            Ok(cell) => api
                .host_mappings()
                .get_by_cell_id(cell.id)
                .map_err(fail("listing hosts"))?,
            Err(
                mapping_model::Error::CellMappingNotFound { .. }
                | mapping_model::Error::InvalidInput { .. },
            ) => {
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
    l.print(ctx.format)?;
    Ok(0)
}

/// `delete_cell`: refuses a cell that still has hosts or instances unless forced.
pub(crate) fn delete_cell(ctx: &Ctx, cell_uuid: &str, force: bool) -> Result<u8, Failure> {
    let api = ctx.api()?;
    let router = ctx.router(&api)?;
    let outcome = mapping_cellv2::delete_cell(&api, &router, cell_uuid, force)
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

/// `delete_host`: removes a host's mapping once no instance runs on it.
pub(crate) fn delete_host(ctx: &Ctx, cell_uuid: &str, host: &str) -> Result<u8, Failure> {
    let api = ctx.api()?;
    let router = ctx.router(&api)?;
    let outcome =
        mapping_cellv2::delete_host(&api, &router, cell_uuid, host).map_err(fail("delete_host"))?;
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
