-- Record a batch of changes of one run, in the order given.
INSERT INTO guard.repair_changes (run_id, subject, before, after)
SELECT %(run)s, s, b, a
FROM unnest(%(subjects)s::text[], %(befores)s::text[], %(afters)s::text[]) WITH ORDINALITY AS c(s, b, a, n)
ORDER BY n
