-- One capture function per watched table, composed by guard/install.py with psycopg.sql (identifiers
-- quoted by the driver). Statement-level with transition tables: a bulk write is one INSERT here.
-- {relevant_old}/{relevant_new} are the columns the rules read; an UPDATE that leaves them alone is
-- not queued. pg_notify is only the wake-up: the outbox row is the durable record.
CREATE OR REPLACE FUNCTION {function}() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $guard$
DECLARE
    queued integer;
BEGIN
    IF TG_OP = 'INSERT' THEN
        INSERT INTO guard.outbox AS o (tbl, row_key, new_path, paths)
        SELECT {table_name}, n.{pk}::text, {new_path}, array_remove(ARRAY[{new_path}], NULL)
        FROM guard_new n
        ON CONFLICT (tbl, row_key) WHERE dispatched_at IS NULL DO UPDATE
        SET changes = o.changes + 1, new_path = EXCLUDED.new_path,
            paths = ARRAY(SELECT DISTINCT unnest(o.paths || EXCLUDED.paths));
    ELSIF TG_OP = 'UPDATE' THEN
        INSERT INTO guard.outbox AS o (tbl, row_key, old_path, new_path, paths)
        SELECT {table_name}, coalesce(n.{pk}, d.{pk})::text, {old_path}, {new_path},
               array_remove(ARRAY[{old_path}, {new_path}], NULL)
        FROM guard_new n FULL JOIN guard_old d ON d.{pk} = n.{pk}
        WHERE n.{pk} IS NULL OR d.{pk} IS NULL OR ({relevant_old}) IS DISTINCT FROM ({relevant_new})
        ON CONFLICT (tbl, row_key) WHERE dispatched_at IS NULL DO UPDATE
        SET changes = o.changes + 1, old_path = coalesce(o.old_path, EXCLUDED.old_path),
            new_path = EXCLUDED.new_path,
            paths = ARRAY(SELECT DISTINCT unnest(o.paths || EXCLUDED.paths));
    ELSE
        INSERT INTO guard.outbox AS o (tbl, row_key, old_path, paths)
        SELECT {table_name}, d.{pk}::text, {old_path}, array_remove(ARRAY[{old_path}], NULL)
        FROM guard_old d
        ON CONFLICT (tbl, row_key) WHERE dispatched_at IS NULL DO UPDATE
        SET changes = o.changes + 1, old_path = coalesce(o.old_path, EXCLUDED.old_path),
            new_path = NULL,
            paths = ARRAY(SELECT DISTINCT unnest(o.paths || EXCLUDED.paths));
    END IF;
    GET DIAGNOSTICS queued = ROW_COUNT;
    IF queued > 0 THEN
        PERFORM pg_notify('guard_outbox', '');
    END IF;
    RETURN NULL;
END
$guard$;
