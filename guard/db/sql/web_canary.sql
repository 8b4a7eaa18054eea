-- `guard serve`: the newest canary that came through (as guard.continuous.canary.latest_canary orders
-- them: by seen_at), its latency, and when the newest one was sent. guard.canary is pruned to a day.
SELECT (SELECT extract(epoch FROM seen_at)::double precision FROM guard.canary
          WHERE seen_at IS NOT NULL ORDER BY seen_at DESC LIMIT 1),
       (SELECT latency_seconds FROM guard.canary WHERE seen_at IS NOT NULL ORDER BY seen_at DESC LIMIT 1),
       (SELECT extract(epoch FROM sent_at)::double precision FROM guard.canary ORDER BY id DESC LIMIT 1)
