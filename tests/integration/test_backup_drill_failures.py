"""A drill stopped by anything at all is recorded as failed, in one redacted line, and leaves no scratch."""

from __future__ import annotations

import errno
import json
import os
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import psycopg
import pytest
from conftest import SERVER_URL, create_database

from guard.backup import drill
from guard.backup.repo.repository import Repository
from guard.config.settings import Settings

pytestmark = pytest.mark.integration

LEAKY_URL = "postgresql://app:hunter2@db.example:5432/shop"
FAILURES = [
    psycopg.OperationalError(f"connection to {LEAKY_URL} failed\nDETAIL: server closed the connection"),
    OSError(errno.ENOSPC, f"{os.strerror(errno.ENOSPC)} writing under {LEAKY_URL}"),
    StopIteration(),
]


def database_exists(name: str) -> bool:
    with psycopg.connect(SERVER_URL, autocommit=True) as conn:
        return conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone() is not None


@pytest.mark.parametrize("failure", FAILURES, ids=lambda exc: type(exc).__name__)
def test_any_failure_is_a_recorded_failed_drill_and_the_scratch_is_gone(
    failure: Exception, db_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    repo = Repository.open(tmp_path / "backups", create=True)
    settings = Settings(database_url=db_url, uploads_root=tmp_path / "uploads", backup_dir=repo.root)
    made: dict[str, Any] = {}

    def half_done_restore(_settings: Settings, backup_id: str, *, target_db: str, uploads_dir: Path) -> None:
        create_database(target_db)
        uploads_dir.mkdir(parents=True)
        (uploads_dir / "half.webp").write_bytes(b"half a restore")
        made.update(db=target_db, folder=uploads_dir)
        raise failure

    newest = SimpleNamespace(backup_id="20240101T020000Z-abcdef", manifest=SimpleNamespace())
    monkeypatch.setattr(drill, "_newest", lambda _repo, _wanted: newest)
    monkeypatch.setattr(drill, "restore_backup", half_done_restore)
    result = drill.run_drill(settings)
    assert not result.ok
    assert result.detail.startswith("drill could not run: ")
    assert type(failure).__name__ in result.detail
    assert "\n" not in result.detail and "hunter2" not in result.detail
    assert not database_exists(made["db"])
    assert not made["folder"].exists()
    logged = json.loads(repo.drill_log.read_text().splitlines()[-1])
    assert logged["ok"] is False and logged["detail"] == result.detail
