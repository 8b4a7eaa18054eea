"""Kill -9 of the listener, kill -9 of the worker, a Redis restart, each in the middle of a stream of
writes: afterwards every changed row has been checked and the findings are exactly what a full check
of the final data finds, as if nothing had failed."""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from sync_stack import PrivateRedis, Stack, wait_for
from test_sync_pipeline import open_subjects

from guard import outbox
from guard.checks import CheckContext, integrity
from guard.database import Database
from guard.install import install
from guard.settings import Settings

pytestmark = pytest.mark.integration

WRITES = 150


@pytest.fixture
def prepared(db_url: str, tmp_path: Path) -> Path:
    root = tmp_path / "public"
    (root / "uploads" / "ads").mkdir(parents=True)
    with Database(db_url) as db:
        db.execute("INSERT INTO users (id, email) VALUES (1, 'a@example.com')")
        db.execute("INSERT INTO categories (id, name, slug) VALUES (1, 'Cars', 'cars')")
        install(db, Settings(database_url=db_url))
    return root


def write_stream(db_url: str, seconds: float, seed: int) -> threading.Thread:
    """Insert good and bad ads and rewrite earlier ones, spread over `seconds`, in a thread."""

    def run() -> None:
        rng = random.Random(seed)
        with Database(db_url) as db:
            for i in range(1, WRITES + 1):
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
                time.sleep(seconds / WRITES)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread


def expected_findings(db_url: str) -> set[tuple[str, str]]:
    result = integrity.run(CheckContext(Settings(database_url=db_url), limit=None))
    return {(f.kind, f.subject) for f in result.findings}


def settle(db_url: str) -> None:
    """Wait until every captured change has been processed (collected from guard.capture, too)."""

    def drained() -> bool:
        with Database(db_url) as db:
            return outbox.backlog(db) == 0

    wait_for(drained, "every change to be processed", timeout=90)


def run_with_failure(db_url: str, stack: Stack, fail: Callable[[], None]) -> None:
    writer = write_stream(db_url, seconds=3.0, seed=7)
    time.sleep(1.0)
    fail()
    writer.join(30)
    settle(db_url)
    with Database(db_url) as db:
        unchecked = outbox.backlog(db)
        captured = db.fetch_one("SELECT count(DISTINCT row_key) FROM guard.outbox")
        rows = db.fetch_one("SELECT count(*) FROM ads")
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

    def fail() -> None:
        stack.kill("listener")
        time.sleep(1.0)
        stack.listener("listener2")

    run_with_failure(db_url, stack, fail)


def test_kill_9_of_the_worker_mid_stream_loses_nothing(db_url: str, stack: Stack) -> None:
    stack.worker()
    stack.listener()

    def fail() -> None:
        stack.kill("worker")
        time.sleep(1.0)
        stack.worker("worker2")

    run_with_failure(db_url, stack, fail)


def test_redis_restart_mid_stream_loses_nothing(db_url: str, prepared: Path, tmp_path: Path) -> None:
    private = PrivateRedis(tmp_path)
    private.start()
    stack = Stack(db_url, prepared, tmp_path, redis_url=private.url)
    try:
        stack.worker()
        stack.listener()

        def fail() -> None:
            private.stop()  # every queued message is gone with it (no persistence)
            time.sleep(1.5)
            private.start()
            # Celery 5.7's worker can exit with "Unrecoverable error: 'NoneType' object has no
            # attribute 'hostname'" when the broker vanishes mid-ack (the kombu#582 family); a
            # process supervisor restarts it, as compose's `restart:` does. The outbox lease
            # re-dispatches whatever it held, so nothing is lost either way.
            time.sleep(2.0)
            if stack.procs["worker"].poll() is not None:
                stack.procs.pop("worker")
                stack.worker("worker-restarted")

        run_with_failure(db_url, stack, fail)
    finally:
        stack.close()
        private.stop()
