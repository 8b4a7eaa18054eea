-- Prisma Migrate's record of applied migrations, as the backup's migration state.
SELECT migration_name, checksum, started_at::text, finished_at::text, rolled_back_at::text,
       applied_steps_count
FROM _prisma_migrations
ORDER BY started_at, migration_name
