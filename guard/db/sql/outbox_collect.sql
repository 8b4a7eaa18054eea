-- Move a batch of captured changes into the coalesced outbox, in one transaction: the capture rows
-- are deleted and their outbox rows written together, so a change is never lost nor moved twice.
-- SKIP LOCKED lets several listeners collect at once; each takes disjoint capture rows. Changes to
-- one key fold into a single outbox row (one that is not dispatched yet, if there is one): changes
-- counts them, paths is every file path they touched, old_path the first old path and new_path the
-- last new path. Keys are upserted in sorted order so two collectors waiting on each other's keys
-- cannot deadlock.
-- Two collectors can merge one key's changes out of order (the one holding the older capture rows
-- commits last), so a merge keeps whichever old_path has the lower seq and whichever new_path has the
-- higher one instead of trusting its own turn. Workers use only paths (a set) and re-read the row, so
-- checks were right either way; this keeps the recorded old and new paths true.
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
           min(seq) FILTER (WHERE old_path IS NOT NULL) AS old_seq,
           (array_agg(new_path ORDER BY seq DESC))[1] AS new_path,
           max(seq) AS new_seq,
           ARRAY(
               SELECT DISTINCT p FROM unnest(array_agg(old_path) || array_agg(new_path)) AS p
               WHERE p IS NOT NULL
           ) AS paths
    FROM moved
    GROUP BY tbl, row_key
),
upserted AS (
    INSERT INTO guard.outbox AS o (tbl, row_key, old_path, old_seq, new_path, new_seq, paths, changes)
    SELECT tbl, row_key, old_path, old_seq, new_path, new_seq, paths, changes
    FROM keyed ORDER BY tbl, row_key
    ON CONFLICT (tbl, row_key) WHERE dispatched_at IS NULL DO UPDATE
    SET changes = o.changes + EXCLUDED.changes,
        old_path = CASE WHEN o.old_seq IS NULL OR EXCLUDED.old_seq < o.old_seq
                        THEN coalesce(EXCLUDED.old_path, o.old_path) ELSE o.old_path END,
        old_seq = least(o.old_seq, EXCLUDED.old_seq),
        new_path = CASE WHEN EXCLUDED.new_seq > o.new_seq THEN EXCLUDED.new_path ELSE o.new_path END,
        new_seq = greatest(o.new_seq, EXCLUDED.new_seq),
        paths = ARRAY(SELECT DISTINCT unnest(o.paths || EXCLUDED.paths))
    RETURNING 1
)
SELECT (SELECT count(*) FROM moved), (SELECT count(*) FROM upserted)
