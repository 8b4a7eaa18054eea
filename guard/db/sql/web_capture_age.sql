-- `guard serve`: how long the oldest change still in guard.capture (not yet collected by a listener) has
-- waited. Capture rows carry no time (they are kept lean for the app's writes), but the canaries beat
-- sends every minute go through the same table and know when they were sent: the oldest uncollected
-- canary is the capture's lag, to within a canary interval. Both are guard's own tables.
SELECT coalesce(extract(epoch FROM now() - min(c.sent_at)), 0)::double precision
FROM guard.capture k JOIN guard.canary c ON c.id::text = k.row_key
WHERE k.tbl = 'guard.canary'
