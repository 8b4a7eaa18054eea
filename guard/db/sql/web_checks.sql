-- `guard serve`: each check's sweeps as the workers record them in guard.task_runs (task 'sweep <check>'):
-- the last start, the last clean finish (a run that raised is never marked finished) and how long that
-- finished run took.
SELECT substr(task, 7) AS check_name,
       extract(epoch FROM max(coalesce(finished_at, started_at)))::double precision,
       extract(epoch FROM max(finished_at))::double precision,
       (array_agg(extract(epoch FROM finished_at - started_at)::double precision ORDER BY finished_at DESC)
            FILTER (WHERE finished_at IS NOT NULL))[1]
FROM guard.task_runs
WHERE starts_with(task, 'sweep ')
GROUP BY 1
ORDER BY 1
