-- Per ISO week: the days a daily backup should have run and left no backup event at all (beat or
-- its workers were down, or the run died before it could record): after the first backup ever
-- recorded, before today (today's may not have run yet), in [since_day, until_day).
WITH first AS (
    SELECT min((at AT TIME ZONE 'UTC')::date) AS day FROM guard.history_events WHERE kind = 'backup'
), days AS (
    SELECT d::date AS day
    FROM generate_series(
        %(since_day)s::date, LEAST(%(until_day)s::date, %(today)s::date) - 1, interval '1 day'
    ) AS d
)
SELECT date_trunc('week', days.day::timestamp) AS week, count(*)
FROM days CROSS JOIN first
WHERE first.day IS NOT NULL AND days.day > first.day
  AND NOT EXISTS (
      SELECT FROM guard.history_events AS e
      WHERE e.kind = 'backup'
        AND e.at >= days.day::timestamp AT TIME ZONE 'UTC'
        AND e.at < (days.day + 1)::timestamp AT TIME ZONE 'UTC'
  )
GROUP BY 1
