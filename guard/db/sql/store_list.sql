SELECT id, check_name, kind, subject, message, path, first_seen, last_seen, occurrences, resolved_at
FROM guard.findings
WHERE NOT %(open_only)s OR resolved_at IS NULL
ORDER BY resolved_at IS NOT NULL, check_name, kind, subject, id
