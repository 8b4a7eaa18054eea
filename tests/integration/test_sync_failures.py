"""Kill -9 of the listener, kill -9 of the worker, a Redis restart, each in the middle of a stream of
writes: afterwards every changed row has been checked and the findings are exactly what a full check
of the final data finds, as if nothing had failed."""

from __future__ import annotations

import random
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from sync_stack import PrivateRedis, Stack, wait_for
from test_sync_pipeline import open_subjects

from guard.checks import CheckContext, integrity
from guard.config.settings import Settings
from guard.continuous import outbox
from guard.continuous.capture import install
from guard.db.database import Database

pytestmark = pytest.mark.integration

PACE_S = 0.02  # between two writes: a steady stream, not a burst (pace only; no outcome waits on it)
MOST_WRITES = 3000  # a bound, so a stack that never processes anything cannot write forever
BATCH = 20  # changes to see processed before the failure, and writes to see during and after it


@pytest.fixture
def prepared(db_url: str, tmp_path: Path) -> Path:
    root = tmp_path / "public"
    (root / "uploads" / "ads").mkdir(parents=True)
    with Database(db_url) as db:
        db.execute("INSERT INTO users (id, email) VALUES (1, 'a@example.com')")
        db.execute("INSERT INTO categories (id, name, slug) VALUES (1, 'Cars', 'cars')")
        install(db, Settings(database_url=db_url))
    return root


class Stream:
    """Insert good and bad ads and rewrite earlier ones in a thread, until finished; count the writes."""

    def __init__(self, db_url: str, seed: int) -> None:
        self.db_url, self.seed = db_url, seed
        self.written = 0
        self.finish = threading.Event()
        self.thread = threading.Thread(target=self.run, daemon=True)

    def run(self) -> None:
        rng = random.Random(self.seed)
        with Database(self.db_url) as db:
            for i in range(1, MOST_WRITES + 1):
                slug = rng.choice([f"ad-{i}", f"ad-{i}", "Bad Slug " + str(i), None])
                title = rng.choice(["A title", "A title", " "])
                if i > 20 and rng.random() < 0.3:
                    target = rng.randint(1, i - 1)
                    db.execute(
                        "UPDATE ads SET slug = %s, title = %s WHERE id = %s",
                        (slug if slug is None else f"{slug}-u{i}", title, target),
                    )
                else:
                    db.execute(
                        "INSERT INTO ads (id, title, slug, category_id, user_id) VALUES (%s, %s, %s, 1, 1)",
                        (i, title, slug),
                    )
                self.written = i
                if self.finish.wait(PACE_S):
                    return

    def wait_for_more(self, writes: int, what: str) -> None:
        """Wait until the stream has written this many more rows than now."""
        target = self.written + writes
        wait_for(lambda: self.written >= target, f"{writes} more writes {what}")


def processed(db_url: str) -> int:
    with Database(db_url) as db:
        row = db.fetch_one("SELECT count(*) FROM guard.outbox WHERE processed_at IS NOT NULL")
    return int(row[0]) if row else 0


def expected_findings(db_url: str) -> set[tuple[str, str]]:
    result = integrity.run(CheckContext(Settings(database_url=db_url), limit=None))
    return {(f.kind, f.subject) for f in result.findings}


def settle(db_url: str, supervise: Callable[[], None] = lambda: None) -> None:
    """Wait until every captured change has been processed (collected from guard.capture, too)."""

    def drained() -> bool:
        supervise()
        with Database(db_url) as db:
            return outbox.backlog(db) == 0

    wait_for(drained, "every change to be processed", timeout=90)


def run_with_failure(
    db_url: str, fail: Callable[[Stream], None], supervise: Callable[[], None] = lambda: None
) -> None:
    """Fail mid-stream: once some changes are processed, while writes go on before, during and after."""
    stream = Stream(db_url, seed=7)
    stream.thread.start()
    try:
        wait_for(lambda: processed(db_url) >= BATCH, "the stack to process the first changes", timeout=60)
        processed_before, written_before = processed(db_url), stream.written
        fail(stream)
        stream.wait_for_more(BATCH, "after the recovery")
    finally:
        stream.finish.set()
        stream.thread.join(30)
    settle(db_url, supervise)
    with Database(db_url) as db:
        unchecked = outbox.backlog(db)
        changes = db.fetch_one("SELECT count(*) FROM guard.outbox")
        captured = db.fetch_one("SELECT count(DISTINCT row_key) FROM guard.outbox")
        rows = db.fetch_one("SELECT count(*) FROM ads")
    # The failure landed mid-stream: some changes were processed before it, more were written after.
    assert 0 < processed_before < changes[0]  # type: ignore[index]
    assert written_before < stream.written
    assert unchecked == 0 and captured == rows
    expected = expected_findings(db_url)
    assert expected, "the stream must have written some bad rows"
    assert open_subjects(db_url) == expected


@pytest.fixture
def stack(db_url: str, prepared: Path, tmp_path: Path) -> Iterator[Stack]:
    s = Stack(db_url, prepared, tmp_path)
    try:
        yield s
    finally:
        s.close()


def test_kill_9_of_the_listener_mid_stream_loses_nothing(db_url: str, stack: Stack) -> None:
    stack.worker()
    stack.listener()

    def fail(stream: Stream) -> None:
        stack.kill("listener")
        stream.wait_for_more(BATCH, "while no listener runs")
        stack.listener("listener2")

    run_with_failure(db_url, fail)


def test_kill_9_of_the_worker_mid_stream_loses_nothing(db_url: str, stack: Stack) -> None:
    stack.worker()
    stack.listener()

    def fail(stream: Stream) -> None:
        stack.kill("worker")
        stream.wait_for_more(BATCH, "while no worker runs")
        stack.worker("worker2")

    run_with_failure(db_url, fail)


def test_redis_restart_mid_stream_loses_nothing(db_url: str, prepared: Path, tmp_path: Path) -> None:
    private = PrivateRedis(tmp_path)
    private.start()
    stack = Stack(db_url, prepared, tmp_path, redis_url=private.url)
    restarts = iter(range(1, 100))

    def supervise() -> None:
        # Celery 5.7's worker can exit with "Unrecoverable error: 'NoneType' object has no
        # attribute 'hostname'" when the broker vanishes mid-ack (the kombu#582 family); a
        # process supervisor restarts it, as compose's `restart:` does. The outbox lease
        # re-dispatches whatever it held, so nothing is lost either way.
        for name, proc in list(stack.procs.items()):
            if name.startswith("worker") and proc.poll() is not None:
                stack.procs.pop(name)
                stack.worker(f"worker-restarted-{next(restarts)}")

    try:
        stack.worker()
        stack.listener()

        def fail(stream: Stream) -> None:
            private.stop()  # every queued message is gone with it (no persistence)
            stream.wait_for_more(BATCH, "while Redis is down")
            private.start()
            before = processed(db_url)

            def processing_again() -> bool:
                supervise()
                return processed(db_url) > before

            wait_for(processing_again, "changes to be processed again after the restart", timeout=60)

        run_with_failure(db_url, fail, supervise)
    finally:
        stack.close()
        private.stop()
