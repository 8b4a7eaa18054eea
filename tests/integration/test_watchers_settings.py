"""The watchers read their settings from guard/config: a broken beat-only setting cannot stop them."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
from sync_stack import Stack, wait_for

from guard.config.settings import Settings
from guard.continuous.capture import install
from guard.db.database import Database

pytestmark = pytest.mark.integration

BROKEN_CRON = "every hour"  # not five cron fields: only the beat schedule (workers/schedule.py) reads it


@pytest.fixture
def stack(db_url: str, tmp_path: Path) -> Iterator[Stack]:
    root = tmp_path / "public"
    (root / "uploads" / "ads").mkdir(parents=True)
    with Database(db_url) as db:
        db.execute("INSERT INTO users (id, email) VALUES (1, 'a@example.com')")
        db.execute("INSERT INTO categories (id, name, slug) VALUES (1, 'Cars', 'cars')")
        install(db, Settings(database_url=db_url))
    s = Stack(db_url, root, tmp_path, sweep_cron=BROKEN_CRON)
    try:
        yield s
    finally:
        s.close()


def _undispatched(db_url: str) -> int:
    with Database(db_url) as db:
        row = db.fetch_one("SELECT count(*) FROM guard.outbox WHERE dispatched_at IS NULL")
        backlog = db.fetch_one("SELECT count(*) FROM guard.capture")
    return int(row[0]) + int(backlog[0]) if row and backlog else -1


def test_a_broken_sweep_cron_does_not_stop_the_listener(db_url: str, stack: Stack) -> None:
    listener = stack.listener()
    with Database(db_url) as db:
        db.execute("INSERT INTO ads (id, title, slug, category_id, user_id) VALUES (1, 't', 'ad-1', 1, 1)")
    wait_for(lambda: listener.poll() is not None or _undispatched(db_url) == 0, "the listener to drain")
    assert listener.poll() is None, stack.log("listener")
    assert _undispatched(db_url) == 0
    queued = redis.Redis.from_url(stack.redis_url).llen(f"{stack.prefix}events")
    assert queued >= 1  # the batch waits on the events queue for a worker
