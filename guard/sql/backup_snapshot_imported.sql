-- Whether pg_dump's session (named by its application_name) now holds our exported snapshot itself:
-- it is inside a transaction whose xmin is ours. The one snapshot-taking query pg_dump sends before
-- its transaction (set_config of search_path) is left out, so its moment cannot be taken for the import.
SELECT EXISTS (
    SELECT 1
    FROM pg_stat_activity dump
    WHERE dump.application_name = %s
      AND dump.xact_start IS NOT NULL
      AND dump.backend_xmin = (SELECT backend_xmin FROM pg_stat_activity WHERE pid = pg_backend_pid())
      AND dump.query NOT LIKE '%%set_config%%'
)
