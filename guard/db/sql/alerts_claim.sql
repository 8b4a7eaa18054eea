-- The notices a transport has not sent yet, oldest first, locked so two workers never send one twice.
SELECT n.id, n.event, f.id, f.check_name, f.kind, f.subject, f.message, f.path, f.first_seen
FROM guard.notifications n
JOIN guard.findings f ON f.id = n.finding_id
WHERE n.{column} IS NULL AND n.event = ANY(%(events)s)
ORDER BY n.id
LIMIT %(limit)s
FOR UPDATE OF n SKIP LOCKED
