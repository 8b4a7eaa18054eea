"""A restore that fails half-way removes the scratch pair guard made, and never a target the user named."""

from __future__ import annotations

import errno
import os
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from backup_support import SERVER_URL, World, drop_database, make_world

from guard.backup import pgtools, run_backup
from guard.backup import restorer as restore
from guard.backup.restorer import restore_backup
from guard.errors import GuardError

pytestmark = pytest.mark.integration


@pytest.fixture
def world(tmp_path: Path) -> Iterator[World]:
    """A small clean world with an empty backup folder."""
    yield from make_world(tmp_path, ads=30, bad_rate=0.0)


def database_exists(name: str) -> bool:
    with psycopg.connect(SERVER_URL, autocommit=True) as conn:
        return conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone() is not None


def fail_placing_after_one_file(monkeypatch: pytest.MonkeyPatch, seen: dict[str, Path]) -> None:
    def full_disk(
        _repo: object, _backup_id: str, folder: Path, _progress: object, **_options: object
    ) -> tuple[int, int]:
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "first.webp").write_bytes(b"placed before the disk filled")
        seen["folder"] = folder
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(restore, "_place_all", full_disk)


def test_a_failed_placement_drops_the_scratch_database_and_folder(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    backup = run_backup(world.settings)
    seen: dict[str, Path] = {}
    fail_placing_after_one_file(monkeypatch, seen)
    with pytest.raises(OSError, match="No space left on device"):
        restore_backup(world.settings, backup.id)
    scratch = seen["folder"].name
    assert scratch.startswith("guard_restore_")
    assert not database_exists(scratch)
    assert not seen["folder"].exists()
    assert database_exists(world.name)


def test_a_failed_archive_restore_drops_the_scratch_database(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    backup = run_backup(world.settings)
    seen: dict[str, str] = {}

    def broken_archive(_dump: Path, url: str) -> list[str]:
        seen["db"] = str(psycopg.conninfo.conninfo_to_dict(url)["dbname"])
        raise GuardError("pg_restore failed: the archive is damaged")

    monkeypatch.setattr(pgtools, "restore_archive", broken_archive)
    with pytest.raises(GuardError, match="archive is damaged"):
        restore_backup(world.settings, backup.id)
    assert seen["db"].startswith("guard_restore_")
    assert not database_exists(seen["db"])


def test_a_failed_restore_keeps_a_target_database_and_folder_the_user_named(
    world: World, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    backup = run_backup(world.settings)
    named_db = f"{world.name}_named"
    named_dir = tmp_path / "named-uploads"
    seen: dict[str, Path] = {}
    fail_placing_after_one_file(monkeypatch, seen)
    try:
        with pytest.raises(OSError, match="No space left on device"):
            restore_backup(world.settings, backup.id, target_db=named_db, uploads_dir=named_dir)
        assert database_exists(named_db)
        assert (named_dir / "first.webp").exists()
    finally:
        drop_database(named_db)
