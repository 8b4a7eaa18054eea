"""Parking counts failed checks, not sends, and a late success resolves the parked row's finding (item 8).

A row re-sent because every worker was busy (its lease ran out while it waited in the queue) has
not failed: parking it would be a false check_failed alert and would stop checking it.
"""

from __future__ import annotations

import pytest

from guard.config.settings import Settings
from guard.continuous import outbox
from guard.continuous.capture import install
from guard.db.database import Database

pytestmark = pytest.mark.integration
MAX = 3


def _expire_and_claim(db: Database) -> list[outbox.Change]:
    db.execute("UPDATE guard.outbox SET lease_until = now() - interval '1 second'")
    with outbox.claim(db, limit=10, lease_seconds=600, max_attempts=MAX) as claimed:
        return claimed


def _fail_until_parked(db: Database) -> outbox.DeadRow:
    """Send the row MAX times, its check failing each time; then it is parked."""
    for attempt in range(MAX):
        (change,) = _expire_and_claim(db)
        outbox.record_error(db, [change.id], f"boom {attempt}")
    db.execute("UPDATE guard.outbox SET lease_until = now() - interval '1 second'")
    (dead,) = outbox.park(db, MAX)
    return dead


def _open_failed(db: Database) -> int:
    row = db.fetch_one(
        "SELECT count(*) FROM guard.findings WHERE kind = 'check_failed' AND resolved_at IS NULL"
    )
    return int(row[0]) if row else 0


@pytest.fixture
def one_change(db_url: str, tmp_path: object) -> Database:
    db = Database(db_url)
    db.__enter__()
    install(db, Settings(database_url=db_url, uploads_root=tmp_path))  # type: ignore[arg-type]
    db.execute("INSERT INTO guard.outbox (tbl, row_key) VALUES ('ads', '1')")
    return db


def test_a_row_re_sent_while_workers_were_busy_is_not_parked(one_change: Database) -> None:
    db = one_change
    for _ in range(MAX + 1):
        assert [c.key for c in _expire_and_claim(db)] == ["1"], "a row that never failed stops being sent"
    db.execute("UPDATE guard.outbox SET lease_until = now() - interval '1 second'")
    assert outbox.park(db, MAX) == []
    assert _open_failed(db) == 0
    db.__exit__(None, None, None)


def test_a_row_whose_check_failed_max_times_is_parked(one_change: Database) -> None:
    db = one_change
    dead = _fail_until_parked(db)
    assert "failed 3 times" in dead.finding().message and "boom 2" in dead.finding().message
    assert _expire_and_claim(db) == []
    assert _open_failed(db) == 1
    db.__exit__(None, None, None)


def test_a_parked_row_a_late_delivery_processes_resolves_its_finding(one_change: Database) -> None:
    db = one_change
    dead = _fail_until_parked(db)
    assert _open_failed(db) == 1
    with db.transaction():
        outbox.mark_processed(db, [dead.id])  # a copy still in the broker ran and succeeded
    assert _open_failed(db) == 0, "the check_failed finding of a row now processed stays open for good"
    db.__exit__(None, None, None)
