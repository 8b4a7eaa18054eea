"""Findings that live: opened by a failing check, refreshed while they fail, resolved when they pass."""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from guard.db.database import Database, Row, load_query
from guard.findings.finding import Finding

NOW = "SELECT now()"
CLOCK = "SELECT clock_timestamp()"
# clock_timestamp() is evaluated once the aggregate has taken every lock: when they were all held.
LOCK_SUBJECTS = """
SELECT count(pg_advisory_xact_lock(h)), clock_timestamp() FROM (
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


def clock_now(db: Database) -> datetime:
    """Return the server's clock_timestamp(): now, even inside a long transaction."""
    row = db.fetch_one(CLOCK)
    assert row is not None
    return row[0]  # type: ignore[no-any-return]


def lock_subjects(db: Database, subjects: Iterable[str]) -> datetime:
    """Serialize checks of the same subjects until the transaction ends; return when they were held.

    Call it once per transaction with every subject (one sorted call cannot deadlock with another).
    The returned clock_timestamp() is when the data read next was read: the transaction's now() may
    be much earlier when the locks were waited for, and a sweep started in between must not count
    the evidence as older than its own.
    """
    row = db.fetch_one(LOCK_SUBJECTS, (sorted(set(subjects)),))  # one round trip, not two
    assert row is not None
    return row[1]  # type: ignore[no-any-return]


def reconcile(
    db: Database,
    scope: Scope,
    findings: Sequence[Finding],
    since: datetime | None = None,
    seen: datetime | None = None,
) -> Changes:
    """Open or refresh `findings` and resolve what in `scope` was not seen since `since`.

    Given `since` (a check that started earlier), a finding some newer check resolved or refreshed
    after `since` is left as that check decided: the older snapshot must not reopen a fix.
    `seen` is when the check read its data (default `since`, else the server's clock): it becomes
    the refreshed findings' last_seen, so a later reconciliation compares evidence by when it was read.
    """
    unique = {(f.check, f.kind, f.subject): f for f in findings}
    if since is not None and unique:
        checks = sorted({f.check for f in findings})
        for key in db.fetch_all(DECIDED_SINCE, (checks, since, since)):
            unique.pop((str(key[0]), str(key[1]), str(key[2])), None)
    seen = seen or since or clock_now(db)
    since = since or seen
    opened = refreshed = 0
    opening = None
    if unique:
        opening = db.submit(load_query("store_open"), {**_columns(list(unique.values())), "seen": seen})
    params = {
        "check": scope.check,
        "kinds": list(scope.kinds) if scope.kinds is not None else None,
        "subjects": list(scope.subjects) if scope.subjects is not None else None,
        "since": since,
    }
    # a row or path check names its kinds and subjects: a statement that can only look them up
    scoped = scope.kinds is not None and scope.subjects is not None
    # both sent before either is read: one round trip in a pipeline (the resolve runs after the open)
    resolving = db.submit(load_query("store_resolve_subjects" if scoped else "store_resolve"), params)
    if opening is not None:
        row = opening.one()
        opened, refreshed = (int(row[0]), int(row[1])) if row else (0, 0)
    row = resolving.one()
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
