//! SQLite through rusqlite (same bundled libsqlite3 as diesel), with the same
//! pragmas the library sets on a file database.

use rusqlite::{params, Connection, Statement};

use super::{bulk_sql, marks, Param, RawRow, COLUMNS, FROM};

/// A rusqlite connection and its prepared statements.
pub struct SqliteRaw {
    conn: &'static Connection,
    one: Statement<'static>,
    many: Statement<'static>,
    insert: Statement<'static>,
    schedule: Statement<'static>,
    /// The object API's own save statement (`prepare_save`).
    save: Option<Statement<'static>>,
    count_project: Statement<'static>,
    count_user: Statement<'static>,
    list: Statement<'static>,
    bulk: Option<(usize, Statement<'static>)>,
    /// Keep the rows of multi-row reads (`MAPPING_BENCH_RAW_KEEP`).
    keep: bool,
}

fn read_row(row: &rusqlite::Row<'_>) -> rusqlite::Result<usize> {
    let mut n = 0;
    for i in 0..16 {
        let v: Option<String> = match row.get_ref(i)? {
            rusqlite::types::ValueRef::Null => None,
            rusqlite::types::ValueRef::Integer(x) => Some(x.to_string()),
            rusqlite::types::ValueRef::Text(t) => Some(String::from_utf8_lossy(t).into_owned()),
            other => Some(format!("{other:?}")),
        };
        n += usize::from(v.is_some());
    }
    Ok(n)
}

/// Every column of a row as an owned value.
fn read_values(row: &rusqlite::Row<'_>) -> rusqlite::Result<Vec<Option<String>>> {
    (0..16)
        .map(|i| {
            Ok(match row.get_ref(i)? {
                rusqlite::types::ValueRef::Null => None,
                rusqlite::types::ValueRef::Integer(x) => Some(x.to_string()),
                rusqlite::types::ValueRef::Text(t) => Some(String::from_utf8_lossy(t).into_owned()),
                other => Some(format!("{other:?}")),
            })
        })
        .collect()
}

/// Reads every row of `rows`; returns how many.
fn read_all(mut rows: rusqlite::Rows<'_>, keep: bool) -> usize {
    let mut kept = Vec::new();
    let mut n = 0;
    while let Some(r) = rows.next().expect("row") {
        if keep {
            kept.push(read_values(r).expect("read"));
        } else {
            read_row(r).expect("read");
        }
        n += 1;
    }
    std::hint::black_box(kept);
    n
}

impl SqliteRaw {
    /// Opens the database file at `path`.
    pub fn open(path: &str) -> Self {
        // rusqlite's default is SQLITE_OPEN_NO_MUTEX; diesel's connections
        // run in SQLite's serialized mode (fixed open flags).
        // MAPPING_BENCH_SQLITE_FULLMUTEX=1 gives the baseline diesel's mode,
        // to see how much of the gap that is (docs/benchmarks.md, history in docs/notes/benchmarks-history.md).
        let flags = if std::env::var("MAPPING_BENCH_SQLITE_FULLMUTEX").is_ok() {
            (rusqlite::OpenFlags::default() - rusqlite::OpenFlags::SQLITE_OPEN_NO_MUTEX)
                | rusqlite::OpenFlags::SQLITE_OPEN_FULL_MUTEX
        } else {
            rusqlite::OpenFlags::default()
        };
        let conn = Connection::open_with_flags(path, flags).expect("open sqlite");
        conn.execute_batch(
            "PRAGMA foreign_keys = ON; PRAGMA busy_timeout = 5000; \
             PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL; PRAGMA mmap_size = 268435456;",
        )
        .expect("pragmas");
        // The statements borrow the connection for the life of the process.
        let conn: &'static Connection = Box::leak(Box::new(conn));
        let p = |sql: &str| conn.prepare(sql).expect(sql);
        Self {
            one: p(&format!(
                "SELECT {COLUMNS} FROM {FROM} WHERE instance_mappings.instance_uuid = ? LIMIT 1"
            )),
            many: p(&format!(
                "SELECT {COLUMNS} FROM {FROM} WHERE instance_mappings.instance_uuid IN ({})",
                marks(1000)
            )),
            insert: p(
                "INSERT INTO instance_mappings (created_at, instance_uuid, project_id, user_id, \
                 queued_for_delete) VALUES (?, ?, ?, ?, 0) RETURNING id",
            ),
            schedule: p(
                "UPDATE instance_mappings SET updated_at = ?, cell_id = ? WHERE instance_uuid = ?",
            ),
            count_project: p(
                "SELECT COUNT(*) FROM instance_mappings WHERE project_id = ? AND queued_for_delete = 0",
            ),
            count_user: p(
                "SELECT COUNT(*) FROM instance_mappings WHERE project_id = ? AND \
                 queued_for_delete = 0 AND user_id = ?",
            ),
            list: p(&format!(
                "SELECT {COLUMNS} FROM {FROM} WHERE instance_mappings.project_id = ?"
            )),
            save: None,
            bulk: None,
            keep: super::keep_rows(),
            conn,
        }
    }
}

impl super::Raw for SqliteRaw {
    fn lookup_one(&mut self, uuid: &str) -> usize {
        let mut rows = self.one.query(params![uuid]).expect("lookup");
        match rows.next().expect("row") {
            Some(r) => read_row(r).expect("read"),
            None => 0,
        }
    }

