//! MySQL/MariaDB through the C API (mysqlclient-sys, the library diesel
//! links): server-side prepared statements (binary protocol, as diesel uses),
//! parameters and results bound as strings.

use std::ffi::{c_void, CStr, CString};
use std::os::raw::{c_char, c_ulong};
use std::ptr;

use mysqlclient_sys as ffi;

use super::{bulk_sql, marks, Param, RawRow, COLUMNS, FROM};

const MYSQL_NO_DATA: i32 = 100;
const MYSQL_DATA_TRUNCATED: i32 = 101;
/// Result buffer per column; the bench's values are far shorter.
const COLUMN_BUFFER: usize = 512;

/// A parameter value.
enum P<'a> {
    S(&'a str),
    I(i32),
}

/// A prepared statement with its result buffers.
struct Stmt {
    stmt: *mut ffi::MYSQL_STMT,
    cols: usize,
    bufs: Vec<Vec<u8>>,
    lens: Vec<c_ulong>,
    nulls: Vec<ffi::my_bool>,
    binds: Vec<ffi::MYSQL_BIND>,
}

impl Stmt {
    fn error(&self) -> String {
        // SAFETY: a valid statement handle.
        unsafe { CStr::from_ptr(ffi::mysql_stmt_error(self.stmt)) }
            .to_string_lossy()
            .into_owned()
    }

