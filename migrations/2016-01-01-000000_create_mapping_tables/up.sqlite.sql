-- nova_api's three mapping tables as Nova's migrations leave them on SQLite,
-- with the declared types SQLAlchemy writes: DATETIME (text
-- 'YYYY-MM-DD HH:MM:SS.ffffff'), BOOLEAN (0/1), VARCHAR(n), TEXT, and an
-- INTEGER primary key that is the rowid (no AUTOINCREMENT). No server
-- defaults; the foreign keys carry no name.

CREATE TABLE cell_mappings (
    created_at DATETIME,
    updated_at DATETIME,
    id INTEGER NOT NULL,
    uuid VARCHAR(36) NOT NULL,
    name VARCHAR(255),
    transport_url TEXT,
    database_connection TEXT,
    disabled BOOLEAN,
    PRIMARY KEY (id),
    CONSTRAINT uniq_cell_mappings0uuid UNIQUE (uuid)
);

CREATE INDEX uuid_idx ON cell_mappings (uuid);

CREATE TABLE host_mappings (
    created_at DATETIME,
    updated_at DATETIME,
    id INTEGER NOT NULL,
    cell_id INTEGER NOT NULL,
    host VARCHAR(255) NOT NULL,
    PRIMARY KEY (id),
    CONSTRAINT uniq_host_mappings0host UNIQUE (host),
    FOREIGN KEY (cell_id) REFERENCES cell_mappings (id)
);

CREATE INDEX host_idx ON host_mappings (host);

-- queued_for_delete precedes user_id: Nova added them in that order.
CREATE TABLE instance_mappings (
    created_at DATETIME,
    updated_at DATETIME,
    id INTEGER NOT NULL,
    instance_uuid VARCHAR(36) NOT NULL,
    cell_id INTEGER,
    project_id VARCHAR(255) NOT NULL,
    queued_for_delete BOOLEAN,
    user_id VARCHAR(255),
    PRIMARY KEY (id),
    CONSTRAINT uniq_instance_mappings0instance_uuid UNIQUE (instance_uuid),
    FOREIGN KEY (cell_id) REFERENCES cell_mappings (id)
);

CREATE INDEX instance_uuid_idx ON instance_mappings (instance_uuid);
CREATE INDEX project_id_idx ON instance_mappings (project_id);
CREATE INDEX instance_mappings_user_id_project_id_idx ON instance_mappings (user_id, project_id);
