-- Claim a batch of changes nobody holds: never dispatched, or dispatched and not processed within the
-- lease. SKIP LOCKED lets several listeners drain the outbox at once without waiting on each other.
-- A parked row, or one sent max_attempts times already (it is parked next), is not claimed.
WITH batch AS (
    SELECT id FROM guard.outbox
    WHERE processed_at IS NULL AND (dispatched_at IS NULL OR lease_until < now()) AND dead_at IS NULL
      AND (%(max_attempts)s::integer IS NULL OR attempts < %(max_attempts)s::integer)
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
