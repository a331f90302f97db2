//! Counting instance mappings: the quota checks of Nova's
//! `InstanceMappingList.get_counts` and `get_count_by_uuids_and_user`.

use diesel::prelude::*;
use mapping_model::schema::instance_mappings;
use mapping_model::{validate, InstanceCounts, Result, ToUuid};

use super::instance_mapping::{canonical_uuids, InstanceMappings};
use super::{on_inner, UuidIn, UUID_CHUNK};
use crate::connection::DbConnection;
use crate::db::{Executor, Op, Tx};
use crate::errors::db_err;

fn get_counts(tx: &mut Tx<'_>, project_id: &str, user_id: Option<&str>) -> Result<InstanceCounts> {
    validate::required_varchar("project_id", project_id)?;
    if let Some(u) = user_id {
        validate::required_varchar("user_id", u)?;
    }
    let base = || {
        instance_mappings::table
            .filter(instance_mappings::project_id.eq(project_id))
            .filter(instance_mappings::queued_for_delete.eq(false))
    };
    let project = on_inner!(tx.conn, |c| base().count().get_result::<i64>(c))
        .map_err(db_err("instance_mapping_list.get_counts"))?;
    let user = match user_id {
        Some(u) => Some(
            on_inner!(tx.conn, |c| base()
                .filter(instance_mappings::user_id.eq(u))
                .count()
                .get_result::<i64>(c))
            .map_err(db_err("instance_mapping_list.get_counts"))?,
        ),
        None => None,
    };
    Ok(InstanceCounts { project, user })
}

fn get_count_by_uuids_and_user(tx: &mut Tx<'_>, uuids: &[String], user_id: &str) -> Result<i64> {
    validate::required_varchar("user_id", user_id)?;
    let mut total = 0;
    for chunk in uuids.chunks(UUID_CHUNK) {
        macro_rules! count_of {
            ($uuids:expr, $c:expr) => {
                instance_mappings::table
                    .filter($uuids)
                    // `COALESCE(user_id, '') = ?`, not `user_id = ?`: the
                    // same rows (user_id given is never empty) in the
                    // column's collation, but no index on user_id applies,
                    // so the planner takes the uuid index. Without it SQLite
                    // (no statistics) read every mapping of the user through
                    // `instance_mappings_user_id_project_id_idx` (100,000
                    // rows for 1,000 uuids in the 1M-row benchmark table),
                    // and PostgreSQL AND-ed a bitmap of all the user's rows.
                    .filter(coalesce(instance_mappings::user_id, "").eq(user_id))
                    .filter(instance_mappings::queued_for_delete.eq(false))
                    .count()
                    .get_result::<i64>($c)
            };
        }
        // The uuid list in its cached form per backend (see `UuidIn`,
        // `UuidInArray`).
        total += match tx.conn {
            DbConnection::Sqlite(c) => count_of!(UuidIn::new(chunk), c),
            #[cfg(feature = "postgres")]
            DbConnection::Postgres(c) => count_of!(super::UuidInArray::new(chunk), c),
            #[cfg(feature = "mysql")]
            DbConnection::Mysql(c) => count_of!(UuidIn::new(chunk), c),
        }
        .map_err(db_err("instance_mapping_list.get_count_by_uuids_and_user"))?;
    }
    Ok(total)
}

diesel::define_sql_function! {
    /// SQL `COALESCE` of a nullable text and a fallback.
    fn coalesce(x: diesel::sql_types::Nullable<diesel::sql_types::Text>, y: diesel::sql_types::Text) -> diesel::sql_types::Text;
}

impl<E: Executor> InstanceMappings<E> {
    /// Counts of the project's (and the user's) mappings whose
    /// queued_for_delete is false (NULL rows are not counted: their state is
    /// unknown). `user` is `None` when no user is asked for.
    ///
    /// ```
    /// # use mapping_diesel::Database;
    /// # use mapping_model::{Error, InstanceCounts, NewInstanceMapping};
    /// # let db = Database::open("sqlite://")?;
    /// # db.migrate()?;
    /// let mut ims = db.instance_mappings();
    /// ims.create(NewInstanceMapping::new("0b9f4a36-59b8-4b8e-bf0b-4e1c9f6d2a10", "project", "alice"))?;
    /// ims.create(NewInstanceMapping::new("5f0c2a0e-6f56-4a7d-8e1b-2d0c9a8b7e61", "project", "bob"))?;
    /// ims.create(
    ///     NewInstanceMapping::new("9d3e7c1a-2b4f-4c6d-8e0f-1a2b3c4d5e6f", "project", "alice")
    ///         .queued_for_delete(true),
    /// )?;
    ///
    /// assert_eq!(ims.get_counts("project", Some("alice"))?, InstanceCounts { project: 2, user: Some(1) });
    /// assert_eq!(ims.get_counts("project", None)?, InstanceCounts { project: 2, user: None });
    /// # Ok::<(), Error>(())
    /// ```
    pub fn get_counts(
        &mut self,
        project_id: &str,
        user_id: Option<&str>,
    ) -> Result<InstanceCounts> {
        self.exec
            .run(Op::read("instance_mapping_list.get_counts"), &mut |tx| {
                get_counts(tx, project_id, user_id)
            })
    }

    /// How many of these instances belong to the user and are not queued for
    /// delete (false only).
    pub fn get_count_by_uuids_and_user(
        &mut self,
        uuids: &[impl ToUuid],
        user_id: &str,
    ) -> Result<i64> {
        let uuids = canonical_uuids(uuids)?;
        self.exec.run(
            Op::read("instance_mapping_list.get_count_by_uuids_and_user"),
            &mut |tx| get_count_by_uuids_and_user(tx, &uuids, user_id),
        )
    }
}
