-- Rewrite one batch of slugs, each only if it still holds the value the plan read (a row the app
-- fixed or changed since is left alone), and say which rows changed from what to what.
UPDATE {table} AS t SET {slug} = v.new
FROM unnest(%(ids)s, %(olds)s::text[], %(news)s::text[]) AS v(id, old, new)
WHERE t.{pk} = v.id AND t.{slug} IS NOT DISTINCT FROM v.old
RETURNING v.id::text, v.old, v.new
