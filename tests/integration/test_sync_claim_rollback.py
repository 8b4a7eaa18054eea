"""A task whose claim never committed (the listener died between publish and commit) loses no change.

The listener publishes a batch inside the claim's transaction; kill -9 between the publish and the
commit rolls the claim back while the task is already in Redis. A worker then checks the row and
marks the outbox entry processed, although no dispatch of it ever committed. The ordering that
test_sync_failures.py's listener kill hit about one run in 24, forced here step by step.
"""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from guard.config.settings import Settings
from guard.continuous import outbox
from guard.continuous.capture import install
from guard.continuous.outbox import Change
from guard.continuous.process import process_rows
from guard.db.database import Database
from guard.findings import ledger as store

pytestmark = pytest.mark.integration


class ListenerDied(Exception):
    """What ends the claim's transaction without a commit, as kill -9 of the listener does."""


@pytest.fixture
def settings(db_url: str, tmp_path: Path) -> Settings:
    s = Settings(database_url=db_url, uploads_root=tmp_path)
    with Database(db_url) as db:
        db.execute("INSERT INTO users (id, email) VALUES (1, 'a@example.com')")
        db.execute("INSERT INTO categories (id, name, slug) VALUES (1, 'Cars', 'cars')")
        install(db, s)
        db.execute("INSERT INTO ads (id, title, slug, category_id, user_id) VALUES (5, 't', NULL, 1, 1)")
    return s


def _check(settings: Settings, changes: list[Change]) -> None:
    """Do what a worker does with the tasks these changes were published as."""
    for batch in outbox.group(changes):
        process_rows(settings, batch.table, batch.keys, batch.paths, batch.ids)


def _drain(db: Database, settings: Settings) -> None:
    """A new listener with a worker: collect, claim and check until nothing is left to claim."""
    while True:
        outbox.collect(db)
        with outbox.claim(db, 100, 30) as changes:
            pass
        if not changes:
            return
        _check(settings, changes)


def _open(db: Database) -> list[tuple[str, str]]:
    return [(f.kind, f.subject) for f in store.list_findings(db, open_only=True)]


def test_a_change_after_a_check_whose_claim_died_is_still_checked(settings: Settings) -> None:
    """The task runs after the rollback; the row takes in a later change, which must be checked too."""
    with Database(settings.require_database_url()) as db:
        outbox.collect(db)
        published: list[Change] = []
        with pytest.raises(ListenerDied), outbox.claim(db, 100, 30) as changes:
            published += changes  # published: the task is in Redis
            raise ListenerDied
        _check(settings, published)  # the worker takes the task that outlived its claim
        assert _open(db) == [("ads.slug.required", "ads:5")]

        db.execute("UPDATE ads SET slug = 'Bad Slug' WHERE id = 5")
        _drain(db, settings)
        assert outbox.backlog(db) == 0
        assert _open(db) == [("ads.slug.format", "ads:5")]


def test_a_check_waiting_on_a_claim_that_dies_leaves_the_row_to_be_sent_again(settings: Settings) -> None:
    """The worker's mark waits on the claim's row lock; the claim rolls back; the row is not done."""
    url = settings.require_database_url()
    with Database(url) as db, Database(url) as watcher:
        outbox.collect(db)
        worker: threading.Thread | None = None
        with pytest.raises(ListenerDied), outbox.claim(db, 100, 30) as changes:
            worker = threading.Thread(target=_check, args=(settings, list(changes)))
            worker.start()
            _wait_until_blocked(watcher, db)
            raise ListenerDied
        assert worker is not None
        worker.join(30)
        assert not worker.is_alive() and _open(db) == [("ads.slug.required", "ads:5")]  # it did check
        with outbox.claim(db, 100, 30) as again:
            assert [c.key for c in again] == ["5"]


def test_a_check_waiting_on_a_claim_that_commits_marks_the_row_processed(settings: Settings) -> None:
    """The same wait, and the claim commits: the row is done now, not re-sent once its lease ends."""
    url = settings.require_database_url()
    with Database(url) as db, Database(url) as watcher:
        outbox.collect(db)
        with outbox.claim(db, 100, 30) as changes:
            worker = threading.Thread(target=_check, args=(settings, list(changes)))
            worker.start()
            _wait_until_blocked(watcher, db)
        worker.join(30)
        assert not worker.is_alive() and outbox.backlog(db) == 0
        assert _open(db) == [("ads.slug.required", "ads:5")]


def _wait_until_blocked(watcher: Database, holder: Database) -> None:
    """Wait until some session waits for a lock the holder's transaction holds (no timing decides)."""
    pid = holder.fetch_one("SELECT pg_backend_pid()")
    assert pid is not None
    blocked = "SELECT count(*) FROM pg_stat_activity WHERE %s = ANY(pg_blocking_pids(pid))"
    for _ in range(3000):
        row = watcher.fetch_one(blocked, (pid[0],))
        if row and int(row[0]) > 0:
            return
        watcher.fetch_one("SELECT pg_sleep(0.01)")
    raise AssertionError("the worker never waited for the claim's lock")
