-- guard's own schema: the version, the capture log and the durable outbox of changed rows, the living
-- findings and the alerts still to deliver. Every statement is idempotent so `guard install` can run
-- any number of times, and over an older version (it only adds what is missing).
CREATE SCHEMA IF NOT EXISTS guard;

CREATE TABLE IF NOT EXISTS guard.version (
    version      integer PRIMARY KEY,
    installed_at timestamptz NOT NULL DEFAULT now()
);

-- One row per changed primary key; repeated changes before dispatch coalesce into it.
CREATE TABLE IF NOT EXISTS guard.outbox (
    id            bigserial PRIMARY KEY,
    tbl           text NOT NULL,
    row_key       text NOT NULL,
    old_path      text,
    new_path      text,
    paths         text[] NOT NULL DEFAULT '{}',
    changes       integer NOT NULL DEFAULT 1,
    changed_at    timestamptz NOT NULL DEFAULT clock_timestamp(),
    dispatched_at timestamptz,
    lease_until   timestamptz,
    attempts      integer NOT NULL DEFAULT 0,
    processed_at  timestamptz
);
-- Since version 4: the capture seq that old_path came from (the first change that had an old path) and
-- the one new_path came from (the last change). Two collectors may merge one key's changes in either
-- order; comparing these keeps the paths in change order. Rows an earlier version wrote count as older
-- than any capture (0, or no old path).
ALTER TABLE guard.outbox
    ADD COLUMN IF NOT EXISTS old_seq bigint,
    ADD COLUMN IF NOT EXISTS new_seq bigint NOT NULL DEFAULT 0;
UPDATE guard.outbox SET old_seq = 0 WHERE old_seq IS NULL AND old_path IS NOT NULL AND new_seq = 0;
-- Since version 5: why the last check of a row failed, how many of its checks failed (attempts counts
-- sends, and a send may only have waited behind busy workers), and when a row that failed
-- outbox_max_attempts times was parked (never claimed again until `guard outbox requeue`).
ALTER TABLE guard.outbox
    ADD COLUMN IF NOT EXISTS last_error text,
    ADD COLUMN IF NOT EXISTS failures integer NOT NULL DEFAULT 0,
    ADD COLUMN IF NOT EXISTS dead_at timestamptz;
CREATE UNIQUE INDEX IF NOT EXISTS outbox_undispatched_key
    ON guard.outbox (tbl, row_key) WHERE dispatched_at IS NULL;
CREATE INDEX IF NOT EXISTS outbox_unprocessed
    ON guard.outbox (id) WHERE processed_at IS NULL;

