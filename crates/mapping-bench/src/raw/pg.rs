//! PostgreSQL through the libpq C API (pq-sys, the library diesel links):
//! named prepared statements, text parameters, text results.

use std::ffi::{CStr, CString};
use std::os::raw::{c_char, c_int};
use std::ptr;

use pq_sys::*;

use super::{bulk_sql, dollar, Param, RawRow, COLUMNS, FROM};

/// A libpq connection with its statements prepared.
pub struct PgRaw {
    conn: *mut PGconn,
    bulk_prepared: Vec<usize>,
}

/// A result that is cleared when dropped.
struct PgResult(*mut PGresult);

impl Drop for PgResult {
    fn drop(&mut self) {
        // SAFETY: the pointer came from libpq and is cleared once.
        unsafe { PQclear(self.0) }
    }
}

impl PgResult {
    fn rows(&self) -> usize {
        // SAFETY: a valid result.
        unsafe { PQntuples(self.0) as usize }
    }

    fn cols(&self) -> usize {
        // SAFETY: a valid result.
        unsafe { PQnfields(self.0) as usize }
    }

    /// The value at (row, col) as an owned string, `None` for NULL.
    fn get(&self, row: usize, col: usize) -> Option<String> {
        // SAFETY: row and col are within the bounds libpq reported.
        unsafe {
            if PQgetisnull(self.0, row as c_int, col as c_int) == 1 {
                None
            } else {
                let v = PQgetvalue(self.0, row as c_int, col as c_int);
                Some(CStr::from_ptr(v).to_string_lossy().into_owned())
            }
        }
    }

    /// The rows a write changed.
    fn changed(&self) -> usize {
        // SAFETY: a valid result; libpq returns "" for a statement without a count.
        let tuples = unsafe { CStr::from_ptr(PQcmdTuples(self.0)) };
        tuples.to_string_lossy().parse().unwrap_or(0)
    }

    /// Reads every value of every row; returns the rows.
    /// With `MAPPING_BENCH_RAW_KEEP`, every row is kept until the call
    /// returns (see `raw::keep_rows`).
    fn materialise(&self) -> usize {
        let (rows, cols) = (self.rows(), self.cols());
        let keep = super::keep_rows();
        let mut kept = Vec::new();
        for r in 0..rows {
            if keep {
                kept.push((0..cols).map(|c| self.get(r, c)).collect::<Vec<_>>());
            } else {
                for c in 0..cols {
                    std::hint::black_box(self.get(r, c));
                }
            }
        }
        std::hint::black_box(kept);
        rows
    }
}

impl PgRaw {
    /// Connects to `url` (a `postgres://` URI, which libpq accepts as is).
    pub fn open(url: &str) -> Self {
        let url = CString::new(url).expect("url");
        // SAFETY: a NUL-terminated string; the connection is checked.
        let conn = unsafe { PQconnectdb(url.as_ptr()) };
        // SAFETY: a connection object from libpq.
        if unsafe { PQstatus(conn) } != ConnStatusType::CONNECTION_OK {
            panic!("libpq connect failed: {}", unsafe {
                CStr::from_ptr(PQerrorMessage(conn)).to_string_lossy()
            });
        }
        let mut raw = Self {
            conn,
            bulk_prepared: Vec::new(),
        };
        raw.prepare(
            "one",
            &format!(
                "SELECT {COLUMNS} FROM {FROM} WHERE instance_mappings.instance_uuid = $1 LIMIT 1"
            ),
        );
        raw.prepare(
            "many",
            &format!(
                "SELECT {COLUMNS} FROM {FROM} WHERE instance_mappings.instance_uuid IN (SELECT unnest($1::text[]))"
            ),
        );
        raw.prepare(
            "insert",
            "INSERT INTO instance_mappings (created_at, instance_uuid, project_id, user_id, \
             queued_for_delete) VALUES ($1, $2, $3, $4, false) RETURNING id",
        );
        raw.prepare(
            "schedule",
            "UPDATE instance_mappings SET updated_at = $1, cell_id = $2 WHERE instance_uuid = $3",
        );
        raw.prepare(
            "count_project",
            "SELECT COUNT(*) FROM instance_mappings WHERE project_id = $1 AND queued_for_delete = false",
        );
        raw.prepare(
            "count_user",
            "SELECT COUNT(*) FROM instance_mappings WHERE project_id = $1 AND \
             queued_for_delete = false AND user_id = $2",
        );
        raw.prepare(
            "list",
            &format!("SELECT {COLUMNS} FROM {FROM} WHERE instance_mappings.project_id = $1"),
        );
        raw
    }

    fn check(&self, res: *mut PGresult, what: &str) -> PgResult {
        let res = PgResult(res);
        // SAFETY: libpq accepts a NULL result here and reports a fatal error.
        let status = unsafe { PQresultStatus(res.0) };
        if status != ExecStatusType::PGRES_COMMAND_OK && status != ExecStatusType::PGRES_TUPLES_OK {
            panic!("{what} failed: {}", unsafe {
                CStr::from_ptr(PQerrorMessage(self.conn)).to_string_lossy()
            });
        }
        res
    }

