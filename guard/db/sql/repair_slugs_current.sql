-- The current slug of some rows, to compare with what a repair wrote before undoing it.
SELECT t.{pk}::text, t.{slug}::text FROM {table} AS t
WHERE t.{pk} = ANY(%(ids)s)
