-- nova_api's three mapping tables as Nova's migrations leave them on
-- MySQL/MariaDB: InnoDB, 3-byte utf8, INTEGER ids (shown as int(11)), BOOL
-- (tinyint(1)), DATETIME without fraction, no server defaults. The foreign
-- keys carry no name, so the engine calls them <table>_ibfk_1 and adds an
-- index named cell_id to back each one.

CREATE TABLE cell_mappings (
    created_at DATETIME NULL,
    updated_at DATETIME NULL,
    id INTEGER NOT NULL AUTO_INCREMENT,
    uuid VARCHAR(36) NOT NULL,
    name VARCHAR(255) NULL,
    transport_url TEXT NULL,
    database_connection TEXT NULL,
    disabled BOOL NULL,
    PRIMARY KEY (id),
    CONSTRAINT uniq_cell_mappings0uuid UNIQUE (uuid)
) ENGINE=InnoDB DEFAULT CHARSET=utf8;

CREATE INDEX uuid_idx ON cell_mappings (uuid);

CREATE TABLE host_mappings (
    created_at DATETIME NULL,
    updated_at DATETIME NULL,
    id INTEGER NOT NULL AUTO_INCREMENT,
    cell_id INTEGER NOT NULL,
    host VARCHAR(255) NOT NULL,
    PRIMARY KEY (id),
    CONSTRAINT uniq_host_mappings0host UNIQUE (host),
    FOREIGN KEY (cell_id) REFERENCES cell_mappings (id)
) ENGINE=InnoDB DEFAULT CHARSET=utf8;

CREATE INDEX host_idx ON host_mappings (host);

-- queued_for_delete precedes user_id: Nova added them in that order.
CREATE TABLE instance_mappings (
    created_at DATETIME NULL,
    updated_at DATETIME NULL,
    id INTEGER NOT NULL AUTO_INCREMENT,
    instance_uuid VARCHAR(36) NOT NULL,
    cell_id INTEGER NULL,
    project_id VARCHAR(255) NOT NULL,
    queued_for_delete BOOL NULL,
    user_id VARCHAR(255) NULL,
    PRIMARY KEY (id),
    CONSTRAINT uniq_instance_mappings0instance_uuid UNIQUE (instance_uuid),
    FOREIGN KEY (cell_id) REFERENCES cell_mappings (id)
) ENGINE=InnoDB DEFAULT CHARSET=utf8;

CREATE INDEX instance_uuid_idx ON instance_mappings (instance_uuid);
CREATE INDEX project_id_idx ON instance_mappings (project_id);
CREATE INDEX instance_mappings_user_id_project_id_idx ON instance_mappings (user_id, project_id);
