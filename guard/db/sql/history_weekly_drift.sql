-- Per ISO week: drift findings open at any moment of the week (rows of guard.findings: one first seen
-- that week, or one still open from an earlier week, so a drift left unfixed is an incident every week
-- it stays; a finding resolved and found again is a new row), and the drift checks that ran (a drift
-- sweep that finished, a predeploy that ran drift), which tell a quiet week from a week nobody looked.
WITH weeks AS (
    SELECT generate_series(
        date_trunc('week', %(since)s::timestamptz AT TIME ZONE 'UTC'),
        %(until)s::timestamptz AT TIME ZONE 'UTC' - interval '1 microsecond',
        interval '1 week'
    ) AS week
)
SELECT week, sum(opened)::bigint, sum(ran)::bigint FROM (
    SELECT w.week, 1 AS opened, 0 AS ran
    FROM weeks AS w
    JOIN guard.findings AS f
      ON f.check_name = 'drift'
     AND f.first_seen AT TIME ZONE 'UTC' < w.week + interval '1 week'
     AND (f.resolved_at IS NULL OR f.resolved_at AT TIME ZONE 'UTC' >= w.week)
    UNION ALL
    SELECT date_trunc('week', at AT TIME ZONE 'UTC'), 0, 1
    FROM guard.history_events
    WHERE at >= %(since)s AND at < %(until)s
      AND ((kind = 'sweep' AND outcome = 'ok' AND details->>'check' = 'drift')
           OR (kind = 'predeploy' AND details->'checks' @> '["drift"]'::jsonb))
) AS seen
GROUP BY week
