"""The watchers read their settings from guard/config: a broken beat-only setting cannot stop them."""

from __future__ import annotations

import signal
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
from sync_stack import Stack, free_port, wait_for
from test_sync_wakeup import _installed

from guard.db.database import Database

pytestmark = pytest.mark.integration

BROKEN_CRON = "every hour"  # not five cron fields: only the beat schedule (workers/schedule.py) reads it


@pytest.fixture
def stack(db_url: str, tmp_path: Path) -> Iterator[Stack]:
    _installed(db_url)  # a user, a category, the capture triggers
    s = Stack(db_url, tmp_path, tmp_path, sweep_cron=BROKEN_CRON)
    try:
        yield s
    finally:
        s.close()


def _undispatched(db_url: str) -> int:
    with Database(db_url) as db:
        row = db.fetch_one(
            "SELECT (SELECT count(*) FROM guard.outbox WHERE dispatched_at IS NULL)"
            " + (SELECT count(*) FROM guard.capture)"
        )  # one snapshot: a row moving from capture to the outbox is counted once
    return int(row[0]) if row else -1


def test_a_broken_sweep_cron_does_not_stop_the_listener(db_url: str, stack: Stack) -> None:
    listener = stack.listener()
    with Database(db_url) as db:
        db.execute("INSERT INTO ads (id, title, slug, category_id, user_id) VALUES (1, 't', 'ad-1', 1, 1)")
    wait_for(lambda: listener.poll() is not None or _undispatched(db_url) == 0, "the listener to drain")
    assert listener.poll() is None, stack.log("listener")
    assert _undispatched(db_url) == 0
    queued = redis.Redis.from_url(stack.redis_url).llen(f"{stack.prefix}events")
    assert queued >= 1  # the batch waits on the events queue for a worker


@pytest.mark.parametrize("process", ["listener", "watcher"])
def test_a_bad_setting_is_one_line_and_exit_2(db_url: str, tmp_path: Path, process: str) -> None:
    s = Stack(db_url, tmp_path, tmp_path, outbox_batch="many")
    try:
        proc = getattr(s, process)()
        assert proc.wait(30) == 2
        lines = s.log(process).strip().splitlines()
        assert len(lines) == 1 and "OUTBOX_BATCH" in lines[0] and "Traceback" not in s.log(process)
    finally:
        s.close()


def test_sigterm_ends_the_listeners_reconnect_backoff_promptly(tmp_path: Path) -> None:
    s = Stack(f"postgresql://postgres@127.0.0.1:{free_port()}/nowhere", tmp_path, tmp_path)
    try:
        listener = s.listener()
        wait_for(lambda: s.log("listener").count("cannot connect") >= 3, "the listener to back off")
        listener.send_signal(signal.SIGTERM)
        assert listener.wait(10) == 0
        assert "stopped" in s.log("listener")
    finally:
        s.close()
