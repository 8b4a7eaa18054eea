-- Per ISO week: drift findings opened (rows of guard.findings: a finding resolved and found again is a
-- new row, a new incident), and the drift checks that ran (a drift sweep that finished, a predeploy
-- that ran drift), which tell a quiet week from a week nobody looked.
SELECT week, sum(opened)::bigint, sum(ran)::bigint FROM (
    SELECT date_trunc('week', first_seen AT TIME ZONE 'UTC') AS week, 1 AS opened, 0 AS ran
    FROM guard.findings
    WHERE check_name = 'drift' AND first_seen >= %(since)s AND first_seen < %(until)s
    UNION ALL
    SELECT date_trunc('week', at AT TIME ZONE 'UTC'), 0, 1
    FROM guard.history_events
    WHERE at >= %(since)s AND at < %(until)s
      AND ((kind = 'sweep' AND outcome = 'ok' AND details->>'check' = 'drift')
           OR (kind = 'predeploy' AND details->'checks' @> '["drift"]'::jsonb))
) AS seen
GROUP BY week