    /// Binds `params`, executes, and reads every row as strings; returns the
    /// rows read (or the affected rows for a statement without results).
    fn run(&mut self, params: &[P<'_>]) -> usize {
        let mut ints: Vec<i32> = params
            .iter()
            .map(|p| if let P::I(i) = p { *i } else { 0 })
            .collect();
        let mut lens: Vec<c_ulong> = params
            .iter()
            .map(|p| {
                if let P::S(s) = p {
                    s.len() as c_ulong
                } else {
                    0
                }
            })
            .collect();
        let mut binds: Vec<ffi::MYSQL_BIND> = params
            .iter()
            .enumerate()
            .map(|(i, p)| {
                // SAFETY: MYSQL_BIND is a plain C struct; all-zero is its initial state.
                let mut b: ffi::MYSQL_BIND = unsafe { std::mem::zeroed() };
                match p {
                    P::S(s) => {
                        b.buffer_type = ffi::enum_field_types::MYSQL_TYPE_STRING;
                        b.buffer = s.as_ptr() as *mut c_void;
                        b.buffer_length = s.len() as c_ulong;
                        b.length = &mut lens[i];
                    }
                    P::I(_) => {
                        b.buffer_type = ffi::enum_field_types::MYSQL_TYPE_LONG;
                        b.buffer = (&mut ints[i]) as *mut i32 as *mut c_void;
                    }
                }
                b
            })
            .collect();
        // SAFETY: the bind array and the buffers it points to outlive execute.
        unsafe {
            if !binds.is_empty() && ffi::mysql_stmt_bind_param(self.stmt, binds.as_mut_ptr()) != 0 {
                panic!("bind: {}", self.error());
            }
            if ffi::mysql_stmt_execute(self.stmt) != 0 {
                panic!("execute: {}", self.error());
            }
        }
        if self.cols == 0 {
            // SAFETY: a statement just executed.
            return unsafe { ffi::mysql_stmt_affected_rows(self.stmt) } as usize;
        }
        let mut rows = 0;
        // SAFETY: result buffers are bound once (in `prepare`) and live as
        // long as the statement.
        unsafe {
            if ffi::mysql_stmt_bind_result(self.stmt, self.binds.as_mut_ptr()) != 0 {
                panic!("bind result: {}", self.error());
            }
            let keep = super::keep_rows();
            let mut kept = Vec::new();
            loop {
                let rc = ffi::mysql_stmt_fetch(self.stmt);
                if rc == MYSQL_NO_DATA {
                    break;
                }
                if rc != 0 && rc != MYSQL_DATA_TRUNCATED {
                    panic!("fetch: {}", self.error());
                }
                let value = |c: usize| {
                    (self.nulls[c] == 0).then(|| {
                        let n = (self.lens[c] as usize).min(COLUMN_BUFFER);
                        String::from_utf8_lossy(&self.bufs[c][..n]).into_owned()
                    })
                };
                if keep {
                    kept.push((0..self.cols).map(value).collect::<Vec<_>>());
                } else {
                    for c in 0..self.cols {
                        std::hint::black_box(value(c));
                    }
                }
                rows += 1;
            }
            std::hint::black_box(kept);
            ffi::mysql_stmt_free_result(self.stmt);
        }
        rows
    }

    fn insert_id(&self) -> i64 {
        // SAFETY: a valid statement handle.
        unsafe { ffi::mysql_stmt_insert_id(self.stmt) as i64 }
    }
}

impl Drop for Stmt {
    fn drop(&mut self) {
        // SAFETY: closed once.
        unsafe {
            ffi::mysql_stmt_close(self.stmt);
        }
    }
}

/// A C-API connection with its statements prepared.
pub struct MysqlRaw {
    conn: *mut ffi::MYSQL,
    one: Stmt,
    many: Stmt,
    insert: Stmt,
    schedule: Stmt,
    /// The object API's own save statement (`prepare_save`).
    save: Option<Stmt>,
    count_project: Stmt,
    count_user: Stmt,
    list: Stmt,
    bulk: Option<(usize, Stmt)>,
    /// Last, so that it is dropped after the statements.
    _handle: Conn,
}

fn prepare(conn: *mut ffi::MYSQL, sql: &str) -> Stmt {
    // SAFETY: a live connection; the statement is checked.
    let stmt = unsafe { ffi::mysql_stmt_init(conn) };
    assert!(!stmt.is_null(), "mysql_stmt_init");
    let mut s = Stmt {
        stmt,
        cols: 0,
        bufs: Vec::new(),
        lens: Vec::new(),
        nulls: Vec::new(),
        binds: Vec::new(),
    };
    // SAFETY: the SQL buffer lives for the call.
    unsafe {
        if ffi::mysql_stmt_prepare(stmt, sql.as_ptr() as *const c_char, sql.len() as c_ulong) != 0 {
            panic!("prepare {sql}: {}", s.error());
        }
        s.cols = ffi::mysql_stmt_field_count(stmt) as usize;
    }
    s.bufs = vec![vec![0u8; COLUMN_BUFFER]; s.cols];
    s.lens = vec![0; s.cols];
    s.nulls = vec![0 as ffi::my_bool; s.cols];
    let mut binds = Vec::with_capacity(s.cols);
    for c in 0..s.cols {
        // SAFETY: all-zero is the initial state of MYSQL_BIND.
        let mut b: ffi::MYSQL_BIND = unsafe { std::mem::zeroed() };
        b.buffer_type = ffi::enum_field_types::MYSQL_TYPE_STRING;
        b.buffer = s.bufs[c].as_mut_ptr() as *mut c_void;
        b.buffer_length = COLUMN_BUFFER as c_ulong;
        b.length = &mut s.lens[c];
        b.is_null = &mut s.nulls[c];
        binds.push(b);
    }
    s.binds = binds;
    s
}

impl MysqlRaw {
    /// Connects to a `mysql://user[:password]@host[:port]/database` URL.
    pub fn open(url: &str) -> Self {
        let rest = url.split_once("://").map_or(url, |(_, r)| r);
        let (auth, rest) = rest.rsplit_once('@').unwrap_or(("root", rest));
        let (user, password) = auth.split_once(':').unwrap_or((auth, ""));
        let (hostport, db) = rest.split_once('/').unwrap_or((rest, ""));
        let db = db.split('?').next().unwrap_or(db);
        let (host, port) = hostport.split_once(':').unwrap_or((hostport, "3306"));
        let c = |s: &str| CString::new(s).expect("url part");
        let (host, user, password, db) = (c(host), c(user), c(password), c(db));
        // SAFETY: mysql_init with NULL allocates a handle; strings live for the call.
        let conn = unsafe {
            let conn = ffi::mysql_init(ptr::null_mut());
            let ok = ffi::mysql_real_connect(
                conn,
                host.as_ptr(),
                user.as_ptr(),
                password.as_ptr(),
                db.as_ptr(),
                port.parse().unwrap_or(3306),
                ptr::null(),
                0,
            );
            if ok.is_null() {
                panic!(
                    "mysql connect: {}",
                    CStr::from_ptr(ffi::mysql_error(conn)).to_string_lossy()
                );
            }
            conn
        };
        let mut raw = Self {
            one: prepare(
                conn,
                &format!(
                    "SELECT {COLUMNS} FROM {FROM} WHERE instance_mappings.instance_uuid = ? LIMIT 1"
                ),
            ),
            many: prepare(
                conn,
                &format!(
                    "SELECT {COLUMNS} FROM {FROM} WHERE instance_mappings.instance_uuid IN ({})",
                    marks(1000)
                ),
            ),
            insert: prepare(
                conn,
                "INSERT INTO instance_mappings (created_at, instance_uuid, project_id, user_id, \
                 queued_for_delete) VALUES (?, ?, ?, ?, 0)",
            ),
            schedule: prepare(
                conn,
                "UPDATE instance_mappings SET updated_at = ?, cell_id = ? WHERE instance_uuid = ?",
            ),
            count_project: prepare(
                conn,
                "SELECT COUNT(*) FROM instance_mappings WHERE project_id = ? AND queued_for_delete = 0",
            ),
            count_user: prepare(
                conn,
                "SELECT COUNT(*) FROM instance_mappings WHERE project_id = ? AND \
                 queued_for_delete = 0 AND user_id = ?",
            ),
            list: prepare(
                conn,
                &format!("SELECT {COLUMNS} FROM {FROM} WHERE instance_mappings.project_id = ?"),
            ),
            save: None,
            bulk: None,
            conn,
            _handle: Conn(conn),
        };
        raw.simple("SET autocommit = 1");
        raw
    }

