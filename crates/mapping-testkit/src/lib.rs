//! Test support: a fresh database per test on each backend, fixtures with
//! fresh uuids, and [`backend_tests!`] to write a test body once and run it on
//! every backend compiled in.
//!
//! PostgreSQL and MySQL/MariaDB are reached through `MAPPING_TEST_POSTGRES_URL`
//! and `MAPPING_TEST_MYSQL_URL` (defaults: this machine's services, databases
//! `test`); each test creates its own database there and drops it. A backend
//! that cannot be reached fails the test loudly: nothing is skipped.

pub mod cell_db;

pub use cell_db::{at, CellDb, NewCellInstance};

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};

use diesel::connection::SimpleConnection;
pub use mapping_diesel::BackendKind;
use mapping_diesel::{ConnectionUrl, Database, Options};
use mapping_model::{
    CellMapping, HostMapping, InstanceMapping, NewCellMapping, NewHostMapping, NewInstanceMapping,
};

pub use mapping_diesel::compiled_backends;

/// Default admin URL of the PostgreSQL service used by tests.
pub const DEFAULT_POSTGRES_URL: &str = "postgres://postgres@127.0.0.1:5432/test";
/// Default admin URL of the MySQL/MariaDB service used by tests.
pub const DEFAULT_MYSQL_URL: &str = "mysql://root@127.0.0.1:3306/test";

/// The admin URL for a server backend, from the environment or the default.
pub fn admin_url(backend: BackendKind) -> Option<String> {
    match backend {
        BackendKind::Sqlite => None,
        BackendKind::Postgres => Some(
            std::env::var("MAPPING_TEST_POSTGRES_URL")
                .unwrap_or_else(|_| DEFAULT_POSTGRES_URL.into()),
        ),
        BackendKind::Mysql => Some(
            std::env::var("MAPPING_TEST_MYSQL_URL").unwrap_or_else(|_| DEFAULT_MYSQL_URL.into()),
        ),
    }
}

static COUNTER: AtomicU64 = AtomicU64::new(0);

fn unique_suffix() -> String {
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let rnd = uuid::Uuid::new_v4().simple().to_string();
    format!(
        "{}_{}_{}",
        std::process::id(),
        n,
        rnd.get(..8).unwrap_or("0")
    )
}

/// A database that exists for one test: a temporary SQLite file, or a
/// uniquely named database on the PostgreSQL/MySQL server, dropped at the end.
pub struct TestDb {
    /// The handle tests use (derefs from `TestDb` too).
    pub db: Database,
    backend: BackendKind,
    url: String,
    cleanup: Cleanup,
}

enum Cleanup {
    File(PathBuf),
    Server { admin: String, name: String },
}

impl std::ops::Deref for TestDb {
    type Target = Database;
    fn deref(&self) -> &Database {
        &self.db
    }
}

impl TestDb {
    /// A fresh, migrated database on `backend`.
    pub fn new(backend: BackendKind) -> Self {
        Self::with_options(backend, Options::default())
    }

    /// A fresh, migrated database on `backend` opened with `options`.
    pub fn with_options(backend: BackendKind, options: Options) -> Self {
        let t = Self::empty_with_options(backend, options);
        if let Err(e) = t.db.migrate() {
            panic!("migrating the {backend:?} test database failed: {e}");
        }
        t
    }

    /// A fresh database on `backend` with no tables at all.
    pub fn empty(backend: BackendKind) -> Self {
        Self::empty_with_options(backend, Options::default())
    }

    /// A fresh database with no tables, opened with `options`.
    pub fn empty_with_options(backend: BackendKind, options: Options) -> Self {
        assert!(
            compiled_backends().contains(&backend),
            "{backend:?} support is not compiled in: build with --features {}",
            match backend {
                BackendKind::Postgres => "postgres",
                BackendKind::Mysql => "mysql",
                BackendKind::Sqlite => "(always on)",
            }
        );
        let (url, cleanup) = match admin_url(backend) {
            None => {
                let path =
                    std::env::temp_dir().join(format!("mapping_test_{}.sqlite", unique_suffix()));
                (format!("sqlite:///{}", path.display()), Cleanup::File(path))
            }
            Some(admin) => {
                let name = format!("mapping_test_{}", unique_suffix());
                let admin_db = open_or_fail(backend, &admin, Options::default());
                admin_db
                    .with_connection(|c| {
                        c.batch_execute(&format!("CREATE DATABASE {name}"))
                            .map_err(mapping_model::Error::from)
                    })
                    .unwrap_or_else(|e| {
                        panic!("creating test database {name} on {backend:?} failed: {e}")
                    });
                let url = ConnectionUrl::parse(&admin)
                    .and_then(|u| u.with_database(&name))
                    .unwrap_or_else(|e| panic!("bad {backend:?} test URL: {e}"));
                (url.diesel_url().to_owned(), Cleanup::Server { admin, name })
            }
        };
        let db = open_or_fail(backend, &url, options);
        Self {
            db,
            backend,
            url,
            cleanup,
        }
    }

    /// The backend of this database.
    pub fn backend(&self) -> BackendKind {
        self.backend
    }

    /// The URL of this database (with its password, for reopening it).
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The size of a file SQLite database's write-ahead log (0 while there
    /// is none). Panics on any other database.
    pub fn sqlite_wal_len(&self) -> u64 {
        let Cleanup::File(path) = &self.cleanup else {
            panic!("{:?} has no SQLite file", self.backend);
        };
        let mut wal = path.clone().into_os_string();
        wal.push("-wal");
        std::fs::metadata(wal).map_or(0, |m| m.len())
    }

