-- A foreign key of exactly table(column) -> target(target_column), and whether it is validated.
SELECT c.conname, c.convalidated
FROM pg_constraint c
JOIN pg_attribute a ON a.attrelid = c.conrelid AND a.attname = %(column)s
JOIN pg_attribute r ON r.attrelid = c.confrelid AND r.attname = %(target_column)s
WHERE c.contype = 'f'
  AND c.conrelid = to_regclass(quote_ident(%(table)s))
  AND c.confrelid = to_regclass(quote_ident(%(target)s))
  AND c.conkey = ARRAY[a.attnum]
  AND c.confkey = ARRAY[r.attnum]
ORDER BY c.conname
LIMIT 1
