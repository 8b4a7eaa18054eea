-- Indexes that no constraint owns, defined without their names (the text after "CREATE ... INDEX name ON "),
-- and whether each is valid (a failed CREATE INDEX CONCURRENTLY leaves one with indisvalid = false).
SELECT n.nspname, t.relname, i.relname, x.indisunique,
       substr(pg_get_indexdef(x.indexrelid),
              length('CREATE ' || CASE WHEN x.indisunique THEN 'UNIQUE ' ELSE '' END
                     || 'INDEX ' || quote_ident(i.relname) || ' ON ') + 1),
       x.indisvalid
FROM pg_index x
JOIN pg_class i ON i.oid = x.indexrelid
JOIN pg_class t ON t.oid = x.indrelid
JOIN pg_namespace n ON n.oid = t.relnamespace
WHERE t.relkind IN ('r', 'p', 'm')
  AND n.nspname = ANY(%(schemas)s)
  AND t.relname <> '_prisma_migrations'
  AND NOT EXISTS (SELECT 1 FROM pg_constraint k
                  WHERE k.conindid = x.indexrelid AND k.contype IN ('p', 'u', 'x'))
  AND NOT EXISTS (SELECT 1 FROM pg_depend e
                  WHERE e.classid = 'pg_class'::regclass AND e.objid = t.oid AND e.deptype = 'e')
ORDER BY x.indexrelid
