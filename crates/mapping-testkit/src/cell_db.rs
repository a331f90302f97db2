//! A Nova cell database for tests: the `instances`, `compute_nodes` and
//! `services` tables made exactly as Nova's migrations make them on each
//! backend (names, types, nullability, no server defaults, indexes, unique
//! constraints; `nova-cell-schema/*.txt` beside this crate are the
//! reference), plus fixtures that fill them.
//!
//! Soft delete follows Nova: `deleted = 0` for a live row, `deleted = id`
//! for a deleted one; a soft-deleted instance keeps `deleted = 0` and has
//! `vm_state = 'soft-delete'`.

use chrono::NaiveDateTime;
use diesel::prelude::*;
use mapping_diesel::__private::timestamp::NovaTimestamp;
use mapping_diesel::{BackendKind, DbConnection};
use mapping_model::cell_schema::{compute_nodes, instances, services};
use mapping_model::{CellMapping, NewCellMapping};

use crate::{uuid, TestDb};

/// A column type as each backend stores it (SQLite, PostgreSQL, MySQL).
#[derive(Clone, Copy)]
enum Ty {
    /// The auto-increment integer primary key.
    Id,
    DateTime,
    Int,
    BigInt,
    Varchar(u16),
    /// `TEXT` everywhere.
    Text,
    /// `TEXT`, but `MEDIUMTEXT` on MySQL.
    MediumText,
    Bool,
    /// `VARCHAR(39)`, but `INET` on PostgreSQL.
    Ip,
    Float,
    /// `locked_by`: `VARCHAR(5)`, an `ENUM('owner','admin')` on MySQL.
    LockedBy,
}

impl Ty {
    fn sql(self, backend: BackendKind) -> String {
        use BackendKind::{Mysql, Postgres, Sqlite};
        match (self, backend) {
            (Ty::Id, Sqlite) => "INTEGER NOT NULL".into(),
            (Ty::Id, Postgres) => "SERIAL NOT NULL".into(),
            (Ty::Id, Mysql) => "INT(11) NOT NULL AUTO_INCREMENT".into(),
            (Ty::DateTime, Postgres) => "TIMESTAMP WITHOUT TIME ZONE".into(),
            (Ty::DateTime, _) => "DATETIME".into(),
            (Ty::Int, Mysql) => "INT(11)".into(),
            (Ty::Int, _) => "INTEGER".into(),
            (Ty::BigInt, Mysql) => "BIGINT(20)".into(),
            (Ty::BigInt, _) => "BIGINT".into(),
            (Ty::Varchar(n), _) => format!("VARCHAR({n})"),
            (Ty::Text, _) => "TEXT".into(),
            (Ty::MediumText, Mysql) => "MEDIUMTEXT".into(),
            (Ty::MediumText, _) => "TEXT".into(),
            (Ty::Bool, Mysql) => "TINYINT(1)".into(),
            (Ty::Bool, _) => "BOOLEAN".into(),
            (Ty::Ip, Postgres) => "INET".into(),
            (Ty::Ip, _) => "VARCHAR(39)".into(),
            (Ty::Float, Postgres) => "DOUBLE PRECISION".into(),
            (Ty::Float, _) => "FLOAT".into(),
            (Ty::LockedBy, Mysql) => "ENUM('owner','admin')".into(),
            (Ty::LockedBy, _) => "VARCHAR(5)".into(),
        }
    }
}

/// Nullable column.
const N: bool = false;
/// NOT NULL column.
const R: bool = true;

struct Table {
    name: &'static str,
    columns: &'static [(&'static str, Ty, bool)],
    /// `CONSTRAINT name UNIQUE (cols)`.
    unique: &'static [(&'static str, &'static str)],
    /// `CREATE [UNIQUE] INDEX name ON table (cols)`.
    indexes: &'static [(&'static str, &'static str, bool)],
}

const V255: Ty = Ty::Varchar(255);
const V36: Ty = Ty::Varchar(36);

