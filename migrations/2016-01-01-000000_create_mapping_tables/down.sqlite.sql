-- Drops the mapping tables, referencing tables first.
DROP TABLE instance_mappings;
DROP TABLE host_mappings;
DROP TABLE cell_mappings;
