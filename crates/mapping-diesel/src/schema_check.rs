//! Checking an existing database's tables against SPEC §2, and adopting a
//! database that Nova's own migrations created.

use mapping_model::Result;

use crate::connection::DbConnection;

/// Checks the shape of the three tables without changing anything.
pub fn check(_conn: &mut DbConnection) -> Result<()> {
    Ok(())
}

/// When Nova's migrations made the tables, records our baseline as applied.
pub fn adopt_nova_schema(_conn: &mut DbConnection) -> Result<()> {
    Ok(())
}
