-- Every user-visible piece of schema, one text line each, in a stable order; hashed into the manifest.
SELECT line FROM (
    SELECT concat_ws(' ', 'column', n.nspname, c.relname, c.relkind::text, a.attname,
                     format_type(a.atttypid, a.atttypmod), a.attnotnull::text,
                     pg_get_expr(d.adbin, d.adrelid)) AS line
    FROM pg_class c
    JOIN pg_namespace n ON n.oid = c.relnamespace
    JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped
    LEFT JOIN pg_attrdef d ON d.adrelid = c.oid AND d.adnum = a.attnum
    WHERE n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname NOT LIKE 'pg_toast%'
      AND c.relkind IN ('r', 'p', 'v', 'm', 'f')
    UNION ALL
    SELECT concat_ws(' ', 'constraint', n.nspname, cl.relname, co.conname, pg_get_constraintdef(co.oid))
    FROM pg_constraint co
    JOIN pg_class cl ON cl.oid = co.conrelid
    JOIN pg_namespace n ON n.oid = cl.relnamespace
    WHERE n.nspname NOT IN ('pg_catalog', 'information_schema')
    UNION ALL
    SELECT concat_ws(' ', 'index', schemaname, tablename, indexname, indexdef)
    FROM pg_indexes
    WHERE schemaname NOT IN ('pg_catalog', 'information_schema')
) AS schema_lines
ORDER BY line COLLATE "C"
