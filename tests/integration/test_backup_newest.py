"""The newest backup is what the drill and prune judge: an older good one never hides a bad newest,
and another database's backup, or a restore's safety backup, is never taken for it."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from backup_support import World, change_a_row, corrupt_object, make_world, own_dump_chunk, repo_of

from guard.backup import run_backup, run_drill, run_prune
from guard.backup.recovery import restore_missing
from guard.backup.repo.repository import MANIFEST, Repository
from guard.backup.restorer import restore_backup
from guard.backup.source import SAFETY
from guard.continuous.capture import install
from guard.continuous.process import run_maintenance
from guard.db.database import Database

pytestmark = pytest.mark.integration


@pytest.fixture
def world(tmp_path: Path) -> Iterator[World]:
    """A small clean world and an empty backup folder."""
    yield from make_world(tmp_path, ads=30, bad_rate=0.0)


@pytest.fixture
def other(tmp_path: Path) -> Iterator[World]:
    """A second database on the same server, with its own uploads folder."""
    yield from make_world(tmp_path / "other", ads=30, bad_rate=0.0)


def break_manifest(repo: Repository, backup_id: str) -> None:
    """Flip one byte of a manifest's body: its checksum no longer matches, so it cannot be read."""
    path = repo.folder(backup_id) / MANIFEST
    path.chmod(0o600)
    data = bytearray(path.read_bytes())
    data[-10] ^= 0x01
    path.write_bytes(bytes(data))


def test_a_drill_whose_newest_backup_is_unreadable_fails_and_names_it(world: World) -> None:
    older = run_backup(world.settings)
    newer = run_backup(world.settings)
    break_manifest(repo_of(world), newer.id)
    drill = run_drill(world.settings)
    assert not drill.ok, drill.detail
    assert drill.backup_id == newer.id
    assert f"newest backup {newer.id} cannot be read" in drill.detail
    assert older.id not in drill.detail  # it was not drilled in its place


def test_prune_reports_a_newest_backup_that_fails_verify_though_an_older_one_passes(world: World) -> None:
    older = run_backup(world.settings)
    change_a_row(world)
    newer = run_backup(world.settings)
    corrupt_object(repo_of(world), own_dump_chunk(older, newer))
    pruned = run_prune(world.settings, keep_daily=1, keep_weekly=0, keep_monthly=0)
    assert not pruned.ok
    assert any(f"newest backup {newer.id}" in p and "fails verification" in p for p in pruned.problems)
    assert "newest verified" in pruned.kept[older.id]  # still kept: the last known good one
    assert pruned.removed == []


def test_prune_reports_an_unreadable_newest_backup_and_keeps_it(world: World) -> None:
    older = run_backup(world.settings)
    newer = run_backup(world.settings)
    break_manifest(repo_of(world), newer.id)
    pruned = run_prune(world.settings, keep_daily=1, keep_weekly=0, keep_monthly=0)
    assert not pruned.ok
    assert any(f"newest backup {newer.id} cannot be read" in p for p in pruned.problems)
    assert pruned.removed == [] and set(repo_of(world).ids()) == {older.id, newer.id}


def test_a_safety_backup_of_the_live_database_never_counts_as_its_newest(world: World) -> None:
    first = run_backup(world.settings)
    victim = next(f for f in first.manifest.files if f.path.startswith("uploads/ads/"))
    forced = restore_backup(
        world.settings, first.id, target_db=world.name, uploads_dir=world.root, force=True
    )
    assert forced.safety_backup is not None
    assert repo_of(world).load(forced.safety_backup).purpose == SAFETY
    assert run_drill(world.settings).backup_id == first.id
    (world.root / victim.path).unlink()
    recovered = {o.path: o for o in restore_missing(world.settings)}
    assert recovered[victim.path].backup_id == first.id
    pruned = run_prune(world.settings, keep_daily=1, keep_weekly=0, keep_monthly=0)
    assert pruned.ok, pruned.problems
    assert pruned.removed == [] and "daily" in pruned.kept[first.id]
    assert "daily" in pruned.kept[forced.safety_backup]  # in a group of its own


def test_the_nightly_drill_and_prune_judge_the_configured_database_only(world: World, other: World) -> None:
    with Database(world.url) as db:
        install(db, world.settings)
    mine = run_backup(world.settings)
    theirs = run_backup(other.settings.replace(backup_dir=world.settings.backup_dir))
    corrupt_object(repo_of(world), own_dump_chunk(mine, theirs))  # the other database's newest fails verify
    drill = run_maintenance(world.settings, "drill")
    assert drill.failure is None
    assert json.loads(repo_of(world).drill_log.read_text().splitlines()[-1])["backup"] == mine.id
    prune = run_maintenance(world.settings, "prune")
    assert prune.failure is None
    assert set(repo_of(world).ids()) == {mine.id, theirs.id}