    fn lookup_many(&mut self, uuids: &[String]) -> usize {
        let rows = self
            .many
            .query(rusqlite::params_from_iter(uuids.iter()))
            .expect("lookup many");
        read_all(rows, self.keep)
    }

    fn insert_one(&mut self, uuid: &str, project: &str, user: &str, now: &str) -> i64 {
        let mut rows = self
            .insert
            .query(params![now, uuid, project, user])
            .expect("insert");
        let id = rows
            .next()
            .expect("insert")
            .expect("an id")
            .get(0)
            .expect("id");
        // Stepped to its end, as the library does: SQLite runs its WAL
        // auto-checkpoint only then (see `sqlite_insert_returning_id`).
        while rows.next().expect("insert").is_some() {}
        id
    }

    fn schedule(&mut self, uuid: &str, cell_id: i32, now: &str) -> usize {
        self.schedule
            .execute(params![now, cell_id, uuid])
            .expect("schedule")
    }

    fn prepare_save(&mut self, sql: &str) {
        self.save = Some(self.conn.prepare(sql).expect("save statement"));
    }

    fn save_same(&mut self, params: &[Param<'_>]) -> usize {
        let values: Vec<&dyn rusqlite::ToSql> = params
            .iter()
            .map(|p| match p {
                Param::Int(i) => i as &dyn rusqlite::ToSql,
                Param::Text(t) => t as &dyn rusqlite::ToSql,
            })
            .collect();
        self.save
            .as_mut()
            .expect("prepare_save first")
            .execute(values.as_slice())
            .expect("save")
    }

    fn bulk_insert(&mut self, rows: &[RawRow], per_statement: usize, now: &str) -> usize {
        self.conn.execute_batch("BEGIN").expect("begin");
        let mut n = 0;
        for chunk in rows.chunks(per_statement) {
            if self.bulk.as_ref().map(|(size, _)| *size) != Some(chunk.len()) {
                let stmt = self.conn.prepare(&bulk_sql(chunk.len())).expect("bulk");
                self.bulk = Some((chunk.len(), stmt));
            }
            let (_, stmt) = self.bulk.as_mut().expect("prepared above");
            let mut values: Vec<&dyn rusqlite::ToSql> = Vec::with_capacity(chunk.len() * 6);
            for r in chunk {
                values.push(&now);
                values.push(&r.uuid);
                values.push(&r.cell_id);
                values.push(&r.project);
                values.push(&r.user);
                values.push(&false);
            }
            n += stmt.execute(values.as_slice()).expect("bulk insert");
        }
        self.conn.execute_batch("COMMIT").expect("commit");
        n
    }

    fn counts(&mut self, project: &str, user: &str) -> (i64, i64) {
        let p = self
            .count_project
            .query_row(params![project], |r| r.get(0))
            .expect("count");
        let u = self
            .count_user
            .query_row(params![project, user], |r| r.get(0))
            .expect("count");
        (p, u)
    }

    fn list_project(&mut self, project: &str) -> usize {
        let rows = self.list.query(params![project]).expect("list");
        read_all(rows, self.keep)
    }

    fn text_query(&mut self, sql: &str) -> Vec<Vec<String>> {
        let mut stmt = self.conn.prepare(sql).expect(sql);
        let cols = stmt.column_count();
        let mut rows = stmt.query([]).expect(sql);
        let mut out = Vec::new();
        while let Some(r) = rows.next().expect("row") {
            let mut line = Vec::with_capacity(cols);
            for i in 0..cols {
                line.push(match r.get_ref(i).expect("col") {
                    rusqlite::types::ValueRef::Null => "NULL".to_owned(),
                    rusqlite::types::ValueRef::Integer(x) => x.to_string(),
                    rusqlite::types::ValueRef::Text(t) => String::from_utf8_lossy(t).into_owned(),
                    other => format!("{other:?}"),
                });
            }
            out.push(line);
        }
        out
    }
}
