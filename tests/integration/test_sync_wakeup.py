"""Wake-ups: triggers notify only while a listener is idle, and a write racing the idle flip is not lost."""

from __future__ import annotations

import threading

import psycopg
import pytest

from guard import outbox
from guard.database import Database
from guard.install import install
from guard.settings import Settings
from watchers import listener as listener_module
from watchers.lifecycle import StopFlag
from watchers.listener import Listener

pytestmark = pytest.mark.integration

INSERT_AD = "INSERT INTO ads (title, slug, category_id, user_id) VALUES ('t', %s, 1, 1) RETURNING id"


def _installed(db_url: str) -> None:
    with Database(db_url) as db:
        db.execute("INSERT INTO users (id, email) VALUES (1, 'a@example.com')")
        db.execute("INSERT INTO categories (id, name, slug) VALUES (1, 'Cars', 'cars')")
        install(db, Settings(database_url=db_url))


def _notified(db_url: str, idle: bool) -> bool:
    with psycopg.connect(db_url, autocommit=True) as watcher, Database(db_url) as db:
        outbox.set_listener_idle(db, idle)
        watcher.execute("LISTEN guard_outbox")
        db.execute(INSERT_AD, (f"s-{idle}-1",))
        db.execute("UPDATE ads SET slug = slug || 'x' WHERE slug = %s", (f"s-{idle}-1",))
        return bool(list(watcher.notifies(timeout=2, stop_after=1)))


def test_triggers_notify_only_while_a_listener_is_idle(db_url: str) -> None:
    _installed(db_url)
    assert _notified(db_url, idle=True)
    assert not _notified(db_url, idle=False)
    with Database(db_url) as db:  # the captured change is the record either way
        assert outbox.backlog(db) == 4  # two writes to each of two ads, not collected yet
        outbox.collect(db)
        assert outbox.backlog(db) == 2  # one coalesced outbox row per ad


class _Recorder:
    """A publish function that remembers every dispatched key and can wait for one."""

    def __init__(self) -> None:
        self.keys: set[str] = set()
        self.seen = threading.Condition()

    def __call__(self, batch: outbox.Batch) -> None:
        with self.seen:
            self.keys.update(batch.keys)
            self.seen.notify_all()

    def wait_for(self, key: str) -> bool:
        with self.seen:
            return self.seen.wait_for(lambda: key in self.keys, timeout=30)


def test_a_write_racing_the_idle_flip_is_still_dispatched(
    db_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The writer's trigger reads "busy", the listener goes idle and re-checks before the commit."""
    _installed(db_url)
    stop, record = StopFlag(), _Recorder()
    settings = Settings(database_url=db_url)
    listener = Listener(settings, record, stop)
    flipped, committed = threading.Event(), threading.Event()
    real_wait = listener.wait_for_wakeup

    def wait_after_commit(conn: psycopg.Connection[object]) -> None:
        flipped.set()  # idle and re-checked: only now does the racing writer commit
        committed.wait(10)
        real_wait(conn)

    monkeypatch.setattr(listener, "wait_for_wakeup", wait_after_commit)
    monkeypatch.setattr(listener_module, "WAIT_S", 0.5)
    with Database(db_url) as writer:
        outbox.set_listener_idle(writer, False)
        with writer.transaction():
            row = writer.fetch_one(INSERT_AD, ("raced-1",))  # trigger sees "busy": no notify
            thread = threading.Thread(target=listener.run, daemon=True)
            thread.start()
            assert flipped.wait(30)
        committed.set()
    try:
        assert row is not None and record.wait_for(str(row[0]))
    finally:
        stop.set()
        thread.join(10)


def test_a_write_after_the_listener_went_idle_wakes_it(db_url: str) -> None:
    _installed(db_url)
    stop, record = StopFlag(), _Recorder()
    listener = Listener(Settings(database_url=db_url), record, stop)
    thread = threading.Thread(target=listener.run, daemon=True)
    thread.start()
    try:
        with Database(db_url) as db:
            while not db.fetch_one("SELECT idle FROM guard.listener_state")[0]:  # type: ignore[index]
                stop.wait(0.01)
            with psycopg.connect(db_url, autocommit=True) as watcher:
                watcher.execute("LISTEN guard_outbox")
                row = db.fetch_one(INSERT_AD, ("woken-1",))
                assert list(watcher.notifies(timeout=5, stop_after=1))
        assert row is not None and record.wait_for(str(row[0]))
    finally:
        stop.set()
        thread.join(10)
