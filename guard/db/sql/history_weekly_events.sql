-- Events per ISO week (Monday 00:00 UTC), kind and outcome, in [since, until).
SELECT date_trunc('week', at AT TIME ZONE 'UTC') AS week, kind, outcome, count(*)
FROM guard.history_events
WHERE at >= %(since)s AND at < %(until)s
GROUP BY 1, 2, 3
