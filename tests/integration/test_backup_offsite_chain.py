"""The nightly chain with BACKUP_REMOTES: backup -> copy -> prune in real Celery workers; a failed copy
is a `backup_copy_failed` finding that fails its task, and the next good copy resolves it."""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from offsite_support import Remotes, remotes
from sync_stack import Stack, wait_for

from guard.config.settings import Settings
from guard.continuous.capture import install
from guard.continuous.process import run_maintenance
from guard.db.database import Database
from workers.schedule import beat_schedule

pytestmark = pytest.mark.integration


@pytest.fixture
def remote(tmp_path: Path) -> Iterator[Remotes]:
    with remotes(tmp_path / "remotes") as found:
        yield found


@pytest.fixture
def settings(db_url: str, tmp_path: Path) -> Settings:
    uploads = tmp_path / "public"
    (uploads / "uploads" / "ads").mkdir(parents=True)
    (uploads / "uploads" / "ads" / "here.webp").write_bytes(b"RIFF-here")
    s = Settings(database_url=db_url, uploads_root=uploads, backup_dir=tmp_path / "backups")
    with Database(db_url) as db:
        install(db, s)  # guard's schema: the findings ledger
    return s


def _open_copy_findings(settings: Settings) -> list[tuple[object, ...]]:
    with Database(settings.require_database_url()) as db:
        return db.fetch_all(
            "SELECT subject, message FROM guard.findings WHERE resolved_at IS NULL AND kind = %s",
            ("backup_copy_failed",),
        )


def test_a_failed_copy_is_a_finding_and_the_next_good_copy_resolves_it(
    settings: Settings, remote: Remotes, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("RCLONE_CONFIG", str(remote.config))
    assert run_maintenance(settings, "backup").failure is None
    refused = settings.replace(backup_remotes=(remote.readonly,))
    outcome = run_maintenance(refused, "copy")
    assert outcome.failure is not None and "sftpro:" in outcome.failure
    assert [s for s, _ in _open_copy_findings(settings)] == ["copy"]
    good = settings.replace(backup_remotes=(remote.local,))
    outcome = run_maintenance(good, "copy")
    assert outcome.failure is None and outcome.changes.resolved == 1
    assert _open_copy_findings(settings) == []
    assert list((remote.local_root / "backups").glob("*/manifest.json"))
    with Database(settings.require_database_url()) as db:  # the weekly numbers' history has each copy
        assert db.fetch_all("SELECT kind, outcome FROM guard.history_events ORDER BY id") == [
            ("backup", "ok"),
            ("copy", "failed"),
            ("copy", "ok"),
        ]


def test_the_beat_runs_backup_copy_and_prune_as_one_chain_in_real_workers(
    settings: Settings, remote: Remotes, tmp_path: Path
) -> None:
    with_remote = settings.replace(backup_remotes=(remote.local,))
    schedule = beat_schedule(with_remote)
    assert schedule["backup"]["task"] == "guard.nightly" and "prune" not in schedule
    assert schedule["drill"]["task"] == "guard.maintenance"
    stack = Stack(
        settings.require_database_url(),
        settings.uploads_root or Path(),
        tmp_path,
        backup_dir=str(settings.backup_dir),
        backup_remotes=remote.local,
        rclone_config=str(remote.config),
    )
    try:
        stack.worker(loglevel="INFO")
        stack.client().send_task("guard.nightly", queue="sweeps")
        manifests = remote.local_root / "backups"
        wait_for(lambda: list(manifests.glob("*/manifest.json")), "a copy on the remote", timeout=120)
        succeeded = re.compile(r"guard\.maintenance\[[^\]]+\] succeeded")
        wait_for(
            lambda: (
                len(succeeded.findall(stack.log("worker"))) >= 4 or "MaintenanceFailed" in stack.log("worker")
            ),
            "the chain's four steps",
            timeout=120,
        )
        log = stack.log("worker")
        assert "MaintenanceFailed" not in log and len(succeeded.findall(log)) == 4, log
    finally:
        stack.close()
    assert os.listdir(settings.backup_dir / "backups")  # type: ignore[operator]


def test_a_failed_copy_in_the_chain_still_prunes_the_local_repository(
    settings: Settings, remote: Remotes, tmp_path: Path
) -> None:
    # The remote refuses writes: the chain stops at its copy, and the copy's error callback runs the
    # local prune anyway, so a remote away for days does not fill the local disk.
    stack = Stack(
        settings.require_database_url(),
        settings.uploads_root or Path(),
        tmp_path,
        backup_dir=str(settings.backup_dir),
        backup_remotes=remote.readonly,
        rclone_config=str(remote.config),
    )
    try:
        stack.worker(loglevel="INFO")
        stack.client().send_task("guard.nightly", queue="sweeps")
        with Database(settings.require_database_url()) as db:
            wait_for(
                lambda: (
                    db.fetch_all("SELECT kind, outcome FROM guard.history_events ORDER BY id")
                    == [("backup", "ok"), ("copy", "failed"), ("prune", "ok")]
                ),
                "backup, the failed copy, then the local prune",
                timeout=120,
            )
    finally:
        stack.close()
