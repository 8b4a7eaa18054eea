-- Whether a rule's column is NOT NULL already, and its type category ('S' for strings).
SELECT a.attnotnull, t.typcategory
FROM pg_attribute a
JOIN pg_type t ON t.oid = a.atttypid
WHERE a.attrelid = to_regclass(quote_ident(%(table)s))
  AND a.attname = %(column)s
  AND a.attnum > 0
  AND NOT a.attisdropped
