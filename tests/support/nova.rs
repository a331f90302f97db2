//! The DDL of Nova's own migrations for the three tables (shared by the
//! schema and migration-lock tests).

use cell_mappings::BackendKind;

/// The three tables written the way Nova's migrations (SQLAlchemy) emit
/// them for `backend`, with `user_id` of `user_id_len` characters and
/// `project_id_idx` only when asked for: the test's own text, independent of
/// our migration files.
pub fn nova_ddl(backend: BackendKind, user_id_len: u32, project_id_idx: bool) -> String {
    let (dt, id, boolean, tail) = match backend {
        BackendKind::Sqlite => ("DATETIME", "INTEGER NOT NULL", "BOOLEAN", ""),
        BackendKind::Postgres => (
            "TIMESTAMP WITHOUT TIME ZONE",
            "SERIAL NOT NULL",
            "BOOLEAN",
            "",
        ),
        BackendKind::Mysql => (
            "DATETIME",
            "INTEGER NOT NULL AUTO_INCREMENT",
            "BOOL",
            "ENGINE=InnoDB DEFAULT CHARSET=utf8",
        ),
    };
    let mut sql = format!(
        "\nCREATE TABLE cell_mappings (\n\tcreated_at {dt}, \n\tupdated_at {dt}, \n\tid {id}, \
         \n\tuuid VARCHAR(36) NOT NULL, \n\tname VARCHAR(255), \n\ttransport_url TEXT, \
         \n\tdatabase_connection TEXT, \n\tdisabled {boolean}, \n\tPRIMARY KEY (id), \
         \n\tCONSTRAINT uniq_cell_mappings0uuid UNIQUE (uuid)\n){tail};\n\
         CREATE INDEX uuid_idx ON cell_mappings (uuid);\n\
         \nCREATE TABLE host_mappings (\n\tcreated_at {dt}, \n\tupdated_at {dt}, \n\tid {id}, \
         \n\tcell_id INTEGER NOT NULL, \n\thost VARCHAR(255) NOT NULL, \n\tPRIMARY KEY (id), \
         \n\tCONSTRAINT uniq_host_mappings0host UNIQUE (host), \
         \n\tFOREIGN KEY(cell_id) REFERENCES cell_mappings (id)\n){tail};\n\
         CREATE INDEX host_idx ON host_mappings (host);\n\
         \nCREATE TABLE instance_mappings (\n\tcreated_at {dt}, \n\tupdated_at {dt}, \n\tid {id}, \
         \n\tinstance_uuid VARCHAR(36) NOT NULL, \n\tcell_id INTEGER, \
         \n\tproject_id VARCHAR(255) NOT NULL, \n\tqueued_for_delete {boolean}, \
         \n\tuser_id VARCHAR({user_id_len}), \n\tPRIMARY KEY (id), \
         \n\tCONSTRAINT uniq_instance_mappings0instance_uuid UNIQUE (instance_uuid), \
         \n\tFOREIGN KEY(cell_id) REFERENCES cell_mappings (id)\n){tail};\n\
         CREATE INDEX instance_uuid_idx ON instance_mappings (instance_uuid);\n\
         CREATE INDEX instance_mappings_user_id_project_id_idx \
         ON instance_mappings (user_id, project_id);\n"
    );
    if project_id_idx {
        sql.push_str("CREATE INDEX project_id_idx ON instance_mappings (project_id);\n");
    }
    sql.push_str(&format!(
        "\nCREATE TABLE alembic_version (\n\tversion_num VARCHAR(32) NOT NULL, \
         \n\tCONSTRAINT alembic_version_pkc PRIMARY KEY (version_num)\n){tail};\n\
         INSERT INTO alembic_version (version_num) VALUES ('cdeec0c85668');\n"
    ));
    sql
}