    fn error(&self) -> String {
        // SAFETY: a live connection.
        unsafe { CStr::from_ptr(ffi::mysql_error(self.conn)) }
            .to_string_lossy()
            .into_owned()
    }

    /// Runs a statement through the text protocol; returns its rows.
    fn simple(&mut self, sql: &str) -> Vec<Vec<String>> {
        let s = CString::new(sql).expect("sql");
        let mut out = Vec::new();
        // SAFETY: a live connection; the result is freed once.
        unsafe {
            if ffi::mysql_query(self.conn, s.as_ptr()) != 0 {
                panic!("{sql}: {}", self.error());
            }
            let res = ffi::mysql_store_result(self.conn);
            if res.is_null() {
                return out;
            }
            let cols = ffi::mysql_num_fields(res) as usize;
            loop {
                let row = ffi::mysql_fetch_row(res);
                if row.is_null() {
                    break;
                }
                let mut line = Vec::with_capacity(cols);
                for c in 0..cols {
                    let v = *row.add(c);
                    line.push(if v.is_null() {
                        "NULL".to_owned()
                    } else {
                        CStr::from_ptr(v).to_string_lossy().into_owned()
                    });
                }
                out.push(line);
            }
            ffi::mysql_free_result(res);
        }
        out
    }
}

/// The connection handle, closed after the statements (fields drop in order).
struct Conn(*mut ffi::MYSQL);

impl Drop for Conn {
    fn drop(&mut self) {
        // SAFETY: closed once, after every statement of the connection.
        unsafe { ffi::mysql_close(self.0) }
    }
}

impl super::Raw for MysqlRaw {
    fn lookup_one(&mut self, uuid: &str) -> usize {
        self.one.run(&[P::S(uuid)])
    }

    fn lookup_many(&mut self, uuids: &[String]) -> usize {
        let params: Vec<P<'_>> = uuids.iter().map(|u| P::S(u)).collect();
        self.many.run(&params)
    }

    fn insert_one(&mut self, uuid: &str, project: &str, user: &str, now: &str) -> i64 {
        self.insert
            .run(&[P::S(now), P::S(uuid), P::S(project), P::S(user)]);
        self.insert.insert_id()
    }

    fn schedule(&mut self, uuid: &str, cell_id: i32, now: &str) -> usize {
        self.schedule.run(&[P::S(now), P::I(cell_id), P::S(uuid)])
    }

    fn prepare_save(&mut self, sql: &str) {
        self.save = Some(prepare(self.conn, sql));
    }

    fn save_same(&mut self, params: &[Param<'_>]) -> usize {
        let params: Vec<P<'_>> = params
            .iter()
            .map(|p| match *p {
                Param::Int(i) => P::I(i),
                Param::Text(t) => P::S(t),
            })
            .collect();
        self.save.as_mut().expect("prepare_save first").run(&params)
    }

    fn bulk_insert(&mut self, rows: &[RawRow], per_statement: usize, now: &str) -> usize {
        self.simple("START TRANSACTION");
        let mut n = 0;
        for chunk in rows.chunks(per_statement) {
            if self.bulk.as_ref().map(|(size, _)| *size) != Some(chunk.len()) {
                self.bulk = Some((chunk.len(), prepare(self.conn, &bulk_sql(chunk.len()))));
            }
            let (_, stmt) = self.bulk.as_mut().expect("prepared above");
            let mut params = Vec::with_capacity(chunk.len() * 6);
            for r in chunk {
                params.extend([
                    P::S(now),
                    P::S(&r.uuid),
                    P::I(r.cell_id),
                    P::S(&r.project),
                    P::S(&r.user),
                    P::I(0),
                ]);
            }
            n += stmt.run(&params);
        }
        self.simple("COMMIT");
        n
    }

    fn counts(&mut self, project: &str, user: &str) -> (i64, i64) {
        // The C API hands the counts back as text here; the work is the same.
        let p = self.count_project.run(&[P::S(project)]) as i64;
        let u = self.count_user.run(&[P::S(project), P::S(user)]) as i64;
        (p, u)
    }

    fn list_project(&mut self, project: &str) -> usize {
        self.list.run(&[P::S(project)])
    }

    fn text_query(&mut self, sql: &str) -> Vec<Vec<String>> {
        self.simple(sql)
    }
}
