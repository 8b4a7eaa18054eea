"""The heartbeat thread every long-running process runs, and beat's canary duty on the same loop.

A thread of its own, with its own connection and reconnect loop, so a slow publish or a long task never
makes a living process look dead, and a database outage never stops the process's real work. The core
writes the rows (guard/continuous/liveness.py, guard/continuous/canary.py); this is only the loop.

Beat's duty runs in beat's own process, not as a task: a task needs Redis and a worker, and the stall
it looks for is exactly Redis or the workers being gone. It sends the canary, judges the stall, and
delivers the alert itself (guard/alerts), so `pipeline_stalled` reaches Sentry and Slack with the
listener, Redis or every worker dead.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
from collections.abc import Callable
from types import TracebackType
from typing import Self

from guard.alerts import transports
from guard.alerts.delivery import deliver
from guard.config.redact import redact
from guard.config.settings import Settings
from guard.continuous import canary, liveness
from guard.db.database import Database

log = logging.getLogger("guard.pulse")

MIN_INTERVAL_S = 0.2
FIRST_RETRY_S = 0.25
PRUNE_EVERY_S = 3600.0

Duty = Callable[[Database], None]


class Pulse:
    """Record this process's heartbeat every `interval` seconds (and run a duty) until stopped."""

    def __init__(
        self,
        settings: Settings,
        process: str,
        instance: str | None = None,
        duty: Duty | None = None,
        interval: float | None = None,
    ) -> None:
        self.settings, self.process, self.duty = settings, process, duty
        self.host = socket.gethostname()
        self.instance = instance or self.host
        self.pid = os.getpid()
        self.interval = max(MIN_INTERVAL_S, interval if interval is not None else settings.heartbeat_seconds)
        self.failures = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"guard-{process}-heartbeat", daemon=True)

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    def start(self) -> Pulse:
        if not self.settings.database_url:
            log.warning("DATABASE_URL is not set: this %s records no heartbeat", self.process)
            return self
        self._thread.start()
        return self

    def stop(self, timeout: float = 5.0) -> None:
        """Stop the loop and delete this process's row (a clean stop is missing, not stale)."""
        if not self._thread.is_alive():
            return
        self._stop.set()
        self._thread.join(timeout)

    def _run(self) -> None:
        url = self.settings.require_database_url()
        self.failures = 0
        while not self._stop.is_set():
            try:
                with Database(url, application_name=f"guard-{self.process}-heartbeat") as db:
                    self._beat_until_stopped(db)
                    liveness.forget(db, self.process, self.instance, self.pid)
            except Exception as exc:  # the thread must outlive any outage; the process keeps working
                # soon at first (a re-created database lost every row: be back in it at once), then
                # doubling up to the interval
                delay = min(self.interval, FIRST_RETRY_S * 2**self.failures)
                self.failures += 1
                why = redact(str(exc)).strip() or type(exc).__name__
                log.warning("heartbeat: %s; retrying in %.1fs", why, delay)
                self._stop.wait(delay)

    def _beat_until_stopped(self, db: Database) -> None:
        while not self._stop.is_set():
            liveness.record(db, self.process, self.instance, self.host, self.pid)
            self.failures = 0
            if self.duty is not None:
                self.duty(db)
            self._stop.wait(self.interval)


class CanaryDuty:
    """Beat's part: send a canary every CANARY_SECONDS, judge the stall, alert, prune old rows."""

    def __init__(self, settings: Settings, clock: Callable[[], float] = time.monotonic) -> None:
        self.settings, self.clock = settings, clock
        self.every = max(1, settings.canary_seconds)
        self.next_send = self.next_prune = clock()
        self.channels = transports(settings)
        self.stalled = False
        self.sender: threading.Thread | None = None

    @property
    def interval(self) -> float:
        """How often the beat's loop must turn to send on time and heartbeat on time."""
        return float(min(self.every, max(1, self.settings.heartbeat_seconds)))

    def __call__(self, db: Database) -> None:
        now = self.clock()
        if now >= self.next_send:
            canary.send(db)
            self.next_send = now + self.every
        changes, flow = canary.evaluate(db, self.settings.canary_stall_seconds)
        if changes.opened:
            log.error("pipeline stalled: no canary came through for %d s", self.settings.canary_stall_seconds)
        elif changes.resolved:
            log.info("pipeline flows again: a canary came through")
        self.stalled = flow.stalled
        # Every turn while stalled (Slack may refuse, or be rate-limited, on the turn the stall opens)
        # and once when it resolves: delivery sends only what is unsent, so a turn with nothing is cheap.
        if self.channels and (self.stalled or changes.resolved):
            self.deliver_aside()
        if now >= self.next_prune:
            canary.prune(db)
            liveness.prune(db)
            self.next_prune = now + PRUNE_EVERY_S

    def deliver_aside(self) -> None:
        """Deliver unsent alerts on a thread of its own, with its own connection, one at a time.

        Not a task (the broker may be what is down), and not on this loop: Slack's timeouts, a 429's
        wait and the retries would hold beat's heartbeat past its stale threshold.
        """
        if self.sender is not None and self.sender.is_alive():
            return
        self.sender = threading.Thread(target=self._deliver, name="guard-beat-alerts", daemon=True)
        self.sender.start()

    def _deliver(self) -> None:
        try:
            with Database(self.settings.require_database_url(), application_name="guard-beat-alerts") as db:
                deliver(db, self.channels)
        except Exception as exc:  # a thread's failure must not go unseen, nor stop the next turn's try
            log.warning("beat could not deliver alerts, will retry: %s", redact(str(exc)))
