-- Whether pg_dump's session (named by its application_name) now holds our exported snapshot itself.
-- Before its import pg_dump sends only SET statements, BEGIN and set_config(), and any of them may
-- hold a catalog snapshot whose xmin equals ours (seen under load: the backup then ended its
-- transaction too early and pg_dump's SET TRANSACTION SNAPSHOT failed). So the session must also
-- be past the import: its SET TRANSACTION SNAPSHOT finished (idle in its transaction), or it runs
-- a later statement of that transaction.
SELECT EXISTS (
    SELECT 1
    FROM pg_stat_activity dump
    WHERE dump.application_name = %s
      AND dump.xact_start IS NOT NULL
      AND dump.backend_xmin = (SELECT backend_xmin FROM pg_stat_activity WHERE pid = pg_backend_pid())
      AND (
          (dump.query ILIKE 'SET TRANSACTION SNAPSHOT%%' AND dump.state = 'idle in transaction')
          OR (
              dump.query NOT ILIKE 'SET %%'
              AND dump.query NOT ILIKE 'BEGIN%%'
              AND dump.query NOT ILIKE '%%set_config%%'
          )
      )
)