const INSTANCES: Table = Table {
    name: "instances",
    columns: &[
        ("created_at", Ty::DateTime, N),
        ("updated_at", Ty::DateTime, N),
        ("deleted_at", Ty::DateTime, N),
        ("id", Ty::Id, R),
        ("internal_id", Ty::Int, N),
        ("user_id", V255, N),
        ("project_id", V255, N),
        ("image_ref", V255, N),
        ("kernel_id", V255, N),
        ("ramdisk_id", V255, N),
        ("launch_index", Ty::Int, N),
        ("key_name", V255, N),
        ("key_data", Ty::MediumText, N),
        ("power_state", Ty::Int, N),
        ("vm_state", V255, N),
        ("memory_mb", Ty::Int, N),
        ("vcpus", Ty::Int, N),
        ("hostname", V255, N),
        ("host", V255, N),
        ("user_data", Ty::MediumText, N),
        ("reservation_id", V255, N),
        ("launched_at", Ty::DateTime, N),
        ("terminated_at", Ty::DateTime, N),
        ("display_name", V255, N),
        ("display_description", V255, N),
        ("availability_zone", V255, N),
        ("locked", Ty::Bool, N),
        ("os_type", V255, N),
        ("launched_on", Ty::MediumText, N),
        ("instance_type_id", Ty::Int, N),
        ("vm_mode", V255, N),
        ("uuid", V36, R),
        ("architecture", V255, N),
        ("root_device_name", V255, N),
        ("access_ip_v4", Ty::Ip, N),
        ("access_ip_v6", Ty::Ip, N),
        ("config_drive", V255, N),
        ("task_state", V255, N),
        ("default_ephemeral_device", V255, N),
        ("default_swap_device", V255, N),
        ("progress", Ty::Int, N),
        ("auto_disk_config", Ty::Bool, N),
        ("shutdown_terminate", Ty::Bool, N),
        ("disable_terminate", Ty::Bool, N),
        ("root_gb", Ty::Int, N),
        ("ephemeral_gb", Ty::Int, N),
        ("cell_name", V255, N),
        ("node", V255, N),
        ("deleted", Ty::Int, N),
        ("locked_by", Ty::LockedBy, N),
        ("cleaned", Ty::Int, N),
        ("ephemeral_key_uuid", V36, N),
        ("hidden", Ty::Bool, N),
        ("compute_id", Ty::BigInt, N),
    ],
    unique: &[("uniq_instances0uuid", "uuid")],
    indexes: &[
        (
            "instances_compute_id_deleted_idx",
            "compute_id, deleted",
            false,
        ),
        (
            "instances_deleted_created_at_idx",
            "deleted, created_at",
            false,
        ),
        (
            "instances_host_deleted_cleaned_idx",
            "host, deleted, cleaned",
            false,
        ),
        (
            "instances_host_node_deleted_idx",
            "host, node, deleted",
            false,
        ),
        (
            "instances_project_id_deleted_idx",
            "project_id, deleted",
            false,
        ),
        ("instances_project_id_idx", "project_id", false),
        ("instances_reservation_id_idx", "reservation_id", false),
        (
            "instances_task_state_updated_at_idx",
            "task_state, updated_at",
            false,
        ),
        (
            "instances_terminated_at_launched_at_idx",
            "terminated_at, launched_at",
            false,
        ),
        (
            "instances_updated_at_project_id_idx",
            "updated_at, project_id",
            false,
        ),
        ("instances_uuid_deleted_idx", "uuid, deleted", false),
    ],
};

