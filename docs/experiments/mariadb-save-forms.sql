-- Server-side cost of the forms of the instance-mapping save on MariaDB
-- (docs/benchmarks.md, "MariaDB save: where the server's time goes").
-- Load after the project's MySQL migration into an empty database, then
-- CALL run_form(<form>, <executions>): prints microseconds per execution.
-- Forms: 1 the raw baseline's UPDATE; 9 form 1 with five more parameters;
-- 3 the compare-and-set on the instance's own columns; 10 form 3 with plain
-- `=`; 8 form 3 joined with the cell on id and uuid; 2 the library's
-- statement before 2026-11-30 (schedule_one: cell joined on all its
-- columns); 11 form 3 found by primary key, the uuid compared exactly (the
-- library's form since); 12 the library's statement since (found by primary
-- key, the cell joined on all its columns); 20 form 12 with the cell's
-- columns compared through one digest of them all; 21 form 11 joined with
-- the cell on its id alone; 23 on id and uuid; 24 form 12 with the URLs
-- compared as text; 25 by MD5; 26 form 12 without CAST(… AS BINARY).
INSERT INTO cell_mappings (created_at, uuid, name, transport_url, database_connection, disabled) VALUES
 ('2026-01-01 00:00:00', '11111111-1111-1111-1111-111111111111', 'cell1', 'rabbit://nova:secret@mq1:5672/', 'mysql+pymysql://nova:secret@db1/nova', 0),
 ('2026-01-01 00:00:00', '22222222-2222-2222-2222-222222222222', 'cell2', 'rabbit://nova:secret@mq2:5672/', 'mysql+pymysql://nova:secret@db2/nova', 0);
INSERT INTO instance_mappings (created_at, instance_uuid, project_id, user_id, queued_for_delete)
 SELECT '2026-01-01 00:00:00', UUID(), 'proj', 'user', 0 FROM seq_1_to_10000;
ANALYZE TABLE instance_mappings, cell_mappings;
DELIMITER //
CREATE PROCEDURE run_form(IN form INT, IN n INT)
BEGIN
  DECLARE i INT DEFAULT 0;
  DECLARE u VARCHAR(36);
  DECLARE rid INT;
  UPDATE instance_mappings SET updated_at = NULL, cell_id = NULL;
  IF form = 1 THEN PREPARE s FROM 'UPDATE instance_mappings SET updated_at = ?, cell_id = ? WHERE instance_uuid = ?';
  ELSEIF form = 9 THEN PREPARE s FROM 'UPDATE instance_mappings SET updated_at = ?, cell_id = ? WHERE instance_uuid = ? AND ? IS NOT NULL AND ? IS NOT NULL AND ? IS NOT NULL AND ? IS NOT NULL AND ? IS NOT NULL';
  ELSEIF form = 3 THEN PREPARE s FROM 'UPDATE instance_mappings SET instance_mappings.updated_at = ?, instance_mappings.cell_id = ? WHERE instance_mappings.instance_uuid = ? AND CAST(instance_mappings.instance_uuid AS BINARY) = ? AND instance_mappings.id = ? AND CAST(instance_mappings.project_id AS BINARY) = ? AND CAST(instance_mappings.user_id AS BINARY) = ? AND instance_mappings.queued_for_delete IS NOT TRUE AND instance_mappings.created_at = ? AND instance_mappings.updated_at IS NULL';
  ELSEIF form = 10 THEN PREPARE s FROM 'UPDATE instance_mappings SET instance_mappings.updated_at = ?, instance_mappings.cell_id = ? WHERE instance_mappings.instance_uuid = ? AND instance_mappings.instance_uuid = ? AND instance_mappings.id = ? AND instance_mappings.project_id = ? AND instance_mappings.user_id = ? AND instance_mappings.queued_for_delete IS NOT TRUE AND instance_mappings.created_at = ? AND instance_mappings.updated_at IS NULL';
  ELSEIF form = 8 THEN PREPARE s FROM 'UPDATE instance_mappings INNER JOIN cell_mappings ON cell_mappings.id = ? AND CAST(cell_mappings.uuid AS BINARY) = ? AND ? IS NOT NULL AND ? IS NOT NULL AND ? IS NOT NULL AND ? IS NOT NULL SET instance_mappings.updated_at = ?, instance_mappings.cell_id = ? WHERE instance_mappings.instance_uuid = ? AND CAST(instance_mappings.instance_uuid AS BINARY) = ? AND instance_mappings.id = ? AND CAST(instance_mappings.project_id AS BINARY) = ? AND CAST(instance_mappings.user_id AS BINARY) = ? AND instance_mappings.queued_for_delete IS NOT TRUE AND instance_mappings.created_at = ? AND instance_mappings.updated_at IS NULL';
  ELSEIF form = 2 THEN PREPARE s FROM 'UPDATE instance_mappings INNER JOIN cell_mappings ON cell_mappings.id = ? AND CAST(cell_mappings.uuid AS BINARY) = ? AND CAST(cell_mappings.name AS BINARY) = ? AND SHA2(COALESCE(cell_mappings.transport_url, ''''), 256) = ? AND SHA2(COALESCE(cell_mappings.database_connection, ''''), 256) = ? AND cell_mappings.disabled IS NOT TRUE AND cell_mappings.created_at = ? AND cell_mappings.updated_at IS NULL SET instance_mappings.updated_at = ?, instance_mappings.cell_id = ? WHERE instance_mappings.instance_uuid = ? AND CAST(instance_mappings.instance_uuid AS BINARY) = ? AND instance_mappings.id = ? AND CAST(instance_mappings.project_id AS BINARY) = ? AND CAST(instance_mappings.user_id AS BINARY) = ? AND instance_mappings.queued_for_delete IS NOT TRUE AND instance_mappings.created_at = ? AND instance_mappings.updated_at IS NULL';
  ELSEIF form = 11 THEN PREPARE s FROM 'UPDATE instance_mappings SET instance_mappings.updated_at = ?, instance_mappings.cell_id = ? WHERE instance_mappings.id = ? AND CAST(instance_mappings.instance_uuid AS BINARY) = ? AND CAST(instance_mappings.project_id AS BINARY) = ? AND CAST(instance_mappings.user_id AS BINARY) = ? AND instance_mappings.queued_for_delete IS NOT TRUE AND instance_mappings.created_at = ? AND instance_mappings.updated_at IS NULL';
  ELSEIF form = 12 THEN PREPARE s FROM 'UPDATE instance_mappings INNER JOIN cell_mappings ON cell_mappings.id = ? AND CAST(cell_mappings.uuid AS BINARY) = ? AND CAST(cell_mappings.name AS BINARY) = ? AND SHA2(COALESCE(cell_mappings.transport_url, ''''), 256) = ? AND SHA2(COALESCE(cell_mappings.database_connection, ''''), 256) = ? AND cell_mappings.disabled IS NOT TRUE AND cell_mappings.created_at = ? AND cell_mappings.updated_at IS NULL SET instance_mappings.updated_at = ?, instance_mappings.cell_id = ? WHERE instance_mappings.id = ? AND CAST(instance_mappings.instance_uuid AS BINARY) = ? AND CAST(instance_mappings.project_id AS BINARY) = ? AND CAST(instance_mappings.user_id AS BINARY) = ? AND instance_mappings.queued_for_delete IS NOT TRUE AND instance_mappings.created_at = ? AND instance_mappings.updated_at IS NULL';
  ELSEIF form = 20 THEN PREPARE s FROM 'UPDATE instance_mappings INNER JOIN cell_mappings ON cell_mappings.id = ? AND SHA2(CONCAT_WS(0x1f, cell_mappings.uuid, IFNULL(cell_mappings.name, 0x1e), COALESCE(cell_mappings.transport_url, ''''), COALESCE(cell_mappings.database_connection, ''''), cell_mappings.disabled IS TRUE, IFNULL(cell_mappings.created_at, 0x1e), IFNULL(cell_mappings.updated_at, 0x1e)), 256) = ? SET instance_mappings.updated_at = ?, instance_mappings.cell_id = ? WHERE instance_mappings.id = ? AND CAST(instance_mappings.instance_uuid AS BINARY) = ? AND CAST(instance_mappings.project_id AS BINARY) = ? AND CAST(instance_mappings.user_id AS BINARY) = ? AND instance_mappings.queued_for_delete IS NOT TRUE AND instance_mappings.created_at = ? AND instance_mappings.updated_at IS NULL';
  ELSEIF form = 21 THEN PREPARE s FROM 'UPDATE instance_mappings INNER JOIN cell_mappings ON cell_mappings.id = ? SET instance_mappings.updated_at = ?, instance_mappings.cell_id = ? WHERE instance_mappings.id = ? AND CAST(instance_mappings.instance_uuid AS BINARY) = ? AND CAST(instance_mappings.project_id AS BINARY) = ? AND CAST(instance_mappings.user_id AS BINARY) = ? AND instance_mappings.queued_for_delete IS NOT TRUE AND instance_mappings.created_at = ? AND instance_mappings.updated_at IS NULL';
  ELSEIF form = 23 THEN PREPARE s FROM 'UPDATE instance_mappings INNER JOIN cell_mappings ON cell_mappings.id = ? AND CAST(cell_mappings.uuid AS BINARY) = ? SET instance_mappings.updated_at = ?, instance_mappings.cell_id = ? WHERE instance_mappings.id = ? AND CAST(instance_mappings.instance_uuid AS BINARY) = ? AND CAST(instance_mappings.project_id AS BINARY) = ? AND CAST(instance_mappings.user_id AS BINARY) = ? AND instance_mappings.queued_for_delete IS NOT TRUE AND instance_mappings.created_at = ? AND instance_mappings.updated_at IS NULL';
  ELSEIF form = 24 THEN PREPARE s FROM 'UPDATE instance_mappings INNER JOIN cell_mappings ON cell_mappings.id = ? AND CAST(cell_mappings.uuid AS BINARY) = ? AND CAST(cell_mappings.name AS BINARY) = ? AND CAST(COALESCE(cell_mappings.transport_url, '''') AS BINARY) = ? AND CAST(COALESCE(cell_mappings.database_connection, '''') AS BINARY) = ? AND cell_mappings.disabled IS NOT TRUE AND cell_mappings.created_at = ? AND cell_mappings.updated_at IS NULL SET instance_mappings.updated_at = ?, instance_mappings.cell_id = ? WHERE instance_mappings.id = ? AND CAST(instance_mappings.instance_uuid AS BINARY) = ? AND CAST(instance_mappings.project_id AS BINARY) = ? AND CAST(instance_mappings.user_id AS BINARY) = ? AND instance_mappings.queued_for_delete IS NOT TRUE AND instance_mappings.created_at = ? AND instance_mappings.updated_at IS NULL';
  ELSEIF form = 25 THEN PREPARE s FROM 'UPDATE instance_mappings INNER JOIN cell_mappings ON cell_mappings.id = ? AND CAST(cell_mappings.uuid AS BINARY) = ? AND CAST(cell_mappings.name AS BINARY) = ? AND MD5(COALESCE(cell_mappings.transport_url, '''')) = ? AND MD5(COALESCE(cell_mappings.database_connection, '''')) = ? AND cell_mappings.disabled IS NOT TRUE AND cell_mappings.created_at = ? AND cell_mappings.updated_at IS NULL SET instance_mappings.updated_at = ?, instance_mappings.cell_id = ? WHERE instance_mappings.id = ? AND CAST(instance_mappings.instance_uuid AS BINARY) = ? AND CAST(instance_mappings.project_id AS BINARY) = ? AND CAST(instance_mappings.user_id AS BINARY) = ? AND instance_mappings.queued_for_delete IS NOT TRUE AND instance_mappings.created_at = ? AND instance_mappings.updated_at IS NULL';
  ELSEIF form = 26 THEN PREPARE s FROM 'UPDATE instance_mappings INNER JOIN cell_mappings ON cell_mappings.id = ? AND cell_mappings.uuid = ? AND cell_mappings.name = ? AND SHA2(COALESCE(cell_mappings.transport_url, ''''), 256) = ? AND SHA2(COALESCE(cell_mappings.database_connection, ''''), 256) = ? AND cell_mappings.disabled IS NOT TRUE AND cell_mappings.created_at = ? AND cell_mappings.updated_at IS NULL SET instance_mappings.updated_at = ?, instance_mappings.cell_id = ? WHERE instance_mappings.id = ? AND CAST(instance_mappings.instance_uuid AS BINARY) = ? AND CAST(instance_mappings.project_id AS BINARY) = ? AND CAST(instance_mappings.user_id AS BINARY) = ? AND instance_mappings.queued_for_delete IS NOT TRUE AND instance_mappings.created_at = ? AND instance_mappings.updated_at IS NULL';
  END IF;
  SET @t0 = NOW(6);
  WHILE i < n DO
    SELECT instance_uuid, id INTO u, rid FROM instance_mappings WHERE id = i + 1;
    SET @u = u, @rid = rid, @now = '2026-02-01 00:00:00', @cell = 1 + (i MOD 2),
        @cu = IF(@cell = 1, '11111111-1111-1111-1111-111111111111', '22222222-2222-2222-2222-222222222222'),
        @cn = IF(@cell = 1, 'cell1', 'cell2'),
        @tu = SHA2(IF(@cell = 1, 'rabbit://nova:secret@mq1:5672/', 'rabbit://nova:secret@mq2:5672/'), 256),
        @dc = SHA2(IF(@cell = 1, 'mysql+pymysql://nova:secret@db1/nova', 'mysql+pymysql://nova:secret@db2/nova'), 256),
        @ca = '2026-01-01 00:00:00', @p = 'proj', @us = 'user';
    IF form = 1 THEN EXECUTE s USING @now, @cell, @u;
    ELSEIF form IN (2, 8) THEN EXECUTE s USING @cell, @cu, @cn, @tu, @dc, @ca, @now, @cell, @u, @u, @rid, @p, @us, @ca;
    ELSEIF form = 11 THEN EXECUTE s USING @now, @cell, @rid, @u, @p, @us, @ca;
    ELSEIF form = 12 THEN EXECUTE s USING @cell, @cu, @cn, @tu, @dc, @ca, @now, @cell, @rid, @u, @p, @us, @ca;
    ELSEIF form = 20 THEN SET @dg = SHA2(CONCAT_WS(0x1f, @cu, @cn, IF(@cell = 1, 'rabbit://nova:secret@mq1:5672/', 'rabbit://nova:secret@mq2:5672/'), IF(@cell = 1, 'mysql+pymysql://nova:secret@db1/nova', 'mysql+pymysql://nova:secret@db2/nova'), 0, @ca, 0x1e), 256); EXECUTE s USING @cell, @dg, @now, @cell, @rid, @u, @p, @us, @ca;
    ELSEIF form = 23 THEN EXECUTE s USING @cell, @cu, @now, @cell, @rid, @u, @p, @us, @ca;
    ELSEIF form IN (12, 26) THEN EXECUTE s USING @cell, @cu, @cn, @tu, @dc, @ca, @now, @cell, @rid, @u, @p, @us, @ca;
    ELSEIF form = 24 THEN SET @tt = IF(@cell = 1, 'rabbit://nova:secret@mq1:5672/', 'rabbit://nova:secret@mq2:5672/'), @dd = IF(@cell = 1, 'mysql+pymysql://nova:secret@db1/nova', 'mysql+pymysql://nova:secret@db2/nova'); EXECUTE s USING @cell, @cu, @cn, @tt, @dd, @ca, @now, @cell, @rid, @u, @p, @us, @ca;
    ELSEIF form = 25 THEN SET @tt = MD5(IF(@cell = 1, 'rabbit://nova:secret@mq1:5672/', 'rabbit://nova:secret@mq2:5672/')), @dd = MD5(IF(@cell = 1, 'mysql+pymysql://nova:secret@db1/nova', 'mysql+pymysql://nova:secret@db2/nova')); EXECUTE s USING @cell, @cu, @cn, @tt, @dd, @ca, @now, @cell, @rid, @u, @p, @us, @ca;
    ELSEIF form = 21 THEN EXECUTE s USING @cell, @now, @cell, @rid, @u, @p, @us, @ca;
    ELSE EXECUTE s USING @now, @cell, @u, @u, @rid, @p, @us, @ca;
    END IF;
    IF ROW_COUNT() <> 1 THEN SIGNAL SQLSTATE '45000' SET MESSAGE_TEXT = 'no row matched'; END IF;
    SET i = i + 1;
  END WHILE;
  SELECT form, n, TIMESTAMPDIFF(MICROSECOND, @t0, NOW(6)) / n AS us_per_execution;
  DEALLOCATE PREPARE s;
END //
DELIMITER ;
