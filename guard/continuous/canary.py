"""The canary: a row beat writes in guard's schema that travels the app's path, and the stall it reveals.

Beat inserts one row of guard.canary every CANARY_SECONDS. Its capture trigger (install_schema.sql)
logs it in guard.capture like any app change, so it goes capture -> outbox -> listener -> Redis ->
worker; the worker's check_rows for TABLE calls `arrived`, which fills seen_at and latency_seconds.
When no canary has come through for CANARY_STALL_SECONDS the `pipeline_stalled` finding opens (beat
evaluates it, in its own process, so it opens with the listener, Redis or every worker dead) and a
worker that sees a canary again resolves it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from guard.db.database import Database
from guard.findings import ledger as store
from guard.findings.finding import Finding
from guard.findings.ledger import Changes, Scope

TABLE = "guard.canary"  # the name its capture trigger writes in guard.capture.tbl
CHECK, KIND, SUBJECT = "pipeline", "pipeline_stalled", "canary"
SCOPE = Scope(CHECK, (KIND,), (SUBJECT,))
KEEP_SECONDS = 86400
KEEP_ROWS = 10000

SEND = "INSERT INTO guard.canary DEFAULT VALUES RETURNING id"
ARRIVED = """
UPDATE guard.canary SET seen_at = clock_timestamp(),
       latency_seconds = extract(epoch FROM clock_timestamp() - sent_at)
WHERE id = ANY(%s::bigint[]) AND seen_at IS NULL
"""
# The newest canary that came through, else the newest sent (seen_at NULL).
LATEST = """
(SELECT sent_at, seen_at, latency_seconds FROM guard.canary WHERE seen_at IS NOT NULL
 ORDER BY seen_at DESC LIMIT 1)
UNION ALL
(SELECT sent_at, seen_at, latency_seconds FROM guard.canary ORDER BY id DESC LIMIT 1)
LIMIT 1
"""
# When one last came through, and the oldest still on its way that was sent after the newest one that
# came through (an older lost one, overtaken, says nothing about the pipeline now).
FLOW = """
WITH seen AS (
    SELECT max(seen_at) AS last_seen, max(sent_at) AS last_sent FROM guard.canary WHERE seen_at IS NOT NULL
)
SELECT seen.last_seen,
       (SELECT min(c.sent_at) FROM guard.canary c
        WHERE c.seen_at IS NULL AND c.sent_at > coalesce(seen.last_sent, '-infinity')),
       clock_timestamp()
FROM seen
"""
PRUNE = """
DELETE FROM guard.canary
WHERE sent_at < clock_timestamp() - make_interval(secs => %s)
   OR id <= (SELECT max(id) FROM guard.canary) - %s
"""


@dataclass(frozen=True)
class CanaryState:
    """The newest canary that came through (or, when none has yet, the newest sent)."""

    sent_at: datetime
    seen_at: datetime | None
    latency_seconds: float | None

    def to_json(self) -> dict[str, Any]:
        return {
            "sent_at": self.sent_at.isoformat(),
            "seen_at": self.seen_at.isoformat() if self.seen_at else None,
            "latency_s": None if self.latency_seconds is None else round(self.latency_seconds, 3),
        }


@dataclass(frozen=True)
class Stall:
    """Whether the pipeline is stalled now, and for how long nothing came through."""

    stalled: bool
    quiet_seconds: float | None  # since the last arrival (or the oldest waiting canary's send)
    last_seen: datetime | None
    waiting_since: datetime | None

    def finding(self, stall_seconds: int) -> Finding:
        quiet = f"{self.quiet_seconds:.0f} s" if self.quiet_seconds is not None else "ever"
        last = (
            f"the last one came through at {self.last_seen:%Y-%m-%d %H:%M:%S %Z}"
            if self.last_seen
            else ("none has come through yet")
        )
        message = (
            f"no canary has come through the pipeline for {quiet} (CANARY_STALL_SECONDS {stall_seconds}; "
            f"{last}): the listener, Redis or the workers are down or stuck, so no change is being "
            "checked; see 'guard status'"
        )
        return Finding(CHECK, KIND, SUBJECT, message, detail={"quiet_s": self.quiet_seconds})

    def to_json(self) -> dict[str, Any]:
        quiet = None if self.quiet_seconds is None else round(self.quiet_seconds, 1)
        return {
            "stalled": self.stalled,
            "quiet_s": quiet,
            "last_seen": self.last_seen.isoformat() if self.last_seen else None,
            "waiting_since": self.waiting_since.isoformat() if self.waiting_since else None,
        }


def judge_stall(
    last_seen: datetime | None, waiting_since: datetime | None, now: datetime, stall_seconds: float
) -> Stall:
    """Stalled: a canary has waited `stall_seconds` and none came through in that time either."""
    quiet_from = last_seen or waiting_since
    quiet = None if quiet_from is None else max(0.0, (now - quiet_from).total_seconds())
    waited = waiting_since is not None and (now - waiting_since).total_seconds() >= stall_seconds
    nothing_since = last_seen is None or (now - last_seen).total_seconds() >= stall_seconds
    return Stall(waited and nothing_since, quiet, last_seen, waiting_since)


def send(db: Database) -> int:
    """Insert one canary (its trigger sends it down the pipeline when this commits); return its id."""
    row = db.fetch_one(SEND)
    assert row is not None
    return int(row[0])


def arrived(db: Database, keys: Sequence[str]) -> int:
    """Record that these canaries reached a worker (a second delivery changes nothing)."""
    ids = [int(k) for k in keys if k.isdigit()]
    return db.execute(ARRIVED, (ids,)) if ids else 0


def latest_canary(db: Database) -> CanaryState | None:
    """Return the newest canary that came through, else the newest sent, else None."""
    row = db.fetch_one(LATEST)
    if row is None:
        return None
    latency = float(row[2]) if row[2] is not None else None
    return CanaryState(row[0], row[1], latency)


def stall(db: Database, stall_seconds: float) -> Stall:
    """Judge the flow of canaries now (read only: `guard status` asks this too)."""
    row = db.fetch_one(FLOW)
    assert row is not None
    return judge_stall(row[0], row[1], row[2], stall_seconds)


def evaluate(db: Database, stall_seconds: int) -> tuple[Changes, Stall]:
    """Open pipeline_stalled when the canaries stopped, resolve it when they flow, in one transaction.

    Returns what changed and the judgement itself (beat keeps delivering while it says stalled).
    """
    with db.transaction():
        store.lock_subjects(db, [SUBJECT])
        now = stall(db, stall_seconds)
        found = [now.finding(stall_seconds)] if now.stalled else []
        return store.reconcile(db, SCOPE, found), now


def came_through(db: Database, keys: Sequence[str]) -> Changes:
    """A worker's part, in its transaction: record the canaries and resolve a stall they end."""
    if not arrived(db, keys):
        return Changes()
    store.lock_subjects(db, [SUBJECT])
    return store.reconcile(db, SCOPE, [])


def prune(db: Database, keep_seconds: int = KEEP_SECONDS, keep_rows: int = KEEP_ROWS) -> int:
    """Delete canaries older than a day, and all but the newest `keep_rows`."""
    return db.execute(PRUNE, (keep_seconds, keep_rows))
