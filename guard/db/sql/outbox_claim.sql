-- Claim a batch of changes nobody holds: never dispatched, or dispatched and not processed within the
-- lease. SKIP LOCKED lets several listeners drain the outbox at once without waiting on each other.
-- A parked row, or one that is parked next (its check failed max_attempts times, or it was sent
-- max_sends times and never processed: its worker died each time), is not claimed.
WITH batch AS (
    SELECT id FROM guard.outbox
    WHERE processed_at IS NULL AND (dispatched_at IS NULL OR lease_until < now()) AND dead_at IS NULL
      AND (%(max_attempts)s::integer IS NULL
           OR (failures < %(max_attempts)s::integer AND attempts < %(max_sends)s::integer))
    ORDER BY id
    LIMIT %(limit)s
    FOR UPDATE SKIP LOCKED
)
UPDATE guard.outbox o
SET dispatched_at = now(),
    lease_until = now() + make_interval(secs => %(lease)s),
    attempts = o.attempts + 1
FROM batch
WHERE o.id = batch.id
RETURNING o.id, o.tbl, o.row_key, o.paths, o.attempts
