-- A cheap fingerprint of what a restore changes (watchers/restores.py reads it every few seconds): the
-- database's oid (a re-created database has a new one), every table's columns with their types, the
-- names of its indexes and constraints, and which of guard's capture triggers are in place. Catalog
-- reads only, no table data; guard's own schema is left out (only its triggers count), so the listener
-- re-creating its bookkeeping does not change it. _prisma_migrations' rows are read apart
-- (schema_fingerprint_history.sql), since the table may not exist.
SELECT md5(concat_ws('|',
    (SELECT oid::text FROM pg_database WHERE datname = current_database()),
    (SELECT string_agg(n.nspname || '.' || c.relname || '.' || a.attname || ':'
                              || format_type(a.atttypid, a.atttypmod), ',' ORDER BY n.nspname, c.relname, a.attname)
     FROM pg_attribute a
     JOIN pg_class c ON c.oid = a.attrelid
     JOIN pg_namespace n ON n.oid = c.relnamespace
     WHERE c.relkind IN ('r', 'p', 'v', 'm') AND a.attnum > 0 AND NOT a.attisdropped
       AND n.nspname NOT IN ('pg_catalog', 'information_schema', %(guard_schema)s)
       AND n.nspname NOT LIKE 'pg\_%%'),
    (SELECT string_agg(n.nspname || '.' || c.relname, ',' ORDER BY n.nspname, c.relname)
     FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
     WHERE c.relkind IN ('i', 'I')
       AND n.nspname NOT IN ('pg_catalog', 'information_schema', %(guard_schema)s)
       AND n.nspname NOT LIKE 'pg\_%%'),
    (SELECT string_agg(n.nspname || '.' || k.conname, ',' ORDER BY n.nspname, k.conname)
     FROM pg_constraint k JOIN pg_namespace n ON n.oid = k.connamespace
     WHERE n.nspname NOT IN ('pg_catalog', 'information_schema', %(guard_schema)s)
       AND n.nspname NOT LIKE 'pg\_%%'),
    (SELECT string_agg(c.relname || '.' || t.tgname, ',' ORDER BY c.relname, t.tgname)
     FROM pg_trigger t
     JOIN pg_class c ON c.oid = t.tgrelid
     JOIN pg_proc f ON f.oid = t.tgfoid
     JOIN pg_namespace fn ON fn.oid = f.pronamespace
     WHERE t.tgname = ANY(%(guard_triggers)s) AND fn.nspname = %(guard_schema)s)
)), to_regclass('guard.listener_state') IS NOT NULL, to_regclass('_prisma_migrations') IS NOT NULL
