-- User triggers (not the ones constraints create) with their full definition and enabled state.
-- guard's own capture triggers (one of its names, calling a function in its schema; see
-- guard/install.py) are not the application's schema and are never drift.
SELECT n.nspname, c.relname, g.tgname, pg_get_triggerdef(g.oid), g.tgenabled
FROM pg_trigger g
JOIN pg_class c ON c.oid = g.tgrelid
JOIN pg_namespace n ON n.oid = c.relnamespace
JOIN pg_proc f ON f.oid = g.tgfoid
JOIN pg_namespace fn ON fn.oid = f.pronamespace
WHERE NOT g.tgisinternal
  AND n.nspname = ANY(%(schemas)s)
  AND NOT (g.tgname = ANY(%(guard_triggers)s) AND fn.nspname = %(guard_schema)s)
  AND NOT EXISTS (SELECT 1 FROM pg_depend d
                  WHERE d.classid = 'pg_class'::regclass AND d.objid = c.oid AND d.deptype = 'e')
ORDER BY g.oid
