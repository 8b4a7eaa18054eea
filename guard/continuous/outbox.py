"""The durable outbox: collect what the capture triggers logged, claim a batch, lease it, mark it processed.

The triggers append each change to guard.capture (cheap for the app's writes); `collect` moves them
into guard.outbox, coalesced per row, and deletes them, in one transaction. Both tables are durable.
A row whose check failed `max_attempts` times is parked as dead with a check_failed finding, so one
bad row cannot loop forever; `requeue` puts parked rows back.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from guard.db.database import Database, Pending, Row, load_query
from guard.findings import ledger as store
from guard.findings.finding import Finding

CHANNEL = "guard_outbox"

# Only a row whose dispatch committed is marked: a task can outlive its claim (the listener died
# between the publish and the commit), and its row, undispatched again, takes in later changes
# (outbox_collect.sql merges into it); marked processed, it would hide them for good. Left as it is,
# it is claimed and sent again, with them. The test is in SET, not WHERE, so that it is made on the
# row as the claim left it: a claim still open holds the row's lock, and the UPDATE waits for it and
# then re-reads the row; a WHERE condition would be judged on the undispatched row already committed
# and skip it without waiting (the row then waits out its lease).
MARK_PROCESSED = """
WITH marked AS (
    UPDATE guard.outbox SET processed_at = CASE WHEN dispatched_at IS NOT NULL THEN now() END
    WHERE id = ANY(%s) AND processed_at IS NULL
    RETURNING id, dead_at IS NOT NULL AS dead, processed_at IS NOT NULL AS done
)
SELECT id, dead FROM marked WHERE done
"""
# Changes still to check: coalesced ones in the outbox plus those not yet collected (one per write).
BACKLOG = """
SELECT (SELECT count(*) FROM guard.outbox WHERE processed_at IS NULL AND dead_at IS NULL)
     + (SELECT count(*) FROM guard.capture)
"""
RECORD_ERROR = """
UPDATE guard.outbox SET last_error = %s, failures = failures + 1 WHERE id = ANY(%s) AND processed_at IS NULL
"""
DEAD = """
SELECT id, tbl, row_key, attempts, last_error, dead_at, failures FROM guard.outbox
WHERE dead_at IS NOT NULL AND processed_at IS NULL ORDER BY id LIMIT %s
"""
REQUEUE = """
UPDATE guard.outbox SET dead_at = NULL, attempts = 0, failures = 0, lease_until = now()
WHERE dead_at IS NOT NULL AND processed_at IS NULL AND (%(all)s OR id = ANY(%(ids)s))
RETURNING id
"""
FAILED_CHECK, FAILED_KIND = "sync", "check_failed"
ERROR_CHARS = 1000
SENDS_PER_ATTEMPT = 4  # sends without a recorded failure (the worker died) that count as one failed check
SET_IDLE = "UPDATE guard.listener_state SET idle = %s, changed_at = now() WHERE idle IS DISTINCT FROM %s"
COLLECT_LIMIT = 5000  # capture rows moved per transaction: big enough to coalesce, short enough to hold
PRUNE = "DELETE FROM guard.outbox WHERE processed_at < now() - make_interval(secs => %s)"


@dataclass(frozen=True)
class Change:
    """One coalesced change to one row: its table, key and every file path it touched."""

    id: int
    table: str
    key: str
    paths: tuple[str, ...]
    attempts: int

    @classmethod
    def from_row(cls, row: Row) -> Change:
        return cls(int(row[0]), str(row[1]), str(row[2]), tuple(row[3] or ()), int(row[4]))


@dataclass(frozen=True)
class DeadRow:
    """A change parked after its check failed every time it was sent."""

    id: int
    table: str
    key: str
    attempts: int
    last_error: str | None
    dead_at: datetime | None = None
    failures: int = 0

    @classmethod
    def from_row(cls, row: Row) -> DeadRow:
        last = str(row[4]) if row[4] is not None else None
        return cls(int(row[0]), str(row[1]), str(row[2]), int(row[3]), last, row[5], int(row[6]))

    def finding(self) -> Finding:
        """The check_failed finding that names the table, the key and the last error."""
        why = self.last_error or "none recorded (the worker died or lost the task)"
        if self.failures:
            what = f"failed {self.failures} time{'s' if self.failures != 1 else ''}"
        else:
            what = f"was sent {self.attempts} times and never finished"
        message = (
            f"checking {self.table} row {self.key} {what}, so it is parked; "
            f"last error: {why}; re-queue with: guard outbox requeue {self.id}"
        )
        return Finding(FAILED_CHECK, FAILED_KIND, subject(self.id), message)

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "table": self.table,
            "key": self.key,
            "attempts": self.attempts,
            "failures": self.failures,
            "last_error": self.last_error,
            "dead_at": self.dead_at.isoformat() if self.dead_at else None,
        }


def subject(outbox_id: int) -> str:
    return f"outbox:{outbox_id}"


@dataclass(frozen=True)
class Batch:
    """The changes of one table in a claimed batch, as one unit of work."""

    table: str
    keys: tuple[str, ...]
    paths: tuple[str, ...]
    ids: tuple[int, ...]


def collect(db: Database, limit: int = COLLECT_LIMIT) -> int:
    """Move up to `limit` captured changes into the coalesced outbox; return how many were moved."""
    with db.transaction():
        row = db.fetch_one(load_query("outbox_collect"), {"limit": limit})
    return int(row[0]) if row else 0


@contextmanager
def claim(
    db: Database, limit: int, lease_seconds: int, max_attempts: int | None = None
) -> Iterator[list[Change]]:
    """Claim up to `limit` collected changes; they count as dispatched only if the block exits cleanly."""
    max_sends = None if max_attempts is None else max_attempts * SENDS_PER_ATTEMPT
    params = {"limit": limit, "lease": lease_seconds, "max_attempts": max_attempts, "max_sends": max_sends}
    with db.transaction():
        rows = db.fetch_all(load_query("outbox_claim"), params)
        yield [Change.from_row(r) for r in rows]


@contextmanager
def collect_and_claim(
    db: Database,
    limit: int,
    lease_seconds: int,
    max_attempts: int | None = None,
    collect_limit: int = COLLECT_LIMIT,
) -> Iterator[tuple[int, list[Change]]]:
    """Collect, then claim, as `collect` and `claim` do, in one round trip instead of six.

    Yield how many capture rows were collected and the claimed changes. The collect is its own
    transaction and commits before the claim begins (the server runs them in the order sent), so a
    worker that gets a claimed change before the claim commits can see its outbox row to mark it.
    The claim counts only if the block exits cleanly; on an error the connection is closed, which
    rolls the claim back (the collect stands: its rows wait in the outbox, undispatched).
    """
    max_sends = None if max_attempts is None else max_attempts * SENDS_PER_ATTEMPT
    params = {"limit": limit, "lease": lease_seconds, "max_attempts": max_attempts, "max_sends": max_sends}
    with db.pipeline():
        db.execute("BEGIN")
        collecting = db.submit(load_query("outbox_collect"), {"limit": collect_limit})
        db.execute("COMMIT")
        db.execute("BEGIN")
        claiming = db.submit(load_query("outbox_claim"), params)
        rows = claiming.all()  # the one round trip: every statement above has run
        moved = collecting.one()
        yield (int(moved[0]) if moved else 0), [Change.from_row(r) for r in rows]
        db.execute("COMMIT")


def park(db: Database, max_attempts: int) -> list[DeadRow]:
    """Park the rows whose check failed `max_attempts` times (or whose worker kept dying), with findings."""
    params = {"max_attempts": max_attempts, "max_sends": max_attempts * SENDS_PER_ATTEMPT}
    with db.transaction():
        rows = db.fetch_all(load_query("outbox_park"), params)
        dead = [DeadRow.from_row(r) for r in rows]
        findings = [d.finding() for d in dead]
        scope = store.Scope(FAILED_CHECK, (FAILED_KIND,), tuple(f.subject for f in findings))
        if dead:
            store.reconcile(db, scope, findings)
    return dead


def record_error(db: Database, ids: Sequence[int], error: str) -> None:
    """Keep why these rows' check failed, for the finding if they are parked."""
    db.execute(RECORD_ERROR, (error[:ERROR_CHARS], list(ids)))


