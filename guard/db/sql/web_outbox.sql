-- `guard serve`: changes still to check (the outbox's live rows plus the capture rows not yet collected),
-- the age of the oldest live outbox row, and the parked (dead) ones. Both are guard's own tables; the
-- partial index outbox_unprocessed holds only rows not yet processed.
SELECT (SELECT count(*) FROM guard.outbox WHERE processed_at IS NULL AND dead_at IS NULL)
         + (SELECT count(*) FROM guard.capture),
       (SELECT coalesce(extract(epoch FROM now() - min(changed_at)), 0)::double precision
          FROM guard.outbox WHERE processed_at IS NULL AND dead_at IS NULL),
       (SELECT count(*) FROM guard.outbox WHERE processed_at IS NULL AND dead_at IS NOT NULL)
