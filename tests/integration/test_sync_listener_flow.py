"""The listener's pace: no batch window when idle, a stream drained back to back, held claims."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

import psycopg
import pytest

from guard.config.settings import Settings
from guard.continuous import outbox
from guard.continuous.capture import install
from guard.db.database import Database
from watchers import listener as listener_module
from watchers.lifecycle import StopFlag
from watchers.listener import STREAM_CHANGES, Listener

pytestmark = pytest.mark.integration

NO_POLL_S = 3600.0  # a poll this slow never fires during a test: what is found came some other way
INSERT_AD = "INSERT INTO ads (title, slug, category_id, user_id) VALUES ('t', %s, 1, 1) RETURNING id"
IDLE = "SELECT idle FROM guard.listener_state"


def _installed(db_url: str) -> None:
    with Database(db_url) as db:
        db.execute("INSERT INTO users (id, email) VALUES (1, 'a@example.com')")
        db.execute("INSERT INTO categories (id, name, slug) VALUES (1, 'Cars', 'cars')")
        install(db, Settings(database_url=db_url))


class _Recorder:
    """A publish function that keeps every batch and can wait for a key."""

    def __init__(self) -> None:
        self.batches: list[tuple[str, ...]] = []
        self.seen = threading.Condition()

    def __call__(self, batch: outbox.Batch) -> None:
        with self.seen:
            self.batches.append(batch.keys)
            self.seen.notify_all()

    def wait_for(self, keys: set[str], timeout: float = 30) -> bool:
        with self.seen:
            return self.seen.wait_for(lambda: keys <= {k for b in self.batches for k in b}, timeout=timeout)


class _FlagSpy:
    """Every value the listener sets the flag to, kept once the update has run (a flag seen up here
    is up for the writers too); `downs` is released each time it is taken down."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.flags: list[bool] = []
        self.downs = threading.Semaphore(0)
        self.real_set_idle = outbox.set_listener_idle
        monkeypatch.setattr(outbox, "set_listener_idle", self.set_idle)

    def set_idle(self, db: Database, idle: bool) -> None:
        self.real_set_idle(db, idle)
        self.flags.append(idle)
        if not idle:
            self.downs.release()

    def wait_up_again(self, timeout: float = 30) -> None:
        """Wait until the flag, once taken down, is up again (the stream's window has to pass)."""
        deadline = time.monotonic() + timeout
        while not (False in self.flags and self.flags[-1] is True) and time.monotonic() < deadline:
            time.sleep(0.01)


def _run(listener: Listener) -> threading.Thread:
    thread = threading.Thread(target=listener.run, daemon=True)
    thread.start()
    return thread


def _stop(thread: threading.Thread, stop: StopFlag, db_url: str) -> None:
    stop.set()
    with psycopg.connect(db_url, autocommit=True) as conn:
        conn.execute("NOTIFY " + outbox.CHANNEL)
    thread.join(10)
    assert not thread.is_alive()


def _write(db_url: str, slugs: list[str]) -> set[str]:
    with Database(db_url) as db:
        return {str(row[0]) for s in slugs if (row := db.fetch_one(INSERT_AD, (s,))) is not None}


