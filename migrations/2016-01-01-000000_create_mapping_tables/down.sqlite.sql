DROP TABLE host_mappings;
DROP TABLE instance_mappings;
DROP TABLE cell_mappings;
