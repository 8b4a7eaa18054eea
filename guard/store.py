"""Findings that live: opened by a failing check, refreshed while they fail, resolved when they pass."""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from guard.database import Database, Row, load_query
from guard.finding import Finding

NOW = "SELECT now()"
LOCK_SUBJECTS = """
SELECT count(pg_advisory_xact_lock(h)) FROM (
    SELECT DISTINCT hashtextextended(s, 0) AS h FROM unnest(%s::text[]) s ORDER BY 1
) locks
"""

DECIDED_SINCE = """
SELECT check_name, kind, subject FROM guard.findings
WHERE check_name = ANY(%s) AND (resolved_at >= %s OR (resolved_at IS NULL AND last_seen >= %s))
"""


@dataclass(frozen=True)
class Scope:
    """What one check run looked at: its check, and the kinds and subjects it covered (None: all)."""

    check: str
    kinds: tuple[str, ...] | None = None
    subjects: tuple[str, ...] | None = None


@dataclass(frozen=True)
class Changes:
    """How many findings a reconciliation opened, refreshed and resolved."""

    opened: int = 0
    refreshed: int = 0
    resolved: int = 0

    def __add__(self, other: Changes) -> Changes:
        return Changes(
            self.opened + other.opened, self.refreshed + other.refreshed, self.resolved + other.resolved
        )


@dataclass(frozen=True)
class StoredFinding:
    """A finding as guard.findings keeps it."""

    id: int
    check: str
    kind: str
    subject: str
    message: str
    path: str | None
    first_seen: datetime
    last_seen: datetime
    occurrences: int
    resolved_at: datetime | None

    @classmethod
    def from_row(cls, row: Row) -> StoredFinding:
        return cls(*row)

    @property
    def is_open(self) -> bool:
        return self.resolved_at is None

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "check": self.check,
            "kind": self.kind,
            "subject": self.subject,
            "message": self.message,
            "path": self.path,
            "first_seen": self.first_seen.isoformat(),
            "last_seen": self.last_seen.isoformat(),
            "occurrences": self.occurrences,
            "resolved_at": self.resolved_at.isoformat() if self.resolved_at else None,
        }


def database_now(db: Database) -> datetime:
    """Return the server's now(), the mark a later reconciliation resolves against."""
    row = db.fetch_one(NOW)
    assert row is not None
    return row[0]  # type: ignore[no-any-return]


def lock_subjects(db: Database, subjects: Iterable[str]) -> None:
    """Serialize checks of the same subjects until the transaction ends (sorted: no deadlocks)."""
    db.execute(LOCK_SUBJECTS, (sorted(set(subjects)),))


def reconcile(
    db: Database, scope: Scope, findings: Sequence[Finding], since: datetime | None = None
) -> Changes:
    """Open or refresh `findings` and resolve what in `scope` was not seen since `since`.

    Given `since` (a check that started earlier), a finding some newer check resolved or refreshed
    after `since` is left as that check decided: the older snapshot must not reopen a fix.
    """
    unique = {(f.check, f.kind, f.subject): f for f in findings}
    if since is not None and unique:
        checks = sorted({f.check for f in findings})
        for key in db.fetch_all(DECIDED_SINCE, (checks, since, since)):
            unique.pop((str(key[0]), str(key[1]), str(key[2])), None)
    since = since or database_now(db)
    opened = refreshed = 0
    if unique:
        row = db.fetch_one(load_query("store_open"), _columns(list(unique.values())))
        opened, refreshed = (int(row[0]), int(row[1])) if row else (0, 0)
    params = {
        "check": scope.check,
        "kinds": list(scope.kinds) if scope.kinds is not None else None,
        "subjects": list(scope.subjects) if scope.subjects is not None else None,
        "since": since,
    }
    row = db.fetch_one(load_query("store_resolve"), params)
    return Changes(opened, refreshed, int(row[0]) if row else 0)


def list_findings(db: Database, open_only: bool = False) -> list[StoredFinding]:
    return [
        StoredFinding.from_row(r) for r in db.fetch_all(load_query("store_list"), {"open_only": open_only})
    ]


def _columns(findings: Sequence[Finding]) -> dict[str, list[Any]]:
    return {
        "checks": [f.check for f in findings],
        "kinds": [f.kind for f in findings],
        "subjects": [f.subject for f in findings],
        "messages": [f.message for f in findings],
        "paths": [f.path for f in findings],
        "details": [json.dumps(f.detail) if f.detail else None for f in findings],
    }