    fn prepare(&mut self, name: &str, sql: &str) {
        let (n, s) = (
            CString::new(name).expect("name"),
            CString::new(sql).expect("sql"),
        );
        // SAFETY: NUL-terminated strings; types inferred by the server.
        let res = unsafe { PQprepare(self.conn, n.as_ptr(), s.as_ptr(), 0, ptr::null()) };
        self.check(res, name);
    }

    fn exec(&mut self, name: &str, params: &[&str]) -> PgResult {
        let n = CString::new(name).expect("name");
        let owned: Vec<CString> = params
            .iter()
            .map(|p| CString::new(*p).expect("param"))
            .collect();
        let ptrs: Vec<*const c_char> = owned.iter().map(|c| c.as_ptr()).collect();
        // SAFETY: every pointer lives until the call returns; text formats.
        let res = unsafe {
            PQexecPrepared(
                self.conn,
                n.as_ptr(),
                ptrs.len() as c_int,
                ptrs.as_ptr(),
                ptr::null(),
                ptr::null(),
                0,
            )
        };
        self.check(res, name)
    }

    fn simple(&mut self, sql: &str) -> PgResult {
        let s = CString::new(sql).expect("sql");
        // SAFETY: a NUL-terminated string.
        let res = unsafe { PQexec(self.conn, s.as_ptr()) };
        self.check(res, sql)
    }
}

impl Drop for PgRaw {
    fn drop(&mut self) {
        // SAFETY: the connection is finished once.
        unsafe { PQfinish(self.conn) }
    }
}

impl super::Raw for PgRaw {
    fn lookup_one(&mut self, uuid: &str) -> usize {
        let r = self.exec("one", &[uuid]);
        let mut n = 0;
        for c in 0..r.cols() {
            n += usize::from(r.get(0, c).is_some());
        }
        n
    }

    fn lookup_many(&mut self, uuids: &[String]) -> usize {
        let array = format!("{{{}}}", uuids.join(","));
        self.exec("many", &[&array]).materialise()
    }

    fn insert_one(&mut self, uuid: &str, project: &str, user: &str, now: &str) -> i64 {
        let r = self.exec("insert", &[now, uuid, project, user]);
        r.get(0, 0).and_then(|v| v.parse().ok()).expect("id")
    }

    fn schedule(&mut self, uuid: &str, cell_id: i32, now: &str) -> usize {
        let cell = cell_id.to_string();
        self.exec("schedule", &[now, &cell, uuid]).changed()
    }

    fn prepare_save(&mut self, sql: &str) {
        self.prepare("save", sql);
    }

    fn save_same(&mut self, params: &[Param<'_>]) -> usize {
        let ints: Vec<String> = params
            .iter()
            .map(|p| match p {
                Param::Int(i) => i.to_string(),
                Param::Text(_) => String::new(),
            })
            .collect();
        let text: Vec<&str> = params
            .iter()
            .zip(&ints)
            .map(|(p, i)| match p {
                Param::Int(_) => i.as_str(),
                Param::Text(t) => t,
            })
            .collect();
        self.exec("save", &text).changed()
    }

    fn bulk_insert(&mut self, rows: &[RawRow], per_statement: usize, now: &str) -> usize {
        self.simple("BEGIN");
        let mut n = 0;
        for chunk in rows.chunks(per_statement) {
            let name = format!("bulk{}", chunk.len());
            if !self.bulk_prepared.contains(&chunk.len()) {
                self.prepare(&name, &dollar(&bulk_sql(chunk.len())));
                self.bulk_prepared.push(chunk.len());
            }
            let cells: Vec<String> = chunk.iter().map(|r| r.cell_id.to_string()).collect();
            let mut params: Vec<&str> = Vec::with_capacity(chunk.len() * 6);
            for (r, cell) in chunk.iter().zip(&cells) {
                params.extend([now, &r.uuid, cell, &r.project, &r.user, "false"]);
            }
            self.exec(&name, &params);
            n += chunk.len();
        }
        self.simple("COMMIT");
        n
    }

    fn counts(&mut self, project: &str, user: &str) -> (i64, i64) {
        let p = self.exec("count_project", &[project]).get(0, 0);
        let u = self.exec("count_user", &[project, user]).get(0, 0);
        let num = |v: Option<String>| v.and_then(|v| v.parse().ok()).unwrap_or(-1);
        (num(p), num(u))
    }

    fn list_project(&mut self, project: &str) -> usize {
        self.exec("list", &[project]).materialise()
    }

    fn text_query(&mut self, sql: &str) -> Vec<Vec<String>> {
        let r = self.simple(sql);
        (0..r.rows())
            .map(|row| {
                (0..r.cols())
                    .map(|c| r.get(row, c).unwrap_or_else(|| "NULL".into()))
                    .collect()
            })
            .collect()
    }
}