def dead_rows(db: Database, limit: int = 50) -> list[DeadRow]:
    """Return the parked rows, oldest first."""
    return [DeadRow.from_row(r) for r in db.fetch_all(DEAD, (limit,))]


def requeue(db: Database, ids: Sequence[int] | None) -> list[int]:
    """Put parked rows (these, or all with None) back to be claimed; resolve their findings."""
    with db.transaction():
        rows = db.fetch_all(REQUEUE, {"all": ids is None, "ids": list(ids or ())})
        back = sorted(int(r[0]) for r in rows)
        if back:
            scope = store.Scope(FAILED_CHECK, (FAILED_KIND,), tuple(subject(i) for i in back))
            store.reconcile(db, scope, [])
    return back


def group(changes: Sequence[Change], size: int = 200) -> list[Batch]:
    """Split claimed changes into per-table batches of at most `size` keys."""
    by_table: dict[str, list[Change]] = {}
    for change in changes:
        by_table.setdefault(change.table, []).append(change)
    batches = []
    for table, items in sorted(by_table.items()):
        for start in range(0, len(items), size):
            chunk = items[start : start + size]
            paths = sorted({p for c in chunk for p in c.paths})
            batches.append(
                Batch(table, tuple(c.key for c in chunk), tuple(paths), tuple(c.id for c in chunk))
            )
    return batches


def mark_processed(db: Database, ids: Sequence[int]) -> int:
    """Mark these rows checked; a parked one a late delivery checked after all resolves its finding."""
    return marked(db, start_marking(db, ids))


def start_marking(db: Database, ids: Sequence[int]) -> Pending:
    """Send mark_processed's update without waiting (a worker sends it with its findings' statements)."""
    return db.submit(MARK_PROCESSED, (list(ids),))


def marked(db: Database, marking: Pending) -> int:
    """Finish start_marking: resolve the check_failed findings of parked rows checked after all."""
    rows = marking.all()
    revived = tuple(subject(int(r[0])) for r in rows if r[1])
    if revived:
        store.reconcile(db, store.Scope(FAILED_CHECK, (FAILED_KIND,), revived), [])
    return len(rows)


def set_listener_idle(db: Database, idle: bool) -> None:
    """Tell the capture triggers whether a listener waits for pg_notify (only then do they send it)."""
    db.execute(SET_IDLE, (idle, idle))


def backlog(db: Database) -> int:
    """Return how many changes are not yet processed."""
    row = db.fetch_one(BACKLOG)
    return int(row[0]) if row else 0


def prune(db: Database, older_than_seconds: int) -> int:
    """Delete changes processed more than `older_than_seconds` ago."""
    return db.execute(PRUNE, (older_than_seconds,))
