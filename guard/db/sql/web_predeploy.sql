-- `guard serve`: predeploy runs by verdict, from guard's history.
SELECT outcome, count(*) FROM guard.history_events WHERE kind = 'predeploy' GROUP BY outcome ORDER BY outcome
