-- `guard serve`: predeploy runs by verdict, from guard's history: the events kept plus those forgotten
-- after HISTORY_DAYS (guard.history_forgotten, since version 9), so the counter never goes down.
SELECT outcome, sum(n)::bigint
FROM (
    SELECT outcome, count(*) AS n FROM guard.history_events WHERE kind = 'predeploy' GROUP BY outcome
    UNION ALL
    SELECT outcome, events FROM guard.history_forgotten WHERE kind = 'predeploy'
) AS runs
GROUP BY outcome
ORDER BY outcome
