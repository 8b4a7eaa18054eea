-- One capture function per watched table, composed by guard/install.py with psycopg.sql (identifiers
-- quoted by the driver). Row-level: the app writes one row per statement, and a row trigger avoids
-- building transition tables for each of them (measured cheaper; see bench/RESULTS.md). The UPDATE
-- trigger's WHEN clause already skipped updates that leave the rules' columns alone.
-- pg_notify is only the wake-up and is sent only while a listener is idle: at commit it takes
-- PostgreSQL's global notify lock, which would serialize every writer. The outbox row is the durable
-- record; a busy listener drains without waiting, and an idle one also polls (watchers/listener.py).
CREATE OR REPLACE FUNCTION {function}() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $guard$
BEGIN
    IF TG_OP = 'INSERT' OR (TG_OP = 'UPDATE' AND OLD.{pk} IS NOT DISTINCT FROM NEW.{pk}) THEN
        INSERT INTO guard.outbox AS o (tbl, row_key, old_path, new_path, paths)
        VALUES ({table_name}, NEW.{pk}::text, {old_path}, {new_path},
                array_remove(ARRAY[{old_path}, {new_path}], NULL))
        ON CONFLICT (tbl, row_key) WHERE dispatched_at IS NULL DO UPDATE
        SET changes = o.changes + 1, old_path = coalesce(o.old_path, EXCLUDED.old_path),
            new_path = EXCLUDED.new_path,
            paths = ARRAY(SELECT DISTINCT unnest(o.paths || EXCLUDED.paths));
    ELSE
        -- a delete, or an update that moved the key: the old key went away, the new one arrived
        INSERT INTO guard.outbox AS o (tbl, row_key, old_path, paths)
        VALUES ({table_name}, OLD.{pk}::text, {old_path}, array_remove(ARRAY[{old_path}], NULL))
        ON CONFLICT (tbl, row_key) WHERE dispatched_at IS NULL DO UPDATE
        SET changes = o.changes + 1, old_path = coalesce(o.old_path, EXCLUDED.old_path),
            new_path = NULL,
            paths = ARRAY(SELECT DISTINCT unnest(o.paths || EXCLUDED.paths));
        IF TG_OP = 'UPDATE' THEN
            INSERT INTO guard.outbox AS o (tbl, row_key, new_path, paths)
            VALUES ({table_name}, NEW.{pk}::text, {new_path}, array_remove(ARRAY[{new_path}], NULL))
            ON CONFLICT (tbl, row_key) WHERE dispatched_at IS NULL DO UPDATE
            SET changes = o.changes + 1, new_path = EXCLUDED.new_path,
                paths = ARRAY(SELECT DISTINCT unnest(o.paths || EXCLUDED.paths));
        END IF;
    END IF;
    IF EXISTS (SELECT 1 FROM guard.listener_state WHERE idle) THEN
        PERFORM pg_notify('guard_outbox', '');
    END IF;
    RETURN NULL;
END
$guard$;