const COMPUTE_NODES: Table = Table {
    name: "compute_nodes",
    columns: &[
        ("created_at", Ty::DateTime, N),
        ("updated_at", Ty::DateTime, N),
        ("deleted_at", Ty::DateTime, N),
        ("id", Ty::Id, R),
        ("service_id", Ty::Int, N),
        ("vcpus", Ty::Int, R),
        ("memory_mb", Ty::Int, R),
        ("local_gb", Ty::Int, R),
        ("vcpus_used", Ty::Int, R),
        ("memory_mb_used", Ty::Int, R),
        ("local_gb_used", Ty::Int, R),
        ("hypervisor_type", Ty::MediumText, R),
        ("hypervisor_version", Ty::Int, R),
        ("cpu_info", Ty::MediumText, R),
        ("disk_available_least", Ty::Int, N),
        ("free_ram_mb", Ty::Int, N),
        ("free_disk_gb", Ty::Int, N),
        ("current_workload", Ty::Int, N),
        ("running_vms", Ty::Int, N),
        ("hypervisor_hostname", V255, N),
        ("deleted", Ty::Int, N),
        ("host_ip", Ty::Ip, N),
        ("supported_instances", Ty::Text, N),
        ("pci_stats", Ty::Text, N),
        ("metrics", Ty::Text, N),
        ("extra_resources", Ty::Text, N),
        ("stats", Ty::Text, N),
        ("numa_topology", Ty::Text, N),
        ("host", V255, N),
        ("ram_allocation_ratio", Ty::Float, N),
        ("cpu_allocation_ratio", Ty::Float, N),
        ("uuid", V36, N),
        ("disk_allocation_ratio", Ty::Float, N),
        ("mapped", Ty::Int, N),
    ],
    unique: &[(
        "uniq_compute_nodes0host0hypervisor_hostname0deleted",
        "host, hypervisor_hostname, deleted",
    )],
    indexes: &[("compute_nodes_uuid_idx", "uuid", true)],
};

const SERVICES: Table = Table {
    name: "services",
    columns: &[
        ("created_at", Ty::DateTime, N),
        ("updated_at", Ty::DateTime, N),
        ("deleted_at", Ty::DateTime, N),
        ("id", Ty::Id, R),
        ("host", V255, N),
        ("binary", V255, N),
        ("topic", V255, N),
        ("report_count", Ty::Int, R),
        ("disabled", Ty::Bool, N),
        ("deleted", Ty::Int, N),
        ("disabled_reason", V255, N),
        ("last_seen_up", Ty::DateTime, N),
        ("forced_down", Ty::Bool, N),
        ("version", Ty::Int, N),
        ("uuid", V36, N),
    ],
    unique: &[
        ("uniq_services0host0binary0deleted", "host, binary, deleted"),
        ("uniq_services0host0topic0deleted", "host, topic, deleted"),
    ],
    indexes: &[("services_uuid_idx", "uuid", true)],
};

/// Quotes an identifier for `backend` (`binary` is a keyword on MySQL).
fn quote(backend: BackendKind, name: &str) -> String {
    match backend {
        BackendKind::Mysql => format!("`{name}`"),
        _ => format!("\"{name}\""),
    }
}

fn quote_list(backend: BackendKind, cols: &str) -> String {
    cols.split(',')
        .map(|c| quote(backend, c.trim()))
        .collect::<Vec<_>>()
        .join(", ")
}

impl Table {
    fn ddl(&self, backend: BackendKind) -> String {
        let mut parts: Vec<String> = self
            .columns
            .iter()
            .map(|(name, ty, required)| {
                let mut col = format!("{} {}", quote(backend, name), ty.sql(backend));
                if *required && !matches!(ty, Ty::Id) {
                    col.push_str(" NOT NULL");
                }
                col
            })
            .collect();
        parts.push("PRIMARY KEY (id)".into());
        for (name, cols) in self.unique {
            parts.push(format!(
                "CONSTRAINT {name} UNIQUE ({})",
                quote_list(backend, cols)
            ));
        }
        let tail = match backend {
            BackendKind::Mysql => {
                " ENGINE=InnoDB DEFAULT CHARSET=utf8mb3 COLLATE=utf8mb3_general_ci"
            }
            _ => "",
        };
        let mut sql = format!(
            "CREATE TABLE {} (\n    {}\n){tail};\n",
            self.name,
            parts.join(",\n    ")
        );
        for (name, cols, unique) in self.indexes {
            sql.push_str(&format!(
                "CREATE {}INDEX {name} ON {} ({});\n",
                if *unique { "UNIQUE " } else { "" },
                self.name,
                quote_list(backend, cols)
            ));
        }
        sql
    }
}

