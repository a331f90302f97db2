//! The resume point of Nova's `nova-manage cell_v2 map_instances` (docs/tables.md,
//! docs/cellv2.md): a fake instance mapping whose project_id and user_id are
//! [`INSTANCE_MIGRATION_MARKER`] and whose instance_uuid is the last mapped
//! instance's uuid with every `-` replaced by a space.

use diesel::prelude::*;
use mapping_model::schema::instance_mappings;
use mapping_model::{Error, Result, ToUuid, Uuid, INSTANCE_MIGRATION_MARKER};

use super::instance_mapping::InstanceMappings;
use super::InstanceInsert;
use crate::db::{Executor, Op, Tx};
use crate::errors::db_err;
use crate::timestamp::NovaTimestamp;

/// The instance_uuid Nova stores for the marker of `last`.
fn marker_text(last: &Uuid) -> String {
    last.hyphenated().to_string().replace('-', " ")
}

fn read(tx: &mut Tx<'_>) -> Result<Option<Uuid>> {
    let row = instance_mappings::table
        .filter(instance_mappings::project_id.eq(INSTANCE_MIGRATION_MARKER))
        .order(instance_mappings::id.asc())
        .select((instance_mappings::id, instance_mappings::instance_uuid))
        .first::<(i32, String)>(tx.conn)
        .optional()
        .map_err(db_err("instance_mapping.marker"))?;
    match row {
        None => Ok(None),
        Some((id, text)) => Uuid::parse_str(&text.replace(' ', "-"))
            .map(Some)
            .map_err(|e| Error::BadRow {
                table: "instance_mappings",
                id,
                reason: format!(
                    "map_instances marker {} does not name a UUID: {e}",
                    mapping_model::validate::echo(&text)
                ),
            }),
    }
}

fn delete(tx: &mut Tx<'_>) -> Result<usize> {
    diesel::delete(
        instance_mappings::table
            .filter(instance_mappings::project_id.eq(INSTANCE_MIGRATION_MARKER)),
    )
    .execute(tx.conn)
    .map_err(db_err("instance_mapping.delete_marker"))
}

fn write(tx: &mut Tx<'_>, last: &Uuid) -> Result<()> {
    let text = marker_text(last);
    let now = NovaTimestamp(tx.now());
    tx.atomic(|tx| {
        delete(tx)?;
        diesel::insert_into(instance_mappings::table)
            .values(InstanceInsert {
                created_at: now,
                instance_uuid: &text,
                cell_id: None,
                project_id: INSTANCE_MIGRATION_MARKER,
                user_id: INSTANCE_MIGRATION_MARKER,
                queued_for_delete: false,
            })
            .execute(tx.conn)
            .map_err(db_err("instance_mapping.set_marker"))?;
        Ok(())
    })
}

impl<E: Executor> InstanceMappings<E> {
    /// The resume point of `map_instances`: the uuid of the last instance
    /// mapped, or `None` when no marker row exists. A marker row whose text
    /// is not a UUID with spaces for hyphens is [`Error::BadRow`]. With
    /// several marker rows (never written by Nova), the oldest one counts.
    ///
    /// ```
    /// # use mapping_diesel::Database;
    /// # use mapping_model::{Error, Uuid};
    /// let db = Database::open("sqlite://")?;
    /// db.migrate()?;
    /// assert_eq!(db.instance_mappings().marker()?, None);
    /// let last: Uuid = "0b9f4a36-59b8-4b8e-bf0b-4e1c9f6d2a10".parse().unwrap();
    /// db.instance_mappings().set_marker(last)?;
    /// assert_eq!(db.instance_mappings().marker()?, Some(last));
    /// assert_eq!(db.instance_mappings().delete_marker()?, 1);
    /// assert_eq!(db.instance_mappings().marker()?, None);
    /// # Ok::<(), Error>(())
    /// ```
    pub fn marker(&mut self) -> Result<Option<Uuid>> {
        self.exec
            .run(Op::read("instance_mapping.marker"), &mut read)
    }

    /// Records `last` as the resume point, as `nova-manage` does: any marker
    /// row is replaced by one whose instance_uuid is `last` with spaces for
    /// hyphens, project_id and user_id [`INSTANCE_MIGRATION_MARKER`], no cell.
    pub fn set_marker(&mut self, last: impl ToUuid) -> Result<()> {
        let last = last.to_uuid("marker")?;
        self.exec
            .run(Op::write("instance_mapping.set_marker"), &mut |tx| {
                write(tx, &last)
            })
    }

    /// Deletes every marker row; returns how many there were.
    pub fn delete_marker(&mut self) -> Result<usize> {
        self.exec
            .run(Op::write("instance_mapping.delete_marker"), &mut delete)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn marker_text_is_nova_s() {
        let u: Uuid = "0B9F4A36-59B8-4B8E-BF0B-4E1C9F6D2A10".parse().unwrap();
        assert_eq!(marker_text(&u), "0b9f4a36 59b8 4b8e bf0b 4e1c9f6d2a10");
    }
}
