"""The listener's restore watch: a changed schema fingerprint runs migrations and drift at once.

Every `schema_watch_seconds` (and at once after every reconnect) the listener reads the fingerprint
(guard/continuous/fingerprint.py). A new value is acted on once it reads the same twice, half a second
apart (SETTLE_S), so a restore still running is not checked half-way (each later change is acted on again):

1. guard's own schema missing (the database was dropped and re-created) is put back: bookkeeping
   tables only, so the findings ledger exists again; never the triggers on the app's tables;
2. `capture_missing` findings are reconciled (one per watched table lacking its capture triggers);
   with `capture_auto_install` the triggers are installed first, as `guard install` would;
3. the migrations and drift sweeps are sent to the workers, as beat sends them, in the transaction
   that claims the fingerprint, so one change sends one set of checks however many listeners run,
   and a send that fails leaves the change to act on at the next look.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from guard.config.settings import Settings
from guard.continuous import fingerprint
from guard.continuous.capture import CAPTURE_MISSING, CHECK, install, install_bookkeeping, missing_capture
from guard.db.database import Database
from guard.errors import GuardError
from guard.findings import ledger as store
from guard.findings.ledger import Scope

log = logging.getLogger("guard.listener")

SETTLE_S = 0.5  # a new fingerprint must read the same this much later before it is acted on
HISTORY_CHECKS = ("migrations", "drift")

SendSweep = Callable[[str], None]


class RestoreWatch:
    """Look at the schema fingerprint when due; act once on each new, settled value."""

    def __init__(self, settings: Settings, send_sweep: SendSweep) -> None:
        self.settings, self.send_sweep = settings, send_sweep
        self.interval = max(1, settings.schema_watch_seconds)
        self.next_look = 0.0
        self.seen: str | None = None  # the value read at the last look
        self.guard_present = False
        self.acted = 0  # how many changes this process acted on (a test and the log count them)

    def look_now(self) -> None:
        """Make the next look due at once (after a reconnect: the database may be another one now)."""
        self.next_look = 0.0

    def due(self) -> bool:
        return time.monotonic() >= self.next_look

    def look(self, db: Database) -> None:
        """Read the fingerprint; once a new value has settled, act on it."""
        current = fingerprint.read(db)
        self.guard_present = current.guard_present
        settled = current.value == self.seen
        self.seen = current.value
        self.next_look = time.monotonic() + (self.interval if settled else SETTLE_S)
        if settled:
            self.act(db, current)

    def act(self, db: Database, current: fingerprint.Fingerprint) -> None:
        """Put back guard's bookkeeping if gone, keep capture_missing true, and send the checks once."""
        if not current.guard_present:
            log.warning("guard's schema is gone (a re-created database?): re-creating its bookkeeping tables")
            install_bookkeeping(db)
            self.guard_present = True
        if self.settings.capture_auto_install and missing_capture(db, self.settings) and self.reinstall(db):
            current = fingerprint.read(db)  # the triggers are part of it: claim what is there now
        with db.transaction():
            if not fingerprint.claim(db, current):
                return  # unchanged since it was last acted on (by this or another listener)
            scope = Scope(CHECK, (CAPTURE_MISSING,))
            changes = store.reconcile(db, scope, missing_capture(db, self.settings))
            names = HISTORY_CHECKS if self.settings.migrations_dir is not None else ()
            for name in names:
                self.send_sweep(name)
        self.acted += 1
        log.info(
            "schema fingerprint changed: sent %s; capture_missing opened %d, resolved %d",
            ", ".join(names) or "no check (MIGRATIONS_DIR is not set)",
            changes.opened,
            changes.resolved,
        )

    def reinstall(self, db: Database) -> bool:
        """Install the missing capture triggers as `guard install` does; False when it cannot."""
        try:
            tables = install(db, self.settings)
        except GuardError as exc:  # a watched table or column is missing: drift says so; keep the finding
            log.error("capture_auto_install: could not re-install the capture triggers: %s", exc)
            return False
        log.warning(
            "capture_auto_install: re-installed the capture triggers on %s", ", ".join(t.name for t in tables)
        )
        return True
