"""The drill's, the restore's and the shadow's scratch databases take their configured prefixes, and
the sweep of stale scratch databases follows them (and never touches a restore's)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from backup_support import SERVER_URL, World, drop_database, make_world
from psycopg import sql

from guard.backup import drill, run_backup, run_drill
from guard.backup.restorer import restore_backup
from guard.db.database import Database
from guard.db.scratch import drop_stale
from guard.schema.shadow import shadow_database

pytestmark = pytest.mark.integration


@pytest.fixture
def world(tmp_path: Path) -> Iterator[World]:
    yield from make_world(tmp_path, ads=30, bad_rate=0.0)


@pytest.fixture
def prefix() -> str:
    """A prefix no other test or helper uses, so the names it makes are this test's alone."""
    return f"guard_pfx{uuid.uuid4().hex[:8]}"


def databases_like(start: str) -> list[str]:
    with psycopg.connect(SERVER_URL, autocommit=True) as conn:
        rows = conn.execute(
            "SELECT datname FROM pg_database WHERE starts_with(datname, %s) ORDER BY 1", (start,)
        ).fetchall()
    return [str(r[0]) for r in rows]


def test_a_drill_restores_into_a_database_named_with_its_prefix(
    world: World, prefix: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    run_backup(world.settings)
    seen: list[str] = []
    real = drill.restore_backup

    def watched(settings: Any, backup_id: str, **kwargs: Any) -> Any:
        result = real(settings, backup_id, **kwargs)
        seen.extend([kwargs["target_db"], *databases_like(f"{prefix}_drill_")])
        return result

    monkeypatch.setattr(drill, "restore_backup", watched)
    result = run_drill(world.settings.replace(drill_database_prefix=f"{prefix}_drill"))
    assert result.ok, result.detail
    assert seen[0].startswith(f"{prefix}_drill_") and seen[1:] == [seen[0]]  # it existed while checked
    assert databases_like(f"{prefix}_drill_") == []  # and the drill dropped it


def test_a_restore_makes_a_database_named_with_its_prefix(world: World, prefix: str) -> None:
    backup = run_backup(world.settings)
    settings = world.settings.replace(restore_database_prefix=f"{prefix}_restore")
    try:
        result = restore_backup(settings, backup.id)
        assert result.target_db.startswith(f"{prefix}_restore_")
        assert databases_like(f"{prefix}_restore_") == [result.target_db]  # kept for the operator
        assert result.uploads_dir.name == result.target_db
    finally:
        for name in databases_like(f"{prefix}_restore_"):
            drop_database(name)


def test_a_drift_shadow_is_named_with_its_prefix(world: World, prefix: str) -> None:
    with shadow_database(world.url, None, f"{prefix}_shadow") as shadow:
        row = shadow.fetch_one("SELECT current_database()")
        assert row is not None and str(row[0]).startswith(f"{prefix}_shadow_")
    assert databases_like(f"{prefix}_shadow_") == []


def test_the_sweep_drops_stale_copies_with_configured_prefixes_and_keeps_a_restore(prefix: str) -> None:
    old = "20200101000000_a1b2c3"
    names = [f"{prefix}_drill_{old}", f"{prefix}_shadow_{old}", f"{prefix}_restore_{old}"]
    with psycopg.connect(SERVER_URL, autocommit=True) as conn:
        for name in names:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    try:
        with Database(SERVER_URL) as admin:
            dropped = drop_stale(admin, (f"{prefix}_shadow", f"{prefix}_drill"))
        assert sorted(dropped) == sorted(names[:2])
        assert databases_like(prefix) == [names[2]]
    finally:
        for name in databases_like(prefix):
            drop_database(name)
