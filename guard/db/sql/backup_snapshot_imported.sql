-- Whether pg_dump's session (named by its application_name) now holds our exported snapshot itself.
-- Before its import pg_dump runs single statements in transactions of their own (set_config, SETs,
-- `SELECT pg_is_in_recovery()`), and any of them may hold a snapshot whose xmin equals ours: seen
-- under load, the backup then ended its transaction too early and pg_dump's SET TRANSACTION SNAPSHOT
-- failed ("invalid snapshot identifier"). Its import runs in its one explicit transaction (BEGIN,
-- SET TRANSACTION ISOLATION LEVEL, SET TRANSACTION SNAPSHOT, then the dump's queries), where a
-- statement starts after its transaction did. So: a later statement of a multi-statement
-- transaction, holding our xmin, and not the import itself still running.
SELECT EXISTS (
    SELECT 1
    FROM pg_stat_activity dump
    WHERE dump.application_name = %s
      AND dump.xact_start IS NOT NULL
      AND dump.query_start > dump.xact_start
      AND dump.backend_xmin = (SELECT backend_xmin FROM pg_stat_activity WHERE pid = pg_backend_pid())
      AND NOT (dump.query ILIKE 'SET TRANSACTION%%' AND dump.state = 'active')
)
