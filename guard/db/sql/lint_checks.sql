-- The CHECK constraints of the tables the session sees unqualified: SET NOT NULL skips its scan
-- after a validated one that proves the column NOT NULL.
SELECT c.relname, k.conname, k.convalidated, pg_get_expr(k.conbin, k.conrelid)
FROM pg_constraint k
JOIN pg_class c ON c.oid = k.conrelid
WHERE k.contype = 'c'
  AND pg_table_is_visible(c.oid)