/// The DDL that makes the three cell tables on `backend`, as Nova's
/// migrations leave them.
pub fn cell_schema_sql(backend: BackendKind) -> String {
    [INSTANCES, COMPUTE_NODES, SERVICES]
        .iter()
        .map(|t| t.ddl(backend))
        .collect()
}

/// Runs a diesel statement on the inner connection of whichever backend
/// `conn` holds (multi-row inserts cannot go through `MultiConnection`). A
/// backend compiled into `mapping-diesel` but not enabled in this crate's
/// features gives an error instead of a build failure.
macro_rules! on_inner {
    ($conn:expr, |$c:ident| $body:expr) => {
        match $conn {
            DbConnection::Sqlite($c) => $body,
            #[cfg(feature = "postgres")]
            DbConnection::Postgres($c) => $body,
            #[cfg(feature = "mysql")]
            DbConnection::Mysql($c) => $body,
            #[allow(unreachable_patterns)]
            _ => Err(diesel::result::Error::QueryBuilderError(
                "this backend is not enabled in mapping-testkit's features".into(),
            )),
        }
    };
}

/// An instance to put in a cell database.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewCellInstance {
    /// The instance's uuid.
    pub uuid: String,
    /// Owning project (`None` writes NULL).
    pub project_id: Option<String>,
    /// Owning user (`None` writes NULL).
    pub user_id: Option<String>,
    /// Creation time.
    pub created_at: Option<NaiveDateTime>,
    /// VM state (`soft-delete` for a soft-deleted instance).
    pub vm_state: Option<String>,
    /// Compute host.
    pub host: Option<String>,
}

impl NewCellInstance {
    /// A live, active instance with a fresh uuid created at `created_at`.
    pub fn new(project: &str, user: &str, created_at: NaiveDateTime) -> Self {
        Self {
            uuid: uuid(),
            project_id: Some(project.into()),
            user_id: Some(user.into()),
            created_at: Some(created_at),
            vm_state: Some("active".into()),
            host: None,
        }
    }

    /// Places the instance on a compute host.
    pub fn host(mut self, host: &str) -> Self {
        self.host = Some(host.into());
        self
    }
}

/// A test cell database (a fresh, uniquely named database on `backend` with
/// Nova's three cell tables), dropped at the end of the test like [`TestDb`].
pub struct CellDb {
    /// The database (no mapping tables: this is a cell, not `nova_api`).
    pub db: TestDb,
}

impl std::ops::Deref for CellDb {
    type Target = TestDb;
    fn deref(&self) -> &TestDb {
        &self.db
    }
}

/// 2000-01-01 00:00:00 plus `secs` seconds: a deterministic `created_at`.
pub fn at(secs: i64) -> NaiveDateTime {
    chrono::DateTime::from_timestamp(946_684_800 + secs, 0)
        .map(|d| d.naive_utc())
        .unwrap_or_default()
}

impl CellDb {
    /// A fresh cell database on `backend` with Nova's cell tables.
    pub fn new(backend: BackendKind) -> Self {
        let db = TestDb::empty(backend);
        db.exec(&cell_schema_sql(backend));
        Self { db }
    }

    /// Creates a cell mapping in `api` whose database is this one.
    pub fn map_in(&self, api: &TestDb) -> CellMapping {
        self.map_in_named(api, &format!("cell-{}", &uuid()[..8]))
    }

    /// Like [`Self::map_in`] with a given cell name.
    pub fn map_in_named(&self, api: &TestDb, name: &str) -> CellMapping {
        api.cells()
            .create(NewCellMapping::new(uuid(), "rabbit://nova:pw@mq:5672/", self.url()).name(name))
            .expect("create cell mapping for the cell database")
    }

