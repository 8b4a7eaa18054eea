-- A valid unique index (or key) on exactly this column over every row, other than the one guard names.
SELECT c.relname
FROM pg_index i
JOIN pg_class c ON c.oid = i.indexrelid
JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = i.indkey[0]
WHERE i.indrelid = to_regclass(quote_ident(%(table)s))
  AND a.attname = %(column)s
  AND i.indisunique AND i.indisvalid AND i.indnatts = 1
  AND i.indpred IS NULL AND i.indexprs IS NULL
  AND c.relname <> %(ours)s
ORDER BY c.relname
LIMIT 1
