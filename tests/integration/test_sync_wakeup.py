"""Wake-ups: triggers notify only while a listener is idle, and a write racing the idle flip is not lost."""

from __future__ import annotations

import threading

import psycopg
import pytest

from guard.config.settings import Settings
from guard.continuous import outbox
from guard.continuous.capture import install
from guard.db.database import Database
from watchers import listener as listener_module
from watchers.lifecycle import StopFlag
from watchers.listener import Listener

pytestmark = pytest.mark.integration

NO_POLL_S = 3600.0  # a poll this slow never fires during a test: what is found came some other way
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

    def wait_for(self, key: str, timeout: float = 30) -> bool:
        with self.seen:
            return self.seen.wait_for(lambda: key in self.keys, timeout=timeout)


def _start(listener: Listener) -> threading.Thread:
    thread = threading.Thread(target=listener.run, daemon=True)
    thread.start()
    return thread


def _stop(thread: threading.Thread, stop: StopFlag, db_url: str) -> None:
    """Stop the listener, waking it from a wait of any length."""
    stop.set()
    with psycopg.connect(db_url, autocommit=True) as conn:
        conn.execute("NOTIFY " + outbox.CHANNEL)
    thread.join(10)
    assert not thread.is_alive()


def test_a_write_committed_just_after_the_idle_flip_is_found_by_the_re_check(
    db_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The writer's trigger reads "busy" and it commits right after the listener goes idle: no notify
    comes and the poll is made longer than the test, so only the listener's re-check can find it."""
    _installed(db_url)
    stop, record = StopFlag(), _Recorder()
    listener = Listener(Settings(database_url=db_url), record, stop)
    flipped, committed = threading.Event(), threading.Event()
    real_set_idle = outbox.set_listener_idle

    def set_idle_then_let_the_writer_commit(db: Database, idle: bool) -> None:
        real_set_idle(db, idle)
        if idle and not flipped.is_set():  # the listener's first flip, just before its re-check
            flipped.set()
            committed.wait(10)

    monkeypatch.setattr(listener_module, "WAIT_S", NO_POLL_S)
    monkeypatch.setattr(outbox, "set_listener_idle", set_idle_then_let_the_writer_commit)
    with Database(db_url) as writer:
        real_set_idle(writer, False)
        with writer.transaction():
            row = writer.fetch_one(INSERT_AD, ("raced-1",))  # trigger sees "busy": no notify
            thread = _start(listener)  # its first drain runs before the commit and finds nothing
            assert flipped.wait(30)
        committed.set()
    try:
        assert row is not None
        assert record.wait_for(str(row[0]), timeout=15), "the re-check after going idle missed the write"
    finally:
        _stop(thread, stop, db_url)


def test_a_write_still_uncommitted_at_the_re_check_is_found_by_the_poll(
    db_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The writer's trigger reads "busy", the listener goes idle and re-checks before the commit."""
    _installed(db_url)
    stop, record = StopFlag(), _Recorder()
    listener = Listener(Settings(database_url=db_url), record, stop)
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
            row = writer.fetch_one(INSERT_AD, ("raced-2",))  # trigger sees "busy": no notify
            thread = _start(listener)
            assert flipped.wait(30)
        committed.set()
    try:
        assert row is not None and record.wait_for(str(row[0]))
    finally:
        _stop(thread, stop, db_url)


def test_a_write_after_the_listener_went_idle_wakes_it(db_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """The write comes once the listener waits, and the poll is made longer than the test: only the
    trigger's notify can wake the listener to dispatch it."""
    _installed(db_url)
    monkeypatch.setattr(listener_module, "WAIT_S", NO_POLL_S)
    stop, record = StopFlag(), _Recorder()
    listener = Listener(Settings(database_url=db_url), record, stop)
    waiting = threading.Event()
    real_wait = listener.wait_for_wakeup

    def wait_and_say_so(conn: psycopg.Connection[object]) -> None:
        waiting.set()  # idle, re-checked, about to wait: a notify from now on stays queued for it
        real_wait(conn)

    monkeypatch.setattr(listener, "wait_for_wakeup", wait_and_say_so)
    thread = _start(listener)
    try:
        assert waiting.wait(30)
        with Database(db_url) as db:
            row = db.fetch_one(INSERT_AD, ("woken-1",))
        assert row is not None
        assert record.wait_for(str(row[0]), timeout=15), "the notify did not wake the idle listener"
    finally:
        _stop(thread, stop, db_url)
