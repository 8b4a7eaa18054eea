"""The listener: LISTEN for the wake-up, drain the outbox in batches, hand each batch to Celery.

Draining first collects what the capture triggers logged into the coalesced outbox
(guard/continuous/outbox.py).

Run as `python -m watchers.listener`. Several may run at once (claims use SKIP LOCKED). Rows are
marked dispatched in the same transaction that publishes them, so a crash before commit re-sends
(tasks are idempotent) and nothing is lost; what a dead worker never processed comes back after
the lease.

Every few seconds, and at once after each reconnect, it also reads the schema fingerprint
(watchers/restores.py): a restore is seen within seconds, not at the daily drift sweep.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable

import psycopg
import psycopg.errors

from guard.config.redact import redact
from guard.config.settings import Settings
from guard.continuous import liveness, outbox
from guard.db.database import Database
from watchers.lifecycle import FIRST_DELAY_S, StopFlag, retrying, run_process
from watchers.publish import Publisher, producer
from watchers.pulse import Pulse
from watchers.restores import RestoreWatch, SendSweep
from watchers.transient import TRANSIENT

log = logging.getLogger("guard.listener")

GATHER_S = 0.03
WAIT_S = 1.0  # also how often expired leases are looked for when nothing wakes us

Publish = Callable[[outbox.Batch], None]


class Listener:
    """One connection listening, one claiming; reconnects with backoff until stopped."""

    def __init__(
        self, settings: Settings, publish: Publish, stop: StopFlag, send_sweep: SendSweep | None = None
    ) -> None:
        self.settings, self.publish, self.stop = settings, publish, stop
        self.url = settings.require_database_url()
        self.dispatched = 0
        self.watch = RestoreWatch(settings, send_sweep or (lambda name: None))

    def run(self) -> None:
        """Serve until stopped; after a lost connection, pause, then reconnect with backoff."""
        while not self.stop:
            try:
                self.serve()
            except TRANSIENT as exc:
                log.warning("connection lost (%s); reconnecting", redact(str(exc)).strip())
                self.stop.wait(FIRST_DELAY_S)
            except psycopg.errors.UndefinedTable as exc:  # guard's schema went between two looks
                log.warning(
                    "guard's tables are gone (%s); looking at the schema again", redact(str(exc)).strip()
                )
                self.stop.wait(FIRST_DELAY_S)

    def serve(self) -> None:
        """Connect (retrying while the database or broker is away), then listen and drain."""
        conn = retrying(self.stop, log, "cannot connect")(self.connect)
        if conn is None:
            return  # stopped while waiting to reconnect
        with conn, Database(self.url, application_name="guard-listener-claim") as db:
            log.info("listening on %s", outbox.CHANNEL)
            self.watch.look_now()  # after every (re)connect: this may be a restored or re-created database
            while not self.stop:
                if self.watch.due():
                    self.watch.look(db)
                if not self.watch.guard_present:  # nothing to drain until the watch has put it back
                    self.wait_for_wakeup(conn)
                    continue
                if self.drain(db) == 0:
                    self.idle(conn, db)
                else:
                    # Under a stream of writes, let a few more changes gather so each task checks a
                    # batch instead of one row; this bounds tasks per second, not latency.
                    self.stop.wait(GATHER_S)

    def connect(self) -> psycopg.Connection[tuple[object, ...]] | None:
        """Open the listening connection and LISTEN; None once stopping (the claiming one is lazy)."""
        if self.stop:
            return None
        conn = psycopg.connect(self.url, autocommit=True, application_name="guard-listener")
        try:
            conn.execute("LISTEN " + outbox.CHANNEL)
        except BaseException:
            conn.close()
            raise
        return conn

    def drain(self, db: Database) -> int:
        """Collect, claim and publish batches until nothing is left to claim; return how many."""
        total = 0
        while not self.stop:
            # the triggers only log changes; coalesce them into the outbox first (its own transaction)
            collected = outbox.collect(db)
            self.park(db)
            limits = (self.settings.outbox_batch, self.settings.lease_seconds, self.max_attempts)
            with outbox.claim(db, *limits) as changes:
                for batch in outbox.group(changes):
                    self.publish(batch)
            total += len(changes)
            if len(changes) < self.settings.outbox_batch and collected < outbox.COLLECT_LIMIT:
                break
        if total:
            self.dispatched += total
            log.info("dispatched %d changes (%d in all)", total, self.dispatched)
        return total

    @property
    def max_attempts(self) -> int:
        return max(1, self.settings.outbox_max_attempts)

    def park(self, db: Database) -> None:
        """Park the rows whose check failed every time they were sent (no poison loop)."""
        for dead in outbox.park(db, self.max_attempts):
            log.error(
                "parked outbox row %d (%s %s) after %d attempts", dead.id, dead.table, dead.key, dead.attempts
            )

    def idle(self, conn: psycopg.Connection[object], db: Database) -> None:
        """Ask the triggers to notify, re-check once (a commit may have slipped in), then wait.

        While busy, writers skip pg_notify (it serializes their commits). A write whose trigger saw
        "busy" and that committed before the re-check is drained here; one still uncommitted at the
        re-check (a long transaction) is found by the poll when the wait times out.
        """
        outbox.set_listener_idle(db, True)
        if self.drain(db) == 0:
            self.wait_for_wakeup(conn)
        outbox.set_listener_idle(db, False)

    def wait_for_wakeup(self, conn: psycopg.Connection[object]) -> None:
        for _ in conn.notifies(timeout=WAIT_S, stop_after=1):
            pass
        conn.execute("SELECT 1")  # liveness: a dead connection raises here, not silently


def serve(settings: Settings, stop: StopFlag) -> None:
    """Run one listener that hands its batches to Celery."""
    publisher = Publisher(producer(settings))

    def publish(batch: outbox.Batch) -> None:
        publisher.check_rows(batch.table, batch.keys, batch.paths, batch.ids)

    def send_sweep(name: str) -> None:
        publisher.sweep(name, f"guard-schema-{name}-{uuid.uuid4().hex}")

    with Pulse(settings, liveness.LISTENER):
        Listener(settings, publish, stop, send_sweep).run()


def main() -> int:
    return run_process("guard-listener", serve)


if __name__ == "__main__":
    raise SystemExit(main())
