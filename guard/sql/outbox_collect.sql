-- Move a batch of captured changes into the coalesced outbox, in one transaction: the capture rows
-- are deleted and their outbox rows written together, so a change is never lost nor moved twice.
-- SKIP LOCKED lets several listeners collect at once; each takes disjoint capture rows. Changes to
-- one key fold into a single outbox row (one that is not dispatched yet, if there is one): changes
-- counts them, paths is every file path they touched, old_path the first and new_path the last.
-- Keys are upserted in sorted order so two collectors waiting on each other's keys cannot deadlock.
WITH moved AS (
    DELETE FROM guard.capture
    WHERE seq IN (
        SELECT seq FROM guard.capture ORDER BY seq LIMIT %(limit)s FOR UPDATE SKIP LOCKED
    )
    RETURNING seq, tbl, row_key, old_path, new_path
),
keyed AS (
    SELECT tbl, row_key, count(*)::integer AS changes,
           (array_agg(old_path ORDER BY seq) FILTER (WHERE old_path IS NOT NULL))[1] AS old_path,
           (array_agg(new_path ORDER BY seq DESC))[1] AS new_path,
           ARRAY(
               SELECT DISTINCT p FROM unnest(array_agg(old_path) || array_agg(new_path)) AS p
               WHERE p IS NOT NULL
           ) AS paths
    FROM moved
    GROUP BY tbl, row_key
),
upserted AS (
    INSERT INTO guard.outbox AS o (tbl, row_key, old_path, new_path, paths, changes)
    SELECT tbl, row_key, old_path, new_path, paths, changes FROM keyed ORDER BY tbl, row_key
    ON CONFLICT (tbl, row_key) WHERE dispatched_at IS NULL DO UPDATE
    SET changes = o.changes + EXCLUDED.changes, old_path = coalesce(o.old_path, EXCLUDED.old_path),
        new_path = EXCLUDED.new_path,
        paths = ARRAY(SELECT DISTINCT unnest(o.paths || EXCLUDED.paths))
    RETURNING 1
)
SELECT (SELECT count(*) FROM moved), (SELECT count(*) FROM upserted)
