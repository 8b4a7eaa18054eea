"""Sentry Crons on the beat tasks: beat's check-in opens the run, the real worker's check-in closes it.

Beat itself is not started (its cron entries fire at minute boundaries at the earliest); a real
`celery.beat.Scheduler` of the workers app applies the entries the way beat does, with Sentry
initialised through the same `beat_init` signal, in a child process so the SDK's patches never touch
the test process. A real worker runs the task and reports its end.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sync_stack import ROOT, FakeSentry, Stack, wait_for

from guard.config.settings import Settings
from guard.continuous.capture import install
from guard.db.database import Database

pytestmark = pytest.mark.integration

# What beat does for each due entry, with Sentry started by the signal beat sends on start.
BEAT = """
import sys
import sentry_sdk
from celery import signals
from celery.beat import Scheduler
from workers.app import app

signals.beat_init.send(sender=None)
scheduler = Scheduler(app=app)
with app.producer_or_acquire() as producer:
    for name in sys.argv[1:]:
        scheduler.apply_entry(scheduler.schedule[name], producer=producer)
sentry_sdk.flush(5)
"""


@pytest.fixture
def crons() -> Iterator[FakeSentry]:
    fake = FakeSentry()
    yield fake
    fake.close()


def _beat_applies(stack: Stack, crons: FakeSentry, *entries: str) -> list[dict[str, Any]]:
    """Apply beat entries as beat does; return the closing check-ins once the worker has sent one."""
    beat = subprocess.run(
        [sys.executable, "-c", BEAT, *entries],
        cwd=ROOT,
        env=stack.env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert beat.returncode == 0, beat.stderr
    return wait_for(
        lambda: [c for c in crons.check_ins if c.get("status") in ("ok", "error")],
        "the worker's closing check-in",
    )


def test_a_beat_task_checks_in_when_sent_and_when_the_worker_finishes_it(
    db_url: str, tmp_path: Path, crons: FakeSentry
) -> None:
    with Database(db_url) as db:
        install(db, Settings(database_url=db_url, uploads_root=tmp_path))
    stack = Stack(db_url, tmp_path, tmp_path, sentry_dsn=crons.dsn)
    try:
        stack.worker()
        done = _beat_applies(stack, crons, "sweep-integrity", "deliver-alerts")
    finally:
        stack.close()

    # the 10-second alert delivery is not a cron job and has no monitor
    opened = [c for c in crons.check_ins if c.get("status") == "in_progress"]
    assert [c["monitor_slug"] for c in opened] == ["sweep-integrity"]
    assert opened[0]["monitor_config"]["schedule"] == {"type": "crontab", "value": "0 * * * *"}
    assert [(c["monitor_slug"], c["status"]) for c in done] == [("sweep-integrity", "ok")]
    assert done[0]["check_in_id"] == opened[0]["check_in_id"]


def test_a_failed_nightly_backup_checks_in_as_an_error_and_alerts_once(
    db_url: str, tmp_path: Path, crons: FakeSentry
) -> None:
    not_a_folder = tmp_path / "backups"
    not_a_folder.write_text("a file where BACKUP_DIR should be\n")
    with Database(db_url) as db:
        install(db, Settings(database_url=db_url, uploads_root=tmp_path))
    stack = Stack(db_url, tmp_path, tmp_path, sentry_dsn=crons.dsn, backup_dir=str(not_a_folder))
    try:
        stack.worker()
        done = _beat_applies(stack, crons, "backup")
        events = wait_for(lambda: crons.events, "the finding's Sentry event")
        # the worker's exception event, if it sent one, was sent before the task failed: before the
        # closing check-in above, on the same connection, so it has arrived by now
        exceptions = list(crons.exceptions)
    finally:
        stack.close()

    assert [(c["monitor_slug"], c["status"]) for c in done] == [("backup", "error")]
    # the finding is the one event; the task's expected failure is not captured again as an exception
    assert [e["fingerprint"] for e in events] == [["incident-guard", "backup", "backup_failed"]]
    assert exceptions == []
    with Database(db_url) as db:
        row = db.fetch_one("SELECT kind, subject FROM guard.findings WHERE resolved_at IS NULL")
    assert row == ("backup_failed", "backup")
