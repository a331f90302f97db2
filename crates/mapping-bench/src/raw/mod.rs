//! The raw baselines: the object API's SQL as prepared statements through the
//! thinnest client of each backend (rusqlite on the bundled libsqlite3, the
//! libpq C API through pq-sys, the MariaDB/MySQL C API through
//! mysqlclient-sys). Every call materialises each column as an owned value,
//! as the object API must.

pub mod sqlite;

#[cfg(feature = "postgres")]
pub mod pg;

#[cfg(feature = "mysql")]
pub mod mysql;

/// The columns the object API reads for a mapping with its cell.
pub const COLUMNS: &str = "instance_mappings.created_at, instance_mappings.updated_at, \
    instance_mappings.id, instance_mappings.instance_uuid, instance_mappings.cell_id, \
    instance_mappings.project_id, instance_mappings.user_id, instance_mappings.queued_for_delete, \
    cell_mappings.created_at, cell_mappings.updated_at, cell_mappings.id, cell_mappings.uuid, \
    cell_mappings.name, cell_mappings.transport_url, cell_mappings.database_connection, \
    cell_mappings.disabled";

/// The join the object API reads mappings through.
pub const FROM: &str =
    "instance_mappings LEFT OUTER JOIN cell_mappings ON cell_mappings.id = instance_mappings.cell_id";

/// One row to insert in bulk.
#[derive(Debug, Clone)]
pub struct RawRow {
    /// Instance uuid.
    pub uuid: String,
    /// Cell id.
    pub cell_id: i32,
    /// Project.
    pub project: String,
    /// User.
    pub user: String,
}

/// A value bound to the statement of [`Raw::save_same`].
#[derive(Debug, Clone, Copy)]
pub enum Param<'a> {
    /// An integer (an id).
    Int(i32),
    /// Text (uuids, names, digests, timestamps as the backend stores them).
    Text(&'a str),
}

/// One thin client; every method runs a statement prepared once.
pub trait Raw {
    /// One mapping with its cell; returns the number of non-NULL columns read.
    fn lookup_one(&mut self, uuid: &str) -> usize;
    /// The mappings of these 1,000 uuids; returns the rows read.
    fn lookup_many(&mut self, uuids: &[String]) -> usize;
    /// Inserts one unscheduled mapping and returns its id.
    fn insert_one(&mut self, uuid: &str, project: &str, user: &str, now: &str) -> i64;
    /// Assigns a cell to a mapping; returns the rows changed.
    fn schedule(&mut self, uuid: &str, cell_id: i32, now: &str) -> usize;
    /// Prepares `sql`, the object API's own one-statement save (its text
    /// from the library), for [`Raw::save_same`].
    fn prepare_save(&mut self, sql: &str);
    /// Runs the statement of [`Raw::prepare_save`] with `params` in order;
    /// returns the rows changed.
    fn save_same(&mut self, params: &[Param<'_>]) -> usize;
    /// Inserts rows in one transaction, `per_statement` rows per multi-row insert.
    fn bulk_insert(&mut self, rows: &[RawRow], per_statement: usize, now: &str) -> usize;
    /// Counts of the project's and the user's mappings not queued for delete.
    fn counts(&mut self, project: &str, user: &str) -> (i64, i64);
    /// Every mapping of a project with cells; returns the rows read.
    fn list_project(&mut self, project: &str) -> usize;
    /// Runs a statement without parameters and returns its rows as text
    /// (for EXPLAIN).
    fn text_query(&mut self, sql: &str) -> Vec<Vec<String>>;
}

/// `?, ?, ...` with `n` markers.
pub fn marks(n: usize) -> String {
    vec!["?"; n].join(", ")
}

/// The multi-row insert of `rows` rows, with `?` markers.
pub fn bulk_sql(rows: usize) -> String {
    let one = "(?, ?, ?, ?, ?, ?)";
    format!(
        "INSERT INTO instance_mappings (created_at, instance_uuid, cell_id, project_id, user_id, \
         queued_for_delete) VALUES {}",
        vec![one; rows].join(", ")
    )
}

/// Rewrites `?` markers as `$1, $2, ...` (PostgreSQL).
#[cfg(feature = "postgres")]
pub fn dollar(sql: &str) -> String {
    let mut out = String::with_capacity(sql.len() + 16);
    let mut n = 0;
    for c in sql.chars() {
        if c == '?' {
            n += 1;
            out.push('$');
            out.push_str(&n.to_string());
        } else {
            out.push(c);
        }
    }
    out
}

/// `MAPPING_BENCH_RAW_KEEP=1`: multi-row reads keep every row until the call
/// returns, as a caller of a listing must (the default drops each value as
/// soon as it is read). See docs/notes/benchmarks-history.md, "Instruction counts per call".
/// Read once: the raw side pays no environment lookup per call.
pub(crate) fn keep_rows() -> bool {
    static KEEP: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *KEEP.get_or_init(|| std::env::var_os("MAPPING_BENCH_RAW_KEEP").is_some())
}