def test_a_trickle_of_writes_is_sent_one_by_one_and_the_listener_stays_idle(
    db_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With no poll, only notifies can wake it: each write is sent on its own, and the flag stays up
    between them (the triggers keep notifying without two flag updates per write)."""
    _installed(db_url)
    monkeypatch.setattr(listener_module, "WAIT_S", NO_POLL_S)
    stop, record = StopFlag(), _Recorder()
    thread = _run(Listener(Settings(database_url=db_url), record, stop))
    try:
        for n in range(3):
            keys = _write(db_url, [f"trickle-{n}-1"])
            assert record.wait_for(keys), f"write {n} did not wake the listener"
            with Database(db_url) as db:
                row = db.fetch_one(IDLE)
                assert row is not None and row[0] is True
        assert len(record.batches) == 3
    finally:
        _stop(thread, stop, db_url)


def test_a_stream_takes_the_flag_down_and_is_all_sent(db_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """A stream's worth of changes stops the notifies; the listener drains back to back, polling,
    until a window passes with (almost) nothing, then puts the flag up again."""
    _installed(db_url)
    monkeypatch.setattr(listener_module, "WAIT_S", NO_POLL_S)
    stop, record = StopFlag(), _Recorder()
    listener = Listener(Settings(database_url=db_url), record, stop)
    spy = _FlagSpy(monkeypatch)
    with Database(db_url) as writer, writer.transaction():  # one commit: the stream arrives at once
        keys = {
            str(r[0]) for s in range(STREAM_CHANGES * 2) if (r := writer.fetch_one(INSERT_AD, (f"s-{s}-1",)))
        }
    thread = _run(listener)
    try:
        assert record.wait_for(keys)
        spy.wait_up_again()
        assert False in spy.flags and spy.flags[-1] is True, f"flags set: {spy.flags}"
        more = _write(db_url, ["after-the-stream-1"])  # only a notify can bring this one: flag back up
        assert record.wait_for(more), "a write after the stream did not wake the listener"
    finally:
        _stop(thread, stop, db_url)


def test_a_steady_stream_of_single_row_commits_takes_the_flag_down(
    db_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A stream is judged by its rate, not by one drain: a listener woken by every commit finds only a
    few changes each time, and must still stop the notifies (each serializes the writers' commits).
    The window is widened to 5 s so that 100 writes a second (a drain of one change each) is a
    stream here, on a loaded machine too; the writer is paced so that no drain finds many at once."""
    _installed(db_url)
    monkeypatch.setattr(listener_module, "WAIT_S", NO_POLL_S)
    monkeypatch.setattr(listener_module, "STREAM_WINDOW_S", 5.0)
    stop, record = StopFlag(), _Recorder()
    spy = _FlagSpy(monkeypatch)
    listener = Listener(Settings(database_url=db_url), record, stop)
    thread = _run(listener)
    keys: set[str] = set()
    try:
        with Database(db_url) as writer:
            n, until, down = 0, time.monotonic() + 20, False
            while not down and time.monotonic() < until:  # one commit per row, as the app writes
                row = writer.fetch_one(INSERT_AD, (f"steady-{n}-1",))
                assert row is not None
                keys.add(str(row[0]))
                n += 1
                down = spy.downs.acquire(timeout=0.01)  # pacing only: about 100 writes a second
        assert down, f"{n} single-row commits never took the flag down"
        assert record.wait_for(keys), "not every change of the stream was sent"
        spy.wait_up_again()
        assert spy.flags[-1] is True, "the flag stayed down after the stream"
        more = _write(db_url, ["after-the-steady-stream-1"])  # only a notify can bring it now
        assert record.wait_for(more), "a write after the stream did not wake the listener"
    finally:
        _stop(thread, stop, db_url)


def test_a_streaming_listener_takes_the_flag_down_again_after_another_puts_it_up(
    db_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A second listener whose poll timed out puts the flag up (it cannot tell a streaming listener
    from a dead one); the streaming one takes it down again, or every write of the stream would
    notify from then on."""
    _installed(db_url)
    monkeypatch.setattr(listener_module, "WAIT_S", NO_POLL_S)
    monkeypatch.setattr(listener_module, "STREAM_WINDOW_S", 5.0)
    monkeypatch.setattr(listener_module, "STREAM_REASSERT_S", 0.1)
    stop, record = StopFlag(), _Recorder()
    spy = _FlagSpy(monkeypatch)
    thread = _run(Listener(Settings(database_url=db_url), record, stop))
    try:
        with Database(db_url) as writer:
            writer.execute("SET synchronous_commit = off")

            def write_until(done: Callable[[], bool]) -> bool:
                until = time.monotonic() + 20
                while time.monotonic() < until:
                    writer.fetch_one(INSERT_AD, (f"re-{time.monotonic_ns()}-1",))
                    if done():
                        return True
                    time.sleep(0.005)  # pacing only
                return False

            assert write_until(lambda: spy.downs.acquire(blocking=False)), (
                "the stream never took the flag down"
            )
            while spy.downs.acquire(blocking=False):
                pass
            spy.real_set_idle(writer, True)  # another listener's poll, as it would
            assert write_until(lambda: spy.downs.acquire(blocking=False)), "the flag stayed up for the stream"
            row = writer.fetch_one(IDLE)
            assert row is not None and row[0] is False
    finally:
        _stop(thread, stop, db_url)


def test_claims_wait_while_every_worker_is_busy_and_go_out_as_one_batch(
    db_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """While a task waits in the queue, nothing new is claimed; what came meanwhile goes out together."""
    _installed(db_url)
    stop, record = StopFlag(), _Recorder()
    busy = threading.Event()
    busy.set()
    holding = threading.Event()

    def waiting() -> int:
        if busy.is_set():
            holding.set()
            return 1
        return 0

    listener = Listener(Settings(database_url=db_url), record, stop, waiting=waiting)
    monkeypatch.setattr(listener_module, "HOLD_S", NO_POLL_S)  # hold as long as the queue says busy
    thread = _run(listener)
    try:
        keys = _write(db_url, [f"held-{n}-1" for n in range(5)])
        assert holding.wait(30)
        assert not record.wait_for(keys, timeout=1), "a claim went out while every worker was busy"
        busy.clear()
        assert record.wait_for(keys)
        assert any(set(b) == keys for b in record.batches), f"not one batch: {record.batches}"
    finally:
        busy.clear()
        _stop(thread, stop, db_url)