    fn conn<T>(&self, what: &str, f: impl FnOnce(&mut DbConnection) -> QueryResult<T>) -> T {
        self.db
            .db
            .with_connection(|c| Ok(f(c)))
            .unwrap_or_else(|e| panic!("{what}: no connection: {e}"))
            .unwrap_or_else(|e| panic!("{what} failed on {:?}: {e}", self.backend()))
    }

    /// Inserts instances (multi-row inserts in one transaction); returns
    /// their ids in order.
    pub fn add_instances(&self, news: &[NewCellInstance]) -> Vec<i32> {
        self.conn("inserting instances", |c| {
            c.transaction(|c| {
                for chunk in news.chunks(2_000) {
                    let rows: Vec<_> = chunk
                        .iter()
                        .map(|n| {
                            (
                                instances::created_at.eq(n.created_at.map(NovaTimestamp)),
                                instances::uuid.eq(n.uuid.as_str()),
                                instances::project_id.eq(n.project_id.as_deref()),
                                instances::user_id.eq(n.user_id.as_deref()),
                                instances::vm_state.eq(n.vm_state.as_deref()),
                                instances::host.eq(n.host.as_deref()),
                                instances::deleted.eq(Some(0)),
                            )
                        })
                        .collect();
                    let insert = diesel::insert_into(instances::table).values(rows);
                    on_inner!(&mut *c, |c| insert.execute(c))?;
                }
                let uuids: Vec<&str> = news.iter().map(|n| n.uuid.as_str()).collect();
                let mut ids = std::collections::HashMap::new();
                for chunk in uuids.chunks(5_000) {
                    ids.extend(
                        instances::table
                            .filter(instances::uuid.eq_any(chunk))
                            .select((instances::uuid, instances::id))
                            .load::<(String, i32)>(c)?,
                    );
                }
                Ok(news
                    .iter()
                    .map(|n| ids.get(&n.uuid).copied().unwrap_or_default())
                    .collect())
            })
        })
    }

    /// Inserts one instance; returns its id.
    pub fn add_instance(&self, new: &NewCellInstance) -> i32 {
        self.add_instances(std::slice::from_ref(new))[0]
    }

    /// `count` live instances of one project and user, created one second
    /// apart from `at(first_second)`; returns their uuids, oldest first.
    pub fn add_many(
        &self,
        count: usize,
        project: &str,
        user: &str,
        first_second: i64,
    ) -> Vec<String> {
        let news: Vec<NewCellInstance> = (0..count)
            .map(|i| NewCellInstance::new(project, user, at(first_second + i as i64)))
            .collect();
        self.add_instances(&news);
        news.into_iter().map(|n| n.uuid).collect()
    }

    /// Deletes the instance the way Nova does: `deleted = id`, `deleted_at` set.
    pub fn delete_instance(&self, uuid: &str) {
        let now = NovaTimestamp(mapping_diesel::__private::timestamp::now(self.backend()));
        let n = self.conn("deleting an instance", |c| {
            diesel::update(instances::table.filter(instances::uuid.eq(uuid)))
                .set((
                    instances::deleted.eq(instances::id.nullable()),
                    instances::deleted_at.eq(Some(now)),
                    instances::vm_state.eq(Some("deleted")),
                ))
                .execute(c)
        });
        assert_eq!(n, 1, "no instance {uuid} to delete");
    }

    /// Soft-deletes the instance: `vm_state = 'soft-delete'`, still `deleted = 0`.
    pub fn soft_delete_instance(&self, uuid: &str) {
        let n = self.conn("soft-deleting an instance", |c| {
            diesel::update(instances::table.filter(instances::uuid.eq(uuid)))
                .set(instances::vm_state.eq(Some("soft-delete")))
                .execute(c)
        });
        assert_eq!(n, 1, "no instance {uuid} to soft-delete");
    }

    /// Removes the instance row altogether (as `archive_deleted_rows` does).
    pub fn archive_instance(&self, uuid: &str) {
        let n = self.conn("archiving an instance", |c| {
            diesel::delete(instances::table.filter(instances::uuid.eq(uuid))).execute(c)
        });
        assert_eq!(n, 1, "no instance {uuid} to archive");
    }

