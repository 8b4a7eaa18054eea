-- The state of the constraints and indexes guard names on one table: valid, not_valid or invalid.
SELECT conname, CASE WHEN convalidated THEN 'valid' ELSE 'not_valid' END
FROM pg_constraint
WHERE conrelid = to_regclass(quote_ident(%(table)s)) AND conname = ANY(%(names)s)
UNION ALL
SELECT c.relname, CASE WHEN i.indisvalid THEN 'valid' ELSE 'invalid' END
FROM pg_index i
JOIN pg_class c ON c.oid = i.indexrelid
WHERE i.indrelid = to_regclass(quote_ident(%(table)s)) AND c.relname = ANY(%(names)s)
