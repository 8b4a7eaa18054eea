-- One capture function per watched table, composed by guard/install.py with psycopg.sql (identifiers
-- quoted by the driver). Row-level: the app writes one row per statement, and a row trigger avoids
-- building transition tables for each of them (measured cheaper; see bench/RESULTS.md). The UPDATE
-- trigger's WHEN clause already skipped updates that leave the rules' columns alone.
-- It only appends to guard.capture (version 3): no ON CONFLICT, no array work, one index entry. The
-- coalescing the issue asks for happens when the listener moves the capture rows into guard.outbox
-- (outbox_collect.sql), still durable because the capture row commits with the app's write. Moving it
-- there took the writer's outbox upsert (a unique-index probe, a heap row or update and three index
-- entries per change) off the app's path; see bench/RESULTS.md.
-- pg_notify is only the wake-up and is sent only while a listener is idle: at commit it takes
-- PostgreSQL's global notify lock, which would serialize every writer. A busy listener drains
-- without waiting, and an idle one also polls (watchers/listener.py).
CREATE OR REPLACE FUNCTION {function}() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $guard$
BEGIN
    IF TG_OP = 'INSERT' OR (TG_OP = 'UPDATE' AND OLD.{pk} IS NOT DISTINCT FROM NEW.{pk}) THEN
        INSERT INTO guard.capture (tbl, row_key, old_path, new_path)
        VALUES ({table_name}, NEW.{pk}::text, {old_path}, {new_path});
    ELSE
        -- a delete, or an update that moved the key: the old key went away, the new one arrived
        INSERT INTO guard.capture (tbl, row_key, old_path) VALUES ({table_name}, OLD.{pk}::text, {old_path});
        IF TG_OP = 'UPDATE' THEN
            INSERT INTO guard.capture (tbl, row_key, new_path) VALUES ({table_name}, NEW.{pk}::text, {new_path});
        END IF;
    END IF;
    IF EXISTS (SELECT 1 FROM guard.listener_state WHERE idle) THEN
        PERFORM pg_notify('guard_outbox', '');
    END IF;
    RETURN NULL;
END
$guard$;
