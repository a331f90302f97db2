//! The shape of the mapping tables as a plain value: tables, columns,
//! indexes, constraints and foreign keys.

use std::collections::BTreeMap;
use std::fmt;

/// The shape of the mapping tables of one database.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SchemaDescription {
    /// The tables present, by name.
    pub tables: BTreeMap<String, TableDescription>,
}

/// The shape of one table.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TableDescription {
    /// The columns, in physical order.
    pub columns: Vec<ColumnDescription>,
    /// The primary-key columns, in key order.
    pub primary_key: Vec<String>,
    /// Indexes that do not back the primary key or a unique constraint, by name.
    pub indexes: BTreeMap<String, IndexDescription>,
    /// Unique constraints, by name, with their columns in order. (On MySQL
    /// every unique index is a unique constraint.)
    pub unique_constraints: BTreeMap<String, Vec<String>>,
    /// Foreign keys, sorted by columns.
    pub foreign_keys: Vec<ForeignKeyDescription>,
    /// Table options: `engine` and `charset` on MySQL, nothing elsewhere.
    pub options: BTreeMap<String, String>,
}

/// One column.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ColumnDescription {
    /// Column name.
    pub name: String,
    /// The type as the engine reports it, lower-cased (`varchar(36)`,
    /// `character varying(36)`, `tinyint(1)`, …; MySQL integer display widths
    /// are dropped, so `int(11)` is `int`).
    pub data_type: String,
    /// Whether NULL is allowed.
    pub nullable: bool,
    /// The server default, if any (auto-increment is not a default).
    pub default: Option<String>,
    /// Whether the database numbers new rows itself (MySQL `AUTO_INCREMENT`,
    /// PostgreSQL `serial`/identity, SQLite rowid alias).
    pub auto_increment: bool,
}

/// One index.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IndexDescription {
    /// The indexed columns, in order.
    pub columns: Vec<String>,
    /// Whether the index is unique (an index made by `CREATE UNIQUE INDEX`).
    pub unique: bool,
}

/// One foreign key.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct ForeignKeyDescription {
    /// The referencing columns, in order.
    pub columns: Vec<String>,
    /// The constraint name as stored (SQLite keeps none).
    pub name: Option<String>,
    /// The referenced table.
    pub referenced_table: String,
    /// The referenced columns, in order.
    pub referenced_columns: Vec<String>,
    /// `ON UPDATE` action (`NO ACTION` when none was given).
    pub on_update: String,
    /// `ON DELETE` action (`NO ACTION` when none was given).
    pub on_delete: String,
}

impl fmt::Display for ColumnDescription {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.data_type)?;
        f.write_str(if self.nullable { " NULL" } else { " NOT NULL" })?;
        if self.auto_increment {
            f.write_str(" AUTO_INCREMENT")?;
        }
        if let Some(d) = &self.default {
            write!(f, " DEFAULT {d}")?;
        }
        Ok(())
    }
}

impl fmt::Display for IndexDescription {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.unique {
            f.write_str("UNIQUE ")?;
        }
        write!(f, "({})", self.columns.join(", "))
    }
}

impl fmt::Display for ForeignKeyDescription {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(name) = &self.name {
            write!(f, "{name} ")?;
        }
        write!(
            f,
            "({}) REFERENCES {} ({}) ON UPDATE {} ON DELETE {}",
            self.columns.join(", "),
            self.referenced_table,
            self.referenced_columns.join(", "),
            self.on_update,
            self.on_delete
        )
    }
}