-- What the capture triggers append to, in the writer's transaction (since version 3). Append-only and
-- lean on purpose: one heap row and one index entry (the ever-increasing key, so a right-most btree
-- insert) per changed row, no ON CONFLICT, no array work. The listener moves a batch into
-- guard.outbox, coalescing it there, and deletes it in the same transaction (outbox_collect.sql), so a
-- change is durable from the writer's commit and never in both places. seq orders the changes of one
-- row (the app's row lock serializes them), which keeps old_path the first and new_path the last.
CREATE TABLE IF NOT EXISTS guard.capture (
    seq      bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    tbl      text NOT NULL,
    row_key  text NOT NULL,
    old_path text,
    new_path text
);

CREATE TABLE IF NOT EXISTS guard.findings (
    id          bigserial PRIMARY KEY,
    check_name  text NOT NULL,
    kind        text NOT NULL,
    subject     text NOT NULL,
    message     text NOT NULL,
    path        text,
    detail      jsonb,
    first_seen  timestamptz NOT NULL DEFAULT now(),
    last_seen   timestamptz NOT NULL DEFAULT now(),
    occurrences integer NOT NULL DEFAULT 1,
    resolved_at timestamptz
);
CREATE UNIQUE INDEX IF NOT EXISTS findings_open_key
    ON guard.findings (check_name, kind, subject) WHERE resolved_at IS NULL;
CREATE INDEX IF NOT EXISTS findings_open_subject
    ON guard.findings (subject) WHERE resolved_at IS NULL;

-- Written in the same transaction as the finding it announces, delivered later by the alerts task,
-- so an unreachable Sentry or Slack can never block or lose a check.
CREATE TABLE IF NOT EXISTS guard.notifications (
    id             bigserial PRIMARY KEY,
    finding_id     bigint NOT NULL REFERENCES guard.findings (id) ON DELETE CASCADE,
    event          text NOT NULL CHECK (event IN ('opened', 'resolved')),
    created_at     timestamptz NOT NULL DEFAULT now(),
    sentry_sent_at timestamptz,
    slack_sent_at  timestamptz
);
CREATE INDEX IF NOT EXISTS notifications_unsent_sentry
    ON guard.notifications (id) WHERE sentry_sent_at IS NULL AND event = 'opened';
CREATE INDEX IF NOT EXISTS notifications_unsent_slack
    ON guard.notifications (id) WHERE slack_sent_at IS NULL;

CREATE TABLE IF NOT EXISTS guard.alert_state (
    name    text PRIMARY KEY,
    sent_at timestamptz NOT NULL
);

-- Whether a listener is waiting for a wake-up. The capture triggers send pg_notify only while one
-- is (a notify serializes writers' commits); a listener flips it just before it waits and re-checks
-- the outbox after flipping, and it polls while waiting, so a missed wake-up costs bounded latency.
CREATE TABLE IF NOT EXISTS guard.listener_state (
    one        boolean PRIMARY KEY DEFAULT true CHECK (one),
    idle       boolean NOT NULL DEFAULT true,
    changed_at timestamptz NOT NULL DEFAULT now()
);
INSERT INTO guard.listener_state (one, idle) VALUES (true, true) ON CONFLICT (one) DO NOTHING;

-- Since version 5: one row per task run a broker delivered (keyed by the task's id), so a second
-- delivery of a running or finished backup, prune, drill or sweep does nothing (guard/runs.py).
CREATE TABLE IF NOT EXISTS guard.task_runs (
    run_key     text PRIMARY KEY,
    task        text NOT NULL,
    deliveries  integer NOT NULL DEFAULT 1,
    started_at  timestamptz NOT NULL DEFAULT now(),
    finished_at timestamptz
);

-- Since version 6: acknowledged findings (`guard findings ack`). One row acknowledges a check's kind
-- for one subject, or for every subject when subject is NULL (check_name NULL: that kind in any check).
-- It expires by itself at `until` (NULL: until revoked); nothing deletes it, so who acknowledged what,
-- and why, stays on record.
CREATE TABLE IF NOT EXISTS guard.acks (
    id         bigserial PRIMARY KEY,
    check_name text,
    kind       text NOT NULL,
    subject    text,
    reason     text NOT NULL,
    acked_by   text NOT NULL,
    acked_at   timestamptz NOT NULL DEFAULT now(),
    until      timestamptz
);
CREATE INDEX IF NOT EXISTS acks_kind ON guard.acks (kind);

-- Since version 6: the schema fingerprint the listeners last acted on (watchers/listener.py): a
-- listener that sees another one claims the change with a conditional UPDATE, so one restore sends
-- one set of migration-history and drift sweeps however many listeners run.
ALTER TABLE guard.listener_state
    ADD COLUMN IF NOT EXISTS schema_fingerprint text,
    ADD COLUMN IF NOT EXISTS fingerprint_at timestamptz;

-- Since version 7: liveness. Every long-running process (listener, watcher, each Celery worker, beat)
-- upserts its row every HEARTBEAT_SECONDS (guard/continuous/liveness.py); `guard status` reads them.
CREATE TABLE IF NOT EXISTS guard.heartbeats (
    process  text NOT NULL,
    instance text NOT NULL,
    host     text,
    pid      integer,
    seen_at  timestamptz NOT NULL,
    PRIMARY KEY (process, instance)
);

-- Since version 7: the canary (guard/continuous/canary.py). Beat inserts a row every CANARY_SECONDS;
-- its capture trigger sends it the way the app's changes go (capture -> outbox -> listener -> Redis
-- -> worker), and the worker that handles it fills seen_at and latency_seconds.
CREATE TABLE IF NOT EXISTS guard.canary (
    id              bigserial PRIMARY KEY,
    sent_at         timestamptz NOT NULL DEFAULT clock_timestamp(),
    seen_at         timestamptz,
    latency_seconds double precision
);
CREATE INDEX IF NOT EXISTS canary_unseen ON guard.canary (sent_at) WHERE seen_at IS NULL;

-- The canary's capture function: the same body as an app table's (install_trigger.sql), with the
-- table named 'guard.canary' in guard.capture (no app table's name holds a dot in the public schema
-- the rules name, so it never collides with one). Names are qualified for the same reason as there.
CREATE OR REPLACE FUNCTION guard.capture_canary() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER AS $guard$
BEGIN
    INSERT INTO guard.capture (tbl, row_key) VALUES ('guard.canary', NEW.id::pg_catalog.text);
    IF EXISTS (SELECT FROM guard.listener_state WHERE idle) THEN
        PERFORM pg_catalog.pg_notify('guard_outbox', '');
    END IF;
    RETURN NULL;
END
$guard$;
DROP TRIGGER IF EXISTS guard_canary_capture ON guard.canary;
CREATE TRIGGER guard_canary_capture AFTER INSERT ON guard.canary
    FOR EACH ROW EXECUTE FUNCTION guard.capture_canary();
-- Since version 7: history for the weekly numbers (`guard report`, guard/history/). One row per
-- predeploy run (outcome pass, warn or fail), backup, prune, drill, copy and sweep (ok or failed), and
-- one row per day of the counts the ratios need (a NULL column: that half was not taken that day).
-- Both are pruned after HISTORY_DAYS.
CREATE TABLE IF NOT EXISTS guard.history_events (
    id      bigserial PRIMARY KEY,
    at      timestamptz NOT NULL DEFAULT now(),
    kind    text NOT NULL,
    outcome text NOT NULL,
    details jsonb NOT NULL DEFAULT '{}'
);
CREATE INDEX IF NOT EXISTS history_events_at ON guard.history_events (at);
CREATE TABLE IF NOT EXISTS guard.history_daily (
    day                date PRIMARY KEY,
    ads                bigint,
    ads_unresolvable   bigint,
    image_rows         bigint,
    image_rows_missing bigint,
    taken_at           timestamptz
);
CREATE INDEX IF NOT EXISTS findings_first_seen ON guard.findings (check_name, first_seen);
-- Since version 9: the events forgotten after HISTORY_DAYS, counted by kind and outcome in the statement
-- that deletes them (guard/history/events.py), so the totals `guard serve` exports as counters
-- (predeploy_runs_total) never go down: Prometheus reads a fall as a restart from zero.
CREATE TABLE IF NOT EXISTS guard.history_forgotten (
    kind    text NOT NULL,
    outcome text NOT NULL,
    events  bigint NOT NULL,
    PRIMARY KEY (kind, outcome)
);

-- Since version 8: findings opened and resolved per check and kind, kept as they happen, so `guard serve`
-- reads a handful of rows instead of counting a ledger that grows forever. Writers only append to
-- finding_tally_log (statement-level triggers with transition tables: one row per check and kind a
-- statement touched, never an UPDATE of a shared row, so no writer waits for another and no lock order
-- changes); the reader adds the log to finding_tally and may fold it in (guard/db/sql/web_tally_fold.sql).
CREATE TABLE IF NOT EXISTS guard.finding_tally (
    check_name text NOT NULL,
    kind       text NOT NULL,
    opened     bigint NOT NULL DEFAULT 0,
    resolved   bigint NOT NULL DEFAULT 0,
    PRIMARY KEY (check_name, kind)
);
CREATE TABLE IF NOT EXISTS guard.finding_tally_log (
    id         bigserial PRIMARY KEY,
    check_name text NOT NULL,
    kind       text NOT NULL,
    opened     bigint NOT NULL DEFAULT 0,
    resolved   bigint NOT NULL DEFAULT 0
);
CREATE OR REPLACE FUNCTION guard.tally_inserted() RETURNS trigger
LANGUAGE plpgsql AS $guard$
BEGIN
    INSERT INTO guard.finding_tally_log (check_name, kind, opened, resolved)
    SELECT check_name, kind, count(*), count(*) FILTER (WHERE resolved_at IS NOT NULL)
    FROM added GROUP BY check_name, kind;
    RETURN NULL;
END
$guard$;
CREATE OR REPLACE FUNCTION guard.tally_updated() RETURNS trigger
LANGUAGE plpgsql AS $guard$
BEGIN
    INSERT INTO guard.finding_tally_log (check_name, kind, opened, resolved)
    SELECT n.check_name, n.kind, 0,
           sum(CASE WHEN o.resolved_at IS NULL THEN 1 ELSE -1 END)
    FROM before o JOIN after n USING (id)
    WHERE (o.resolved_at IS NULL) <> (n.resolved_at IS NULL)
    GROUP BY n.check_name, n.kind;
    RETURN NULL;
END
$guard$;
CREATE OR REPLACE FUNCTION guard.tally_deleted() RETURNS trigger
LANGUAGE plpgsql AS $guard$
BEGIN
    INSERT INTO guard.finding_tally_log (check_name, kind, opened, resolved)
    -- Counters never go down (Prometheus reads a drop as a reset): a deleted open row counts as
    -- resolved, a deleted resolved row changes nothing; opened - resolved stays the open count.
    SELECT check_name, kind, 0, count(*) FILTER (WHERE resolved_at IS NULL)
    FROM removed GROUP BY check_name, kind;
    RETURN NULL;
END
$guard$;
-- First install of the tally (or an upgrade to it): the triggers and the tally of the findings already
-- there, in install's transaction (CREATE TRIGGER holds off every writer of guard.findings until it
-- commits, so nothing is counted twice or missed).
DO $guard$
BEGIN
    IF NOT EXISTS (SELECT FROM pg_catalog.pg_trigger WHERE tgname = 'findings_tally_insert'
                   AND tgrelid = 'guard.findings'::regclass) THEN
        CREATE TRIGGER findings_tally_insert AFTER INSERT ON guard.findings
            REFERENCING NEW TABLE AS added FOR EACH STATEMENT EXECUTE FUNCTION guard.tally_inserted();
        CREATE TRIGGER findings_tally_update AFTER UPDATE ON guard.findings
            REFERENCING OLD TABLE AS before NEW TABLE AS after
            FOR EACH STATEMENT EXECUTE FUNCTION guard.tally_updated();
        CREATE TRIGGER findings_tally_delete AFTER DELETE ON guard.findings
            REFERENCING OLD TABLE AS removed FOR EACH STATEMENT EXECUTE FUNCTION guard.tally_deleted();
        DELETE FROM guard.finding_tally;
        DELETE FROM guard.finding_tally_log;
        INSERT INTO guard.finding_tally (check_name, kind, opened, resolved)
        SELECT check_name, kind, count(*), count(*) FILTER (WHERE resolved_at IS NOT NULL)
        FROM guard.findings GROUP BY check_name, kind;
    END IF;
END
$guard$;
