-- Every column of the tables the session sees unqualified, with what the migration lint needs of it:
-- the (element) type name and atttypmod the rewrite rule compares, how to show it, and NOT NULL.
SELECT c.relname,
       a.attname,
       CASE WHEN t.typelem <> 0 AND t.typlen = -1 THEN e.typname ELSE t.typname END,
       a.atttypmod,
       t.typelem <> 0 AND t.typlen = -1,
       format_type(a.atttypid, a.atttypmod),
       a.attnotnull
FROM pg_attribute a
JOIN pg_class c ON c.oid = a.attrelid
JOIN pg_type t ON t.oid = a.atttypid
LEFT JOIN pg_type e ON e.oid = t.typelem
WHERE c.relkind IN ('r', 'p')
  AND a.attnum > 0
  AND NOT a.attisdropped
  AND pg_table_is_visible(c.oid)