    /// Opens a second, independent handle on the same database.
    pub fn reopen(&self, options: Options) -> Database {
        open_or_fail(self.backend, &self.url, options)
    }

    /// Runs raw SQL (for writing rows the way other tools would).
    pub fn exec(&self, sql: &str) {
        self.db
            .with_connection(|c| c.batch_execute(sql).map_err(mapping_model::Error::from))
            .unwrap_or_else(|e| panic!("raw SQL failed on {:?}: {e}\n{sql}", self.backend));
    }

    /// A SQL literal for a boolean on this backend.
    pub fn sql_bool(&self, b: bool) -> &'static str {
        match (self.backend, b) {
            (BackendKind::Postgres, true) => "TRUE",
            (BackendKind::Postgres, false) => "FALSE",
            (_, true) => "1",
            (_, false) => "0",
        }
    }

    /// Creates a cell with fresh uuid and name.
    pub fn cell(&self) -> CellMapping {
        self.db.cells().create(new_cell()).expect("create cell")
    }

    /// Creates an instance mapping in `cell` (or unscheduled) for project and user.
    pub fn instance(
        &self,
        cell: Option<&CellMapping>,
        project: &str,
        user: &str,
    ) -> InstanceMapping {
        let mut new = NewInstanceMapping::new(uuid(), project, user);
        new.cell_mapping = cell.cloned();
        self.db
            .instance_mappings()
            .create(new)
            .expect("create instance mapping")
    }

    /// Creates a host mapping with a fresh host name in `cell`.
    pub fn host(&self, cell: &CellMapping) -> HostMapping {
        self.db
            .host_mappings()
            .create(new_host(cell))
            .expect("create host mapping")
    }
}

fn open_or_fail(backend: BackendKind, url: &str, options: Options) -> Database {
    Database::open_with(url, options).unwrap_or_else(|e| {
        panic!(
            "\n\n*** {backend:?} IS NOT AVAILABLE: {e}\n*** Start the server (scripts/services.sh) or point \
             MAPPING_TEST_{}_URL at one. Tests never skip a backend.\n",
            match backend {
                BackendKind::Postgres => "POSTGRES",
                BackendKind::Mysql => "MYSQL",
                BackendKind::Sqlite => "SQLITE",
            }
        )
    })
}

impl Drop for TestDb {
    fn drop(&mut self) {
        match &self.cleanup {
            Cleanup::File(path) => {
                for suffix in ["", "-wal", "-shm"] {
                    let mut p = path.clone().into_os_string();
                    p.push(suffix);
                    let _ = std::fs::remove_file(p);
                }
            }
            Cleanup::Server { admin, name } => {
                let sql = match self.backend {
                    BackendKind::Postgres => format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"),
                    _ => format!("DROP DATABASE IF EXISTS {name}"),
                };
                if let Ok(admin_db) = Database::open(admin) {
                    let _ = admin_db.with_connection(|c| {
                        c.batch_execute(&sql).map_err(mapping_model::Error::from)
                    });
                }
            }
        }
    }
}

/// A fresh random uuid in canonical form.
pub fn uuid() -> String {
    uuid::Uuid::new_v4().to_string()
}

/// A new enabled cell with fresh uuid and name and plausible URLs.
pub fn new_cell() -> NewCellMapping {
    let u = uuid();
    let short = u.get(..8).unwrap_or("cell").to_owned();
    NewCellMapping::new(
        u,
        format!("rabbit://nova:pw@mq-{short}:5672/"),
        format!("mysql+pymysql://nova:pw@db-{short}/nova_{short}?charset=utf8"),
    )
    .name(format!("cell-{short}"))
}

/// A new unscheduled instance mapping with a fresh uuid.
pub fn new_instance(project: &str, user: &str) -> NewInstanceMapping {
    NewInstanceMapping::new(uuid(), project, user)
}

/// A new host mapping with a fresh host name.
pub fn new_host(cell: &CellMapping) -> NewHostMapping {
    NewHostMapping::new(format!("compute-{}", uuid()), cell)
}

/// Writes a test body once and runs it on every backend compiled in: one
/// `#[test]` per backend, named `<test>::sqlite`, `<test>::postgres`,
/// `<test>::mysql`. The body gets a fresh migrated [`TestDb`].
///
/// ```text
/// mapping_testkit::backend_tests! {
///     fn creates_a_cell(t) {
///         let cell = t.cell();
///         assert_eq!(t.cells().get_by_uuid(&cell.uuid).unwrap(), cell);
///     }
/// }
/// ```
#[macro_export]
macro_rules! backend_tests {
    ($( $(#[$meta:meta])* fn $name:ident($t:ident) $body:block )*) => {
        $(
            #[allow(non_snake_case)]
            mod $name {
                #[allow(unused_imports)]
                use super::*;

                #[allow(unused_variables, clippy::needless_pass_by_value)]
                fn body($t: &$crate::TestDb) $body

                #[test]
                $(#[$meta])*
                fn sqlite() {
                    body(&$crate::TestDb::new($crate::BackendKind::Sqlite));
                }

                #[cfg(feature = "postgres")]
                #[test]
                $(#[$meta])*
                fn postgres() {
                    body(&$crate::TestDb::new($crate::BackendKind::Postgres));
                }

                #[cfg(feature = "mysql")]
                #[test]
                $(#[$meta])*
                fn mysql() {
                    body(&$crate::TestDb::new($crate::BackendKind::Mysql));
                }
            }
        )*
    };
}
