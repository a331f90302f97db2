//! Checking a database against Nova's schema, and adopting a `nova_api`
//! that Nova's own migrations made.

use diesel::prelude::*;
use diesel::sql_types::Text;
use diesel_migrations::MigrationHarness;
use mapping_model::{Error, Result};

use super::diff::differences;
use super::expected::expected;
use super::introspect::{introspect, load, table_names};
use super::{ALEMBIC_VERSION_TABLE, DIESEL_MIGRATIONS_TABLE, MAPPING_TABLES};
use crate::connection::DbConnection;

/// Checks the shape of the three tables without changing anything: `Ok` when
/// the database holds exactly Nova's schema for them, else
/// [`Error::SchemaMismatch`] with one line per difference.
pub fn check(conn: &mut DbConnection) -> Result<()> {
    let found = introspect(conn)?;
    let differences = differences(&expected(conn.backend()), &found);
    if differences.is_empty() {
        Ok(())
    } else {
        for d in &differences {
            tracing::warn!(difference = %d, "schema differs from Nova's");
        }
        Err(Error::SchemaMismatch { differences })
    }
}

#[derive(QueryableByName)]
struct VersionRow {
    #[diesel(sql_type = Text)]
    version: String,
}

/// When Nova's migrations made the tables, records our baseline as applied.
///
/// Runs before our migrations. Nothing happens when none of the three tables
/// exists (a new database) or when our baseline is already recorded. When
/// they exist, Nova's `alembic_version` table exists and our baseline is not
/// recorded, the tables are [`check`]ed: if they have Nova's shape, diesel's
/// migrations table is created if needed and the baseline is recorded as
/// applied, leaving the tables and their rows untouched; if not, the
/// [`Error::SchemaMismatch`] is returned and nothing is changed. Tables of
/// unknown origin (no `alembic_version`, no record of ours), and a Nova
/// database without the mapping tables (a cell database rather than
/// `nova_api`), are refused with [`Error::Migration`].
pub fn adopt_nova_schema(conn: &mut DbConnection) -> Result<()> {
    let Some(baseline) = crate::migrations::MIGRATIONS.first() else {
        return Ok(());
    };
    let version = baseline.version();
    let tables = table_names(conn)?;
    let has = |t: &str| tables.iter().any(|n| n == t);
    let present: Vec<&str> = MAPPING_TABLES.iter().copied().filter(|t| has(t)).collect();
    let nova = has(ALEMBIC_VERSION_TABLE);

    let recorded = has(DIESEL_MIGRATIONS_TABLE)
        && load::<VersionRow>(
            conn,
            "reading applied migrations",
            &format!("SELECT version AS version FROM {DIESEL_MIGRATIONS_TABLE}"),
        )?
        .iter()
        .any(|r| r.version == version);
    if recorded {
        return Ok(());
    }

    if present.is_empty() {
        if nova {
            return Err(Error::migration_refused(format!(
                "the database has Nova's {ALEMBIC_VERSION_TABLE} table but none of the mapping \
                 tables: it looks like a Nova cell database, not nova_api; refusing to create \
                 the mapping tables in it"
            )));
        }
        return Ok(());
    }

    if !nova {
        return Err(Error::migration_refused(format!(
            "table(s) {} exist but were not made by Nova (no {ALEMBIC_VERSION_TABLE} table) nor \
             by this library (migration {version} not recorded in {DIESEL_MIGRATIONS_TABLE}); \
             refusing to touch tables of unknown origin",
            present.join(", ")
        )));
    }

    check(conn)?;

    let alembic = load::<VersionRow>(
        conn,
        "reading Nova's schema version",
        &format!("SELECT version_num AS version FROM {ALEMBIC_VERSION_TABLE}"),
    )
    .map(|rows| {
        rows.into_iter()
            .map(|r| r.version)
            .collect::<Vec<_>>()
            .join(",")
    })
    .unwrap_or_default();

    diesel::migration::MigrationConnection::setup(conn).map_err(|source| Error::Database {
        operation: "creating the migrations table",
        source,
    })?;
    conn.run_migration(&crate::migrations::record_only(baseline))
        .map_err(|e| Error::migration("recording the adopted baseline", e))?;
    tracing::info!(
        baseline = %version,
        alembic_version = %alembic,
        "adopted the mapping tables made by Nova's migrations"
    );
    Ok(())
}
