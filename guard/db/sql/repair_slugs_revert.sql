-- Put back one run's slugs, each only where the row still holds what the repair wrote.
UPDATE {table} AS t SET {slug} = v.old
FROM unnest(%(ids)s, %(olds)s::text[], %(news)s::text[]) AS v(id, old, new)
WHERE t.{pk} = v.id AND t.{slug} IS NOT DISTINCT FROM v.new
RETURNING v.id::text
