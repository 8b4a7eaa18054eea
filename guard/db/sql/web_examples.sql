-- `guard serve`'s page: the newest few open findings of each check and kind (guard's ledger only).
SELECT check_name, kind, subject, path, message, extract(epoch FROM last_seen)::double precision
FROM (
    SELECT f.*, row_number() OVER (PARTITION BY check_name, kind ORDER BY last_seen DESC, id DESC) AS n
    FROM guard.findings f
    WHERE resolved_at IS NULL
) newest
WHERE n <= %(per_kind)s
ORDER BY check_name, kind, n
