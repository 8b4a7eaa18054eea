-- `guard serve`: which of guard's own tables exist (the ones later versions add may not yet).
SELECT to_regclass('guard.findings') IS NOT NULL,
       to_regclass('guard.heartbeats') IS NOT NULL,
       to_regclass('guard.canary') IS NOT NULL,
       to_regclass('guard.history_events') IS NOT NULL,
       to_regclass('guard.task_runs') IS NOT NULL,
       to_regclass('guard.finding_tally_log') IS NOT NULL,
       to_regclass('guard.history_forgotten') IS NOT NULL,
       extract(epoch FROM now())::double precision
