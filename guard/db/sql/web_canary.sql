-- `guard serve`: the newest canary a worker saw, its latency, and when the newest one was sent.
SELECT (SELECT extract(epoch FROM seen_at)::double precision FROM guard.canary
          WHERE seen_at IS NOT NULL ORDER BY id DESC LIMIT 1),
       (SELECT latency_seconds FROM guard.canary WHERE seen_at IS NOT NULL ORDER BY id DESC LIMIT 1),
       (SELECT extract(epoch FROM sent_at)::double precision FROM guard.canary ORDER BY id DESC LIMIT 1)
