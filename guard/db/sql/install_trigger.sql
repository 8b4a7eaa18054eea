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
-- SECURITY DEFINER (the app's roles need no rights on guard's schema) but, since version 4, without
-- `SET search_path`: a function's SET clause saves and restores the setting and rebuilds the search
-- path on every call, which was a measurable part of the cost per row. Nothing here depends on the
-- writer's search_path instead: tables, functions, types and operators are all schema-qualified
-- (OPERATOR(pg_catalog.=), ::pg_catalog.text), so a writer's own "=" can never run as guard's owner
-- (tests/integration/test_sync_install.py). Keep every new name in this body qualified.
CREATE OR REPLACE FUNCTION {function}() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER AS $guard$
BEGIN
    IF TG_OP OPERATOR(pg_catalog.=) 'INSERT'
       OR (TG_OP OPERATOR(pg_catalog.=) 'UPDATE'
           AND OLD.{pk}::pg_catalog.text OPERATOR(pg_catalog.=) NEW.{pk}::pg_catalog.text) THEN
        INSERT INTO guard.capture (tbl, row_key, old_path, new_path)
        VALUES ({table_name}, NEW.{pk}::pg_catalog.text, {old_path}, {new_path});
    ELSE
        -- a delete, or an update that moved the key: the old key went away, the new one arrived
        INSERT INTO guard.capture (tbl, row_key, old_path)
        VALUES ({table_name}, OLD.{pk}::pg_catalog.text, {old_path});
        IF TG_OP OPERATOR(pg_catalog.=) 'UPDATE' THEN
            INSERT INTO guard.capture (tbl, row_key, new_path)
            VALUES ({table_name}, NEW.{pk}::pg_catalog.text, {new_path});
        END IF;
    END IF;
    IF EXISTS (SELECT FROM guard.listener_state WHERE idle) THEN
        PERFORM pg_catalog.pg_notify('guard_outbox', '');
    END IF;
    RETURN NULL;
END
$guard$;
