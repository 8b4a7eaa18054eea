-- `guard serve`: per check and kind, the open findings, every finding ever opened, and the resolved ones.
-- guard's own ledger only; no table of the app's is read.
SELECT check_name, kind,
       count(*) FILTER (WHERE resolved_at IS NULL),
       count(*),
       count(*) FILTER (WHERE resolved_at IS NOT NULL)
FROM guard.findings
GROUP BY check_name, kind
ORDER BY check_name, kind
