-- Resolve the open findings of these kinds and subjects that this check did not see again (a row
-- or path check). Written without store_resolve.sql's "NULL means all", so that every plan, the
-- generic one a cached statement may get included, can look the subjects up in an index
-- (findings_open_subject, or findings_open_key on all three columns). store_resolve.sql's generic
-- plan cannot use an index for "$3 IS NULL OR subject = ANY($3)" and read every open finding of
-- the check instead, so each row check cost more the more findings were open.
WITH resolved AS (
    UPDATE guard.findings
    SET resolved_at = now()
    WHERE resolved_at IS NULL
      AND check_name = %(check)s
      AND kind = ANY(%(kinds)s::text[])
      AND subject = ANY(%(subjects)s::text[])
      AND last_seen < %(since)s
    RETURNING id
), announced AS (
    INSERT INTO guard.notifications (finding_id, event)
    SELECT id, 'resolved' FROM resolved
)
SELECT count(*) FROM resolved
