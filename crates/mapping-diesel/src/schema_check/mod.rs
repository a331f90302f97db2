//! Checking an existing database's tables against docs/schema.md, and adopting a
//! database that Nova's own migrations created.
//!
//! The shape of the three mapping tables is captured in a
//! [`SchemaDescription`]: per table, the columns in physical order (type as
//! the engine reports it, nullability, default, auto-increment), the primary
//! key, the indexes, the unique constraints, the foreign keys and, on MySQL,
//! the engine and character set. `expected` gives the description of the
//! schema Nova's migrations produce on a backend, `introspect` reads the
//! description of a live database from its catalog, and [`differences`]
//! compares the two line by line. [`check`] puts the three together.
//!
//! [`adopt_nova_schema`] runs before our migrations: a `nova_api` database
//! made by Nova (it has Nova's `alembic_version` table) is checked and, when
//! its tables have the expected shape, our baseline migration is recorded as
//! applied without touching the tables.
//!
//! The module is split by job: [`description`] holds the types,
//! [`expected`](mod@expected) the schema Nova makes, [`diff`] the comparison,
//! [`introspect`](mod@introspect) the catalog readers per backend, `ddl` the
//! SQLite DDL tokenizer, and [`adopt`] the check and the adoption.

pub mod adopt;
pub(crate) mod ddl;
pub mod description;
pub mod diff;
pub mod expected;
pub mod introspect;

/// The tables this library owns, in creation order.
pub const MAPPING_TABLES: [&str; 3] = ["cell_mappings", "host_mappings", "instance_mappings"];

/// The table in which Nova's migration tool (alembic) records its version.
pub const ALEMBIC_VERSION_TABLE: &str = "alembic_version";

/// The table in which diesel records applied migrations.
pub const DIESEL_MIGRATIONS_TABLE: &str = "__diesel_schema_migrations";

pub use adopt::{adopt_nova_schema, check};
pub use description::{
    ColumnDescription, ForeignKeyDescription, IndexDescription, SchemaDescription, TableDescription,
};
pub use diff::differences;
pub use expected::expected;
pub use introspect::{introspect, table_names};
