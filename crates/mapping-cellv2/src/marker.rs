//! The resume point of `map_instances`, kept as Nova keeps it (SPEC §4): a
//! fake instance mapping with project_id and user_id
//! [`MARKER_PROJECT_ID`], no cell, and the last instance's uuid with its
//! hyphens replaced by spaces (the unique key forbids the real uuid).
//!
//! All marker access is in this module, so that it can move to a typed API
//! of `mapping-diesel` without touching the callers.

use diesel::prelude::*;
use mapping_diesel::timestamp::{now, NovaTimestamp};
use mapping_diesel::Database;
use mapping_model::schema::instance_mappings;

use crate::{Error, Result};

/// The project and user id of the marker row.
pub const MARKER_PROJECT_ID: &str = "INSTANCE_MIGRATION_MARKER";

/// The marker's instance_uuid for the last mapped instance.
pub fn encode_marker(instance_uuid: &str) -> String {
    instance_uuid.replace('-', " ")
}

/// The instance uuid a marker's instance_uuid stands for.
pub fn decode_marker(stored: &str) -> String {
    stored.replace(' ', "-")
}

/// The instance the marker names (decoded), if there is a marker; with
/// several (two runs raced), the oldest row's.
pub fn read_marker(api: &Database) -> Result<Option<String>> {
    let found = api.with_connection(|c| {
        Ok(instance_mappings::table
            .filter(instance_mappings::project_id.eq(MARKER_PROJECT_ID))
            .order(instance_mappings::id.asc())
            .select(instance_mappings::instance_uuid)
            .first::<String>(c)
            .optional())
    })?;
    Ok(found
        .map_err(Error::api("reading the map_instances marker"))?
        .map(|s| decode_marker(&s)))
}

/// Replaces every marker row by one naming `last` (or by none), in one
/// transaction.
pub(crate) fn replace_marker(api: &Database, last: Option<&str>) -> Result<()> {
    let ts = NovaTimestamp(now(api.backend()));
    let r = api.with_connection(|c| {
        Ok(c.transaction::<_, diesel::result::Error, _>(|c| {
            diesel::delete(
                instance_mappings::table
                    .filter(instance_mappings::project_id.eq(MARKER_PROJECT_ID)),
            )
            .execute(c)?;
            if let Some(last) = last {
                diesel::insert_into(instance_mappings::table)
                    .values((
                        instance_mappings::created_at.eq(Some(ts)),
                        instance_mappings::instance_uuid.eq(encode_marker(last)),
                        instance_mappings::project_id.eq(MARKER_PROJECT_ID),
                        instance_mappings::user_id.eq(Some(MARKER_PROJECT_ID)),
                        instance_mappings::queued_for_delete.eq(Some(false)),
                    ))
                    .execute(c)?;
            }
            Ok(())
        }))
    })?;
    r.map_err(Error::api("writing the map_instances marker"))
}
