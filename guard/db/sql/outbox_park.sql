-- Park the rows whose last lease ran out unprocessed after their check failed max_attempts times, or
-- after max_sends sends (a worker that dies on the row records no error). A send that only waited
-- behind busy workers is not a failure, so a slow queue alone parks nothing for a long while.
-- They stay until `guard outbox requeue`.
UPDATE guard.outbox
SET dead_at = now()
WHERE processed_at IS NULL AND dead_at IS NULL AND lease_until < now()
  AND (failures >= %(max_attempts)s OR attempts >= %(max_sends)s)
RETURNING id, tbl, row_key, attempts, last_error, dead_at, failures
