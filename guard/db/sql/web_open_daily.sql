-- `guard serve`'s chart: findings opened and resolved per UTC day since a day, and how many were open
-- before it; the open count at the end of each day follows by adding them up.
SELECT 'before'::text, NULL::date,
       count(*) FILTER (WHERE first_seen < %(since)s AND (resolved_at IS NULL OR resolved_at >= %(since)s))
FROM guard.findings
UNION ALL
SELECT 'opened', (first_seen AT TIME ZONE 'UTC')::date, count(*)
FROM guard.findings WHERE first_seen >= %(since)s GROUP BY 2
UNION ALL
SELECT 'resolved', (resolved_at AT TIME ZONE 'UTC')::date, count(*)
FROM guard.findings WHERE resolved_at >= %(since)s GROUP BY 2
