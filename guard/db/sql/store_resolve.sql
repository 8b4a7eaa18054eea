-- Resolve the open findings in scope that this check did not see again: everything not refreshed
-- since the check started. A NULL kinds or subjects array means the whole check (a sweep).
WITH resolved AS (
    UPDATE guard.findings
    SET resolved_at = now()
    WHERE resolved_at IS NULL
      AND check_name = %(check)s
      AND (%(kinds)s::text[] IS NULL OR kind = ANY(%(kinds)s::text[]))
      AND (%(subjects)s::text[] IS NULL OR subject = ANY(%(subjects)s::text[]))
      AND last_seen < %(since)s
    RETURNING id
), announced AS (
    INSERT INTO guard.notifications (finding_id, event)
    SELECT id, 'resolved' FROM resolved
)
SELECT count(*) FROM resolved
