-- The migration history's part of the schema fingerprint: every row as Prisma keeps it.
SELECT md5(coalesce(string_agg(concat_ws(',', id, checksum, migration_name, finished_at, rolled_back_at,
                                         applied_steps_count), '|' ORDER BY id), ''))
FROM _prisma_migrations
