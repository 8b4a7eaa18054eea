-- `guard serve`: each process's newest heartbeat (guard.heartbeats, one row per process instance).
SELECT process, extract(epoch FROM max(seen_at))::double precision, count(*)
FROM guard.heartbeats
GROUP BY process
ORDER BY process
