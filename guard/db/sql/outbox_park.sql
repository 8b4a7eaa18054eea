-- Park the rows that were sent max_attempts times and whose last lease ran out unprocessed: each
-- failed its check every time (or its worker died). They stay until `guard outbox requeue`.
UPDATE guard.outbox
SET dead_at = now()
WHERE processed_at IS NULL AND dead_at IS NULL AND attempts >= %(max_attempts)s AND lease_until < now()
RETURNING id, tbl, row_key, attempts, last_error
