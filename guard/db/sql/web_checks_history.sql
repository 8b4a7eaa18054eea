-- `guard serve`: each check's sweeps as guard's history records them (every sweep: the workers', the
-- first one `guard install` runs, `guard sweep --here`): when the last one ended, when the last one
-- that succeeded ended, and how long that one took (its details' seconds; older events have none).
SELECT details->>'check',
       extract(epoch FROM max(at))::double precision,
       extract(epoch FROM max(at) FILTER (WHERE outcome = 'ok'))::double precision,
       (array_agg((details->>'seconds')::double precision ORDER BY at DESC)
            FILTER (WHERE outcome = 'ok'))[1]
FROM guard.history_events
WHERE kind = 'sweep' AND details ? 'check'
GROUP BY 1
ORDER BY 1
