-- Open or refresh every failing finding; announce only the ones that were not open already.
-- (xmax = 0) is true for a freshly inserted row and false for one ON CONFLICT updated. last_seen is
-- the seen parameter, when the check read its data (not now(): a transaction may have waited for
-- locks first), and never moves back.
WITH incoming AS (
    SELECT * FROM unnest(%(checks)s::text[], %(kinds)s::text[], %(subjects)s::text[],
                         %(messages)s::text[], %(paths)s::text[], %(details)s::jsonb[])
        AS f(check_name, kind, subject, message, path, detail)
), upserted AS (
    INSERT INTO guard.findings AS g (check_name, kind, subject, message, path, detail, last_seen)
    SELECT check_name, kind, subject, message, path, detail, %(seen)s::timestamptz FROM incoming
    ON CONFLICT (check_name, kind, subject) WHERE resolved_at IS NULL DO UPDATE
    SET last_seen = greatest(g.last_seen, %(seen)s::timestamptz), occurrences = g.occurrences + 1,
        message = EXCLUDED.message, path = EXCLUDED.path, detail = EXCLUDED.detail
    RETURNING g.id, (g.xmax = 0) AS opened
), announced AS (
    INSERT INTO guard.notifications (finding_id, event)
    SELECT id, 'opened' FROM upserted WHERE opened
)
SELECT count(*) FILTER (WHERE opened), count(*) FILTER (WHERE NOT opened) FROM upserted
