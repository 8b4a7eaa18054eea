"""A task Redis delivers twice (it ran past the visibility timeout) does its work once (item 7).

A real worker runs a real backup held at a fault hook inside the repository lock; a visibility
timeout of 2 s makes Redis give the same message out again while the first copy still works.
The second copy must wait for the first and then do nothing: one backup, no backup_failed, no alert.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
from sync_stack import FakeSentry, Stack, wait_for

from guard.config.settings import Settings
from guard.continuous import runs
from guard.continuous.capture import install
from guard.db.database import Database

pytestmark = pytest.mark.integration


@pytest.fixture
def sentry() -> Iterator[FakeSentry]:
    fake = FakeSentry()
    yield fake
    fake.close()


def _count(stack: Stack, task_id: str, what: str) -> int:
    return len(re.findall(rf"Task guard\.maintenance\[{task_id}\] {what}", stack.log("worker")))


def _settled(stack: Stack, client: redis.Redis, task_id: str) -> bool:
    """Nothing waits or is held in the broker, and every delivery the worker received has ended."""
    idle = client.hlen(stack.prefix + "unacked") == 0 and client.llen(stack.prefix + "sweeps") == 0
    return idle and _count(stack, task_id, "received") == _count(stack, task_id, "(succeeded|raised|failed)")


def test_a_backup_delivered_twice_while_running_makes_one_backup_and_no_alert(
    db_url: str, tmp_path: Path, sentry: FakeSentry
) -> None:
    uploads = tmp_path / "public"
    (uploads / "uploads" / "ads").mkdir(parents=True)
    with Database(db_url) as db:
        install(db, Settings(database_url=db_url, uploads_root=uploads))
    release = tmp_path / "release-backup"
    backups = tmp_path / "backups"
    stack = Stack(
        db_url,
        uploads,
        tmp_path,
        backup_dir=str(backups),
        sentry_dsn=sentry.dsn,
        visibility_timeout="2",
        task_time_limit="300",
        guard_backup_fault=f"pause:manifest:{release}",
    )
    client = redis.Redis.from_url(stack.redis_url)
    try:
        stack.worker(loglevel="INFO")  # logs each delivery it receives: the test counts them
        task_id = stack.client().send_task("guard.maintenance", args=["backup"], queue="sweeps").id
        wait_for(lambda: Path(f"{release}.reached").exists(), "the backup to hold at its hook", 90)
        wait_for(
            lambda: _count(stack, task_id, "received") >= 2, "Redis to deliver the running backup again", 90
        )
        release.touch()
        wait_for(lambda: _settled(stack, client, task_id), "every delivery to finish", 120)
        log = stack.log("worker")
    finally:
        stack.close()

    assert len(list((backups / "backups").iterdir())) == 1
    with Database(db_url) as db:
        findings = db.fetch_all("SELECT kind, message FROM guard.findings")
        notices = db.fetch_all("SELECT event FROM guard.notifications")
    assert findings == [] and notices == [] and sentry.events == []
    assert "delivery 2 does nothing: an earlier delivery already ran it" in log
    assert "{'duplicate': 1}" in log  # and ends as a success: no failed task, no Sentry Crons error


def test_a_run_is_done_by_one_delivery_and_redone_only_when_its_holder_left_it_unfinished(
    db_url: str,
) -> None:
    with Database(db_url) as db:
        install(db, Settings(database_url=db_url))
    with (
        runs.single_run(db_url, "task-1", "sweep files", wait_s=0) as first,
        runs.single_run(db_url, "task-1", "sweep files", wait_s=0.5) as meanwhile,
    ):
        assert first.works and not meanwhile.works and meanwhile.number == 2
        assert "still runs it" in meanwhile.why_not
    with runs.single_run(db_url, "task-1", "sweep files", wait_s=0) as after:
        assert not after.works and after.why_not == "an earlier delivery already ran it"
    with pytest.raises(RuntimeError), runs.single_run(db_url, "task-2", "backup", wait_s=0) as failed:
        assert failed.works
        raise RuntimeError("a retryable failure: the retry must do the work")
    with runs.single_run(db_url, "task-2", "backup", wait_s=0) as retry:
        assert retry.works and retry.number == 2
