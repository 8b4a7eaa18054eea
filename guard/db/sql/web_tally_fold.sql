-- `guard serve`: fold the appended tally rows into the tally, in key order (two folding servers take
-- the tally's row locks in the same order). Only run under a transaction-level advisory lock.
WITH moved AS (
    DELETE FROM guard.finding_tally_log RETURNING check_name, kind, opened, resolved
)
INSERT INTO guard.finding_tally AS t (check_name, kind, opened, resolved)
SELECT check_name, kind, sum(opened), sum(resolved) FROM moved GROUP BY check_name, kind
ORDER BY check_name, kind
ON CONFLICT (check_name, kind)
DO UPDATE SET opened = t.opened + EXCLUDED.opened, resolved = t.resolved + EXCLUDED.resolved
