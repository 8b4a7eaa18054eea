-- The current slug of some rows, locked until the transaction ends (undo compares, then writes).
SELECT t.{pk}::text, t.{slug}::text FROM {table} AS t
WHERE t.{pk} = ANY(%(ids)s)
FOR UPDATE
