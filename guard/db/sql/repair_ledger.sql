-- The repair ledger, created on demand by the first repair (no `guard install` needed): one row per
-- run, one row per change it made (before and after). The advisory lock keeps two first repairs from
-- racing on CREATE ... IF NOT EXISTS, which is not safe against itself.
SELECT pg_advisory_xact_lock(hashtext('guard.repair_ledger'));
CREATE SCHEMA IF NOT EXISTS guard;
CREATE TABLE IF NOT EXISTS guard.repair_runs (
    id text PRIMARY KEY,
    kind text NOT NULL,
    started_at timestamptz NOT NULL DEFAULT now(),
    backup_id text,
    undoable boolean NOT NULL DEFAULT true,
    undone_at timestamptz,
    detail jsonb NOT NULL DEFAULT '{}'
);
CREATE TABLE IF NOT EXISTS guard.repair_changes (
    run_id text NOT NULL REFERENCES guard.repair_runs (id) ON DELETE CASCADE,
    seq bigserial,
    subject text NOT NULL,
    before text,
    after text,
    PRIMARY KEY (run_id, seq)
);