    /// Adds a live compute node on `host` (`mapped = 0`); returns its id.
    pub fn add_compute_node(&self, host: &str) -> i32 {
        let now = NovaTimestamp(mapping_diesel::__private::timestamp::now(self.backend()));
        let node_uuid = uuid();
        self.conn("inserting a compute node", |c| {
            diesel::insert_into(compute_nodes::table)
                .values((
                    compute_nodes::created_at.eq(Some(now)),
                    compute_nodes::vcpus.eq(8),
                    compute_nodes::memory_mb.eq(16_384),
                    compute_nodes::local_gb.eq(100),
                    compute_nodes::vcpus_used.eq(0),
                    compute_nodes::memory_mb_used.eq(0),
                    compute_nodes::local_gb_used.eq(0),
                    compute_nodes::hypervisor_type.eq("QEMU"),
                    compute_nodes::hypervisor_version.eq(8_002_000),
                    compute_nodes::cpu_info.eq("{}"),
                    compute_nodes::hypervisor_hostname.eq(Some(host)),
                    compute_nodes::deleted.eq(Some(0)),
                    compute_nodes::host.eq(Some(host)),
                    compute_nodes::uuid.eq(Some(node_uuid.as_str())),
                    compute_nodes::mapped.eq(Some(0)),
                ))
                .execute(c)?;
            compute_nodes::table
                .filter(compute_nodes::uuid.eq(node_uuid.as_str()))
                .select(compute_nodes::id)
                .first(c)
        })
    }

    /// Deletes a compute node the way Nova does (`deleted = id`).
    pub fn delete_compute_node(&self, id: i32) {
        self.conn("deleting a compute node", |c| {
            diesel::update(compute_nodes::table.find(id))
                .set(compute_nodes::deleted.eq(Some(id)))
                .execute(c)
        });
    }

    /// Sets `mapped` of a compute node.
    pub fn set_mapped(&self, id: i32, mapped: i32) {
        self.conn("updating a compute node", |c| {
            diesel::update(compute_nodes::table.find(id))
                .set(compute_nodes::mapped.eq(Some(mapped)))
                .execute(c)
        });
    }

    /// The `mapped` column of a compute node.
    pub fn mapped(&self, id: i32) -> Option<i32> {
        self.conn("reading a compute node", |c| {
            compute_nodes::table
                .find(id)
                .select(compute_nodes::mapped)
                .first(c)
        })
    }

    /// Adds a live service (`binary` e.g. `nova-compute`); returns its id.
    pub fn add_service(&self, host: &str, binary: &str, disabled: bool) -> i32 {
        let now = NovaTimestamp(mapping_diesel::__private::timestamp::now(self.backend()));
        let service_uuid = uuid();
        let topic = binary.strip_prefix("nova-").unwrap_or(binary).to_owned();
        self.conn("inserting a service", |c| {
            diesel::insert_into(services::table)
                .values((
                    services::created_at.eq(Some(now)),
                    services::host.eq(Some(host)),
                    services::binary.eq(Some(binary)),
                    services::topic.eq(Some(topic.as_str())),
                    services::report_count.eq(0),
                    services::disabled.eq(Some(disabled)),
                    services::deleted.eq(Some(0)),
                    services::uuid.eq(Some(service_uuid.as_str())),
                ))
                .execute(c)?;
            services::table
                .filter(services::uuid.eq(service_uuid.as_str()))
                .select(services::id)
                .first(c)
        })
    }

    /// Deletes a service the way Nova does (`deleted = id`).
    pub fn delete_service(&self, id: i32) {
        self.conn("deleting a service", |c| {
            diesel::update(services::table.find(id))
                .set(services::deleted.eq(Some(id)))
                .execute(c)
        });
    }

    /// Number of rows in `instances`.
    pub fn instance_count(&self) -> i64 {
        self.conn("counting instances", |c| {
            instances::table.count().get_result(c)
        })
    }
}
