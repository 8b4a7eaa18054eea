"""Heartbeats: every long-running process records that it lives; `guard status` judges who is missing.

The listener, the uploads watcher, each Celery worker and beat upsert one row of guard.heartbeats every
HEARTBEAT_SECONDS (watchers/pulse.py runs the loop; this module writes and reads the rows). A row
older than HEARTBEAT_STALE_SECONDS is a stale process; a process kind with no row at all is missing.
A process that stops cleanly deletes its row (so it is missing, not stale); rows nobody refreshed for
FORGET_SECONDS (a host that went away) are pruned by beat.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from guard.db.database import Database, Row

LISTENER, WATCHER, WORKER, BEAT = "listener", "watcher", "worker", "beat"
PROCESSES = (LISTENER, WATCHER, WORKER, BEAT)
FORGET_SECONDS = 86400
# A stale instance of a kind that has a living one is "replaced" (shown, not a problem) once it has been
# stale this long: long enough for `guard status` and the stale alert to have said so, short of the
# day a false exit 3 would last after every recreated container until the prune.
REPLACED_AFTER_S = 600.0
REPLACED_FACTOR = 10

RECORD = """
INSERT INTO guard.heartbeats (process, instance, host, pid, seen_at)
VALUES (%s, %s, %s, %s, clock_timestamp())
ON CONFLICT (process, instance) DO UPDATE
SET host = EXCLUDED.host, pid = EXCLUDED.pid, seen_at = EXCLUDED.seen_at
"""
FORGET = "DELETE FROM guard.heartbeats WHERE process = %s AND instance = %s AND pid = %s"
READ = "SELECT process, instance, host, pid, seen_at FROM guard.heartbeats ORDER BY process, instance"
PRUNE = "DELETE FROM guard.heartbeats WHERE seen_at < clock_timestamp() - make_interval(secs => %s)"


@dataclass(frozen=True)
class Heartbeat:
    """One process's last sign of life."""

    process: str
    instance: str
    host: str | None
    pid: int | None
    seen_at: datetime

    @classmethod
    def from_row(cls, row: Row) -> Heartbeat:
        pid = int(row[3]) if row[3] is not None else None
        return cls(str(row[0]), str(row[1]), row[2], pid, row[4])


@dataclass(frozen=True)
class ProcessState:
    """One heartbeat judged against the stale threshold (or a kind with none: missing)."""

    process: str
    instance: str | None
    host: str | None
    pid: int | None
    age_seconds: float | None
    state: str  # alive | stale | replaced | missing

    @property
    def ok(self) -> bool:
        return self.state == "alive"

    @property
    def problem(self) -> bool:
        """Stale or missing; a replaced instance (another of its kind alive for long) is shown, not one."""
        return self.state in ("stale", "missing")

    def to_json(self) -> dict[str, Any]:
        age = None if self.age_seconds is None else round(self.age_seconds, 1)
        return {
            "process": self.process,
            "instance": self.instance,
            "host": self.host,
            "pid": self.pid,
            "age_s": age,
            "state": self.state,
            "alive": self.ok,
        }


def record(db: Database, process: str, instance: str, host: str, pid: int) -> None:
    """Upsert this process's heartbeat with the server's clock (hosts' clocks may disagree)."""
    db.execute(RECORD, (process, instance, host, pid))


def forget(db: Database, process: str, instance: str, pid: int) -> None:
    """Delete this process's row when it stops cleanly (another pid reusing the instance keeps it)."""
    db.execute(FORGET, (process, instance, pid))


def read_heartbeats(db: Database) -> list[Heartbeat]:
    """Return every recorded heartbeat, by process and instance."""
    return [Heartbeat.from_row(r) for r in db.fetch_all(READ)]


def prune(db: Database, older_than_seconds: int = FORGET_SECONDS) -> int:
    """Forget processes not heard of for `older_than_seconds` (a host that is gone)."""
    return db.execute(PRUNE, (older_than_seconds,))


def judge(
    beats: Iterable[Heartbeat], now: datetime, stale_seconds: float, expected: Iterable[str]
) -> list[ProcessState]:
    """Judge each heartbeat alive or stale, and add a missing entry per expected kind with no row."""
    states = []
    beats = list(beats)
    alive_kinds = {b.process for b in beats if (now - b.seen_at).total_seconds() <= stale_seconds}
    replaced_after = max(REPLACED_AFTER_S, REPLACED_FACTOR * stale_seconds)
    for beat in beats:
        age = max(0.0, (now - beat.seen_at).total_seconds())
        state = "alive" if age <= stale_seconds else "stale"
        if state == "stale" and age > replaced_after and beat.process in alive_kinds:
            state = "replaced"  # a container recreated under a new name: its old row waits for the prune
        states.append(ProcessState(beat.process, beat.instance, beat.host, beat.pid, age, state))
    seen = {s.process for s in states}
    states += [ProcessState(p, None, None, None, None, "missing") for p in expected if p not in seen]
    order = {p: i for i, p in enumerate(PROCESSES)}
    return sorted(states, key=lambda s: (order.get(s.process, len(order)), s.process, s.instance or ""))
