-- `guard serve`: predeploy runs by verdict on a version 7 or 8 schema (no guard.history_forgotten yet).
SELECT outcome, count(*) FROM guard.history_events WHERE kind = 'predeploy' GROUP BY outcome ORDER BY outcome
