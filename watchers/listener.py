"""The listener: LISTEN for the wake-up, drain the outbox in batches, hand each batch to Celery.

Draining first collects what the capture triggers logged into the coalesced outbox
(guard/continuous/outbox.py). There is no batch window: a notify is answered at once with whatever
has accumulated, a stream of writes is drained back to back (the triggers stop notifying), and a
claim is held back only while a task already waits for a worker, so that under load the next claim
is one bigger batch instead of many small tasks.

Run as `python -m watchers.listener`. Several may run at once (claims use SKIP LOCKED). Rows are
marked dispatched in the same transaction that publishes them, so a crash before commit re-sends
(tasks are idempotent) and nothing is lost; what a dead worker never processed comes back after
the lease.

Every few seconds, and at once after each reconnect, it also reads the schema fingerprint
(watchers/restores.py): a restore is seen within seconds, not at the daily drift sweep.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections import deque
from collections.abc import Callable

import psycopg
import psycopg.errors

from guard.config.redact import redact
from guard.config.settings import Settings
from guard.continuous import liveness, outbox, queues
from guard.db.database import Database
from guard.errors import UnreachableError
from watchers.lifecycle import FIRST_DELAY_S, StopFlag, retrying, run_process
from watchers.publish import Publisher, producer
from watchers.pulse import Pulse
from watchers.restores import RestoreWatch, SendSweep
from watchers.transient import TRANSIENT

log = logging.getLogger("guard.listener")

WAIT_S = 1.0  # also how often expired leases are looked for when nothing wakes us
PARK_EVERY_S = 1.0  # how often rows whose check kept failing are looked for (not on every drain)
# This many changes drained within STREAM_WINDOW_S (640 a second) means a stream of writes: take the
# flag down, which stops the triggers' notifies (each takes PostgreSQL's global notify lock at commit
# and so serializes the writers' commits), and drain back to back, polling every STREAM_POLL_S when a
# drain finds nothing. Judged by the rate, not by one drain: a listener woken by every commit finds a
# few changes each time however fast they come. The stream ends, and the flag goes up again, once
# fewer than CALM_CHANGES came within the window. Below the rate, as under a trickle of writes, the
# listener stays idle: each write's notify wakes it at once.
STREAM_WINDOW_S = 0.05
STREAM_CHANGES = 32
CALM_CHANGES = 16
STREAM_POLL_S = 0.001
# While streaming, the flag is taken down again this often: another listener whose poll timed out
# puts it up (it cannot tell a streaming listener from a dead one).
STREAM_REASSERT_S = WAIT_S / 2
LOG_EVERY_S = 1.0
# While a task already waits in the events queue (every worker is busy), the next claim is held back
# up to HOLD_S so that the changes arriving meanwhile go out as one batch, not as many small tasks.
HOLD_S = 0.2
HOLD_STEP_S = 0.002

# The claiming connection's commits do not wait for the disk (one fdatasync each, 5-7 ms here: the
# largest part of the listener's time). Safe for what it commits: a collect, a claim or the idle flag
# lost in a database crash is undone whole (the changes wait in guard.capture, or undispatched in the
# outbox, and are sent again), and a worker's commit, which does wait, flushes every earlier one.
ASYNC_COMMIT = "SET synchronous_commit = off"

Publish = Callable[[outbox.Batch], None]
Waiting = Callable[[], int]


class Pace:
    """How many changes the drains moved within the last `window` seconds."""

    def __init__(self, window: float) -> None:
        self.window = window
        self.drains: deque[tuple[float, int]] = deque()
        self.total = 0

    def add(self, moved: int) -> int:
        """Count one drain's changes; return the changes within the window, this drain's included."""
        now = time.monotonic()
        if moved:
            self.drains.append((now, moved))
            self.total += moved
        while self.drains and self.drains[0][0] <= now - self.window:
            self.total -= self.drains.popleft()[1]
        return self.total


class Listener:
    """One connection listening, one claiming; reconnects with backoff until stopped."""

    def __init__(
        self,
        settings: Settings,
        publish: Publish,
        stop: StopFlag,
        send_sweep: SendSweep | None = None,
        waiting: Waiting | None = None,
    ) -> None:
        self.settings, self.publish, self.stop, self.waiting = settings, publish, stop, waiting
        self.url = settings.require_database_url()
        self.dispatched = self.logged = 0
        self.park_at = self.log_at = 0.0
        self.idle_flag: bool | None = None  # what this listener last set the flag to; None: set it again
        self.pace = Pace(STREAM_WINDOW_S)
        self.flag_at = 0.0  # when this listener last took the flag down
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
            db.execute(ASYNC_COMMIT)
            log.info("listening on %s", outbox.CHANNEL)
            self.watch.look_now()  # after every (re)connect: this may be a restored or re-created database
            self.idle_flag = None  # after a reconnect, nothing is known about the flag
            while not self.stop:
                if self.watch.due():
                    self.watch.look(db)
                if not self.watch.guard_present:  # nothing to drain until the watch has put it back
                    self.wait_for_wakeup(conn)
                    continue
                moved = self.drain(db)
                recent = self.pace.add(moved)
                if self.idle_flag is False:  # streaming: no notifies come, so poll
                    if recent < CALM_CHANGES:
                        self.idle(conn, db)  # the stream is over: the flag goes up again
                        continue
                    if time.monotonic() >= self.flag_at + STREAM_REASSERT_S:
                        self.take_flag_down(db)  # another listener's poll may have put it up
                    if moved == 0:
                        self.stop.wait(STREAM_POLL_S)
                elif moved == 0:
                    self.idle(conn, db)
                elif recent >= STREAM_CHANGES:
                    self.take_flag_down(db)  # a stream: drain back to back, no notifies
                elif self.idle_flag:
                    # A trickle while idle: every write since the flag went up notifies at its commit,
                    # so wait for the next one instead of draining again to find nothing.
                    self.wait_for_wakeup(conn)
                # Busy: drain again at once; what came in meanwhile is the next batch (no batch window).
            if self.idle_flag is False:  # stopping mid-stream: the other listeners need the notifies
                try:
                    outbox.set_listener_idle(db, True)
                except psycopg.Error as exc:  # harmless: another listener's poll puts it up
                    log.info("could not put the flag up on the way out (%s)", type(exc).__name__)

    def take_flag_down(self, db: Database) -> None:
        outbox.set_listener_idle(db, False)  # writes nothing when it is down already
        self.idle_flag, self.flag_at = False, time.monotonic()

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
            if time.monotonic() >= self.park_at:
                self.park(db)
                self.park_at = time.monotonic() + PARK_EVERY_S
            # the triggers only log changes: coalesce them into the outbox first (its own transaction:
            # a worker marks the rows processed, so they must be committed before it gets them), then
            # claim; both go out together, one round trip
            self.hold_while_workers_are_busy()  # first: what comes while held is in the next collect
            limits = (self.settings.outbox_batch, self.settings.lease_seconds, self.max_attempts)
            with outbox.collect_and_claim(db, *limits) as (collected, changes):
                # one task per table per claim: a task's cost is mostly the unique rule's scans of
                # the table, paid once however many of its rows it checks (200-key tasks: 4,188
                # changes/s drained; whole claims: 7,076-7,275, bench.sync --only throughput)
                for batch in outbox.group(changes, self.settings.outbox_batch):
                    self.publish(batch)
            total += len(changes)
            if len(changes) < self.settings.outbox_batch and collected < outbox.COLLECT_LIMIT:
                break
        if total:
            self.dispatched += total
            self.log_progress()
        return total

    def hold_while_workers_are_busy(self) -> None:
        """Let changes gather in the outbox while a task already waits for a worker (up to HOLD_S).

        No batch window otherwise: with a worker free, a change is claimed and sent at once. Once
        every worker is busy, claiming now would only queue one more small task behind the waiting
        one; holding back makes the next claim one batch of all that came meanwhile, so the number
        of tasks follows what the workers take, not how fast this loop turns. The rows wait in the
        durable outbox instead of the broker.
        """
        if self.waiting is None:
            return
        deadline = time.monotonic() + HOLD_S
        while not self.stop and time.monotonic() < deadline and self.waiting() > 0:
            self.stop.wait(HOLD_STEP_S)

    def log_progress(self) -> None:
        """One line a second at most: under a stream of writes there are hundreds of drains a second."""
        now = time.monotonic()
        if now >= self.log_at:
            log.info("dispatched %d changes (%d in all)", self.dispatched - self.logged, self.dispatched)
            self.logged, self.log_at = self.dispatched, now + LOG_EVERY_S

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

        The flag stays up after the wake-up: a trickle of writes keeps notifying, and the listener
        keeps waking at once, without two flag updates per write. Only a stream takes it down (serve).
        """
        if not self.idle_flag:
            outbox.set_listener_idle(db, True)
            self.idle_flag = True
            moved = self.drain(db)
            self.pace.add(moved)
            if moved:
                return
        self.wait_for_wakeup(conn)

    def wait_for_wakeup(self, conn: psycopg.Connection[object]) -> None:
        """Wait up to WAIT_S for a notify, then take every one already queued (one drain answers them)."""
        woken = False
        for _ in conn.notifies(timeout=WAIT_S, stop_after=1):
            woken = True
        if woken:
            for _ in conn.notifies(timeout=0):
                pass
            return
        # Polled, not woken: put the flag up again next time (another listener may have taken it down
        # and died); the update writes nothing when it is up already.
        self.idle_flag = None
        conn.execute("SELECT 1")  # liveness: a dead connection raises here, not silently


def serve(settings: Settings, stop: StopFlag) -> None:
    """Run one listener that hands its batches to Celery."""
    publisher = Publisher(producer(settings))

    def publish(batch: outbox.Batch) -> None:
        publisher.check_rows(batch.table, batch.keys, batch.paths, batch.ids)

    def send_sweep(name: str) -> None:
        publisher.sweep(name, f"guard-schema-{name}-{uuid.uuid4().hex}")

    broker = queues.connect(settings.redis_url)

    def waiting() -> int:
        """Tasks in the events queue that no worker has taken yet (0 if Redis does not answer)."""
        try:
            return queues.depths(broker, settings.broker_prefix, (queues.EVENTS,)).waiting[queues.EVENTS]
        except UnreachableError:
            return 0  # the publish that follows says what is wrong with the broker

    with Pulse(settings, liveness.LISTENER):
        Listener(settings, publish, stop, send_sweep, waiting).run()


def main() -> int:
    return run_process("guard-listener", serve)


if __name__ == "__main__":
    raise SystemExit(main())
