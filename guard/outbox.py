"""The durable outbox: collect what the capture triggers logged, claim a batch, lease it, mark it processed.

The triggers append each change to guard.capture (cheap for the app's writes); `collect` moves them
into guard.outbox, coalesced per row, and deletes them, in one transaction. Both tables are durable.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass

from guard.database import Database, Row, load_query

CHANNEL = "guard_outbox"

MARK_PROCESSED = "UPDATE guard.outbox SET processed_at = now() WHERE id = ANY(%s) AND processed_at IS NULL"
# Changes still to check: coalesced ones in the outbox plus those not yet collected (one per write).
BACKLOG = """
SELECT (SELECT count(*) FROM guard.outbox WHERE processed_at IS NULL) + (SELECT count(*) FROM guard.capture)
"""
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
def claim(db: Database, limit: int, lease_seconds: int) -> Iterator[list[Change]]:
    """Claim up to `limit` collected changes; they count as dispatched only if the block exits cleanly."""
    with db.transaction():
        rows = db.fetch_all(load_query("outbox_claim"), {"limit": limit, "lease": lease_seconds})
        yield [Change.from_row(r) for r in rows]


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
    return db.execute(MARK_PROCESSED, (list(ids),))


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
