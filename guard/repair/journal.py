"""The repair ledger in guard's schema: runs and every change they made, created on first use.

Any kind of repair records itself here: `record_run(db, kind, backup_id, changes)` in one go, or
`open_run` then `record_changes` batch by batch inside the transactions that make the changes, so
the ledger never says more or less than what was done. A run that cannot be undone change by change
(a drift repair recorded as its statements) is recorded with undoable=False; undo then refuses it
and names its backup instead.
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from guard.db.database import Database, load_query
from guard.errors import UsageError

CHANGES_OF = "SELECT subject, before, after FROM guard.repair_changes WHERE run_id = %s ORDER BY seq"
RUN_BY_ID = (
    "SELECT id, kind, started_at, backup_id, undoable, undone_at, detail,"
    " (SELECT count(*) FROM guard.repair_changes c WHERE c.run_id = r.id)"
    " FROM guard.repair_runs r WHERE r.id = %s"
)
INSERT_RUN = (
    "INSERT INTO guard.repair_runs (id, kind, backup_id, undoable, detail) VALUES (%s, %s, %s, %s, %s)"
)
MARK_UNDONE = "UPDATE guard.repair_runs SET undone_at = now() WHERE id = %s AND undone_at IS NULL"
LEDGER_EXISTS = "SELECT to_regclass('guard.repair_runs') IS NOT NULL"


@dataclass(frozen=True)
class Change:
    """One thing a repair changed: what (`ads:12`, `file:uploads/ads/x.webp`), from what, to what."""

    subject: str
    before: str | None
    after: str | None

    def to_json(self) -> dict[str, Any]:
        return {"subject": self.subject, "before": self.before, "after": self.after}


@dataclass(frozen=True)
class Run:
    """One recorded repair run."""

    id: str
    kind: str
    started_at: datetime
    backup_id: str | None
    undoable: bool
    undone_at: datetime | None
    changes: int
    detail: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_row(cls, row: Sequence[Any]) -> Run:
        return cls(
            str(row[0]), str(row[1]), row[2], row[3], bool(row[4]), row[5], int(row[7]), dict(row[6] or {})
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "kind": self.kind,
            "started_at": self.started_at.isoformat(),
            "backup_id": self.backup_id,
            "changes": self.changes,
            "undoable": self.undoable,
            "undone": self.undone_at is not None,
            "undone_at": None if self.undone_at is None else self.undone_at.isoformat(),
            "detail": self.detail,
        }


def ensure_ledger(db: Database) -> None:
    """Create guard's schema and the ledger tables if they are not there yet."""
    with db.transaction():
        db.execute(load_query("repair_ledger"))


def new_run_id(kind: str) -> str:
    """Return a run id that sorts by time and says its kind: `20261201T130501Z-slugs-1a2b3c`."""
    return f"{datetime.now(UTC):%Y%m%dT%H%M%SZ}-{kind}-{secrets.token_hex(3)}"


def open_run(
    db: Database,
    kind: str,
    backup_id: str | None,
    *,
    undoable: bool = True,
    detail: dict[str, Any] | None = None,
) -> str:
    """Record a new run with no changes yet and return its id."""
    ensure_ledger(db)
    run_id = new_run_id(kind)
    db.execute(INSERT_RUN, (run_id, kind, backup_id, undoable, json.dumps(detail or {})))
    return run_id


def record_changes(db: Database, run_id: str, changes: Sequence[Change]) -> None:
    """Record changes of a run; call inside the transaction that made them."""
    if not changes:
        return
    db.execute(
        load_query("repair_changes_record"),
        {
            "run": run_id,
            "subjects": [c.subject for c in changes],
            "befores": [c.before for c in changes],
            "afters": [c.after for c in changes],
        },
    )


def record_run(
    db: Database,
    kind: str,
    backup_id: str | None,
    changes: Sequence[Change],
    *,
    undoable: bool = True,
    detail: dict[str, Any] | None = None,
) -> str:
    """Record a finished run and all its changes at once (a drift repair: its statements, not undoable)."""
    run_id = open_run(db, kind, backup_id, undoable=undoable, detail=detail)
    with db.transaction():
        record_changes(db, run_id, changes)
    return run_id


def list_runs(db: Database) -> list[Run]:
    """Return every run, newest first; none when no repair ever ran."""
    row = db.fetch_one(LEDGER_EXISTS)
    if not row or not row[0]:
        return []
    return [Run.from_row(r) for r in db.fetch_all(load_query("repair_runs_list"))]


def find_run(db: Database, run_id: str) -> Run:
    """Return one run, or fail naming the id."""
    row = db.fetch_one(LEDGER_EXISTS)
    found = db.fetch_one(RUN_BY_ID, (run_id,)) if row and row[0] else None
    if found is None:
        raise UsageError(f"no repair run {run_id!r} (see `guard repair list`)")
    return Run.from_row(found)


def changes_of(db: Database, run_id: str) -> list[Change]:
    """Return a run's changes in the order they were made."""
    return [Change(str(s), b, a) for s, b, a in db.fetch_all(CHANGES_OF, (run_id,))]


def mark_undone(db: Database, run_id: str) -> bool:
    """Mark a run undone; False when another undo got there first."""
    return db.execute(MARK_UNDONE, (run_id,)) == 1
