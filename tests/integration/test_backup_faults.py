"""Failures that must leave nothing half-published: a full disk, an unusable BACKUP_DIR, and prune."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from backup_support import (
    World,
    change_a_row,
    corrupt_object,
    make_world,
    object_bytes,
    own_dump_chunk,
    repo_of,
    stored,
)

from guard.backup import run_backup, run_prune
from guard.backup.faults import FAULT_ENV
from guard.backup.repo import objects as store_module
from guard.backup.repo.repository import UNSYNCED
from guard.backup.verify import verify_backup
from guard.errors import UnreachableError

pytestmark = pytest.mark.integration


@pytest.fixture
def world(tmp_path: Path) -> Iterator[World]:
    """A fresh 150-ad world with 2% of each incident planted, and an empty backup folder."""
    yield from make_world(tmp_path, ads=150, bad_rate=0.02)


def distinct_files(world: World, tag: str, count: int) -> list[Path]:
    made = []
    for i in range(count):
        path = world.root / "uploads" / "ads" / f"{tag}-{i}.webp"
        path.write_bytes(f"{tag} picture {i}".encode())
        made.append(path)
    return made


def test_a_full_disk_fails_cleanly_and_the_next_backup_works(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    distinct_files(world, "enospc", 5)
    monkeypatch.setenv(FAULT_ENV, "enospc:3")
    with pytest.raises(UnreachableError, match="No space left on device"):
        run_backup(world.settings)
    repo = repo_of(world)
    assert repo.ids() == []
    assert list(repo.tmp.iterdir()) == []
    monkeypatch.delenv(FAULT_ENV)
    result = run_backup(world.settings)
    assert repo.ids() == [result.id]


def test_an_unusable_backup_dir_fails_in_one_sentence(world: World, tmp_path: Path) -> None:
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("a regular file where a folder should be")
    with pytest.raises(UnreachableError, match="cannot write to backup folder") as caught:
        run_backup(world.settings.replace(backup_dir=blocker / "backups"))
    assert "\n" not in str(caught.value)
    assert blocker.read_text() == "a regular file where a folder should be"


def test_prune_over_a_made_up_calendar_collects_only_unreferenced_objects(world: World) -> None:
    repo_dir = world.settings.backup_dir or Path()
    dated = []
    for day in (1, 2, 3, 4):
        (only_here,) = distinct_files(world, f"day{day}", 1)
        result = run_backup(world.settings)
        made_up = f"202401{day:02d}T020000Z-{result.id[-6:]}"
        os.rename(repo_dir / "backups" / result.id, repo_dir / "backups" / made_up)
        lists = {page.sha256 for folder in result.manifest.folders for page in folder.pages}
        dated.append((made_up, result.manifest.files, lists))  # read now: prune may remove the lists
        only_here.unlink()
    pruned = run_prune(world.settings, keep_daily=2, keep_weekly=0, keep_monthly=0)
    assert sorted(pruned.removed) == [dated[0][0], dated[1][0]]
    assert sorted(pruned.kept) == [dated[2][0], dated[3][0]]
    repo = repo_of(world)
    kept_lists = set().union(*(lists for backup_id, _, lists in dated if backup_id in pruned.kept))
    for backup_id, files, lists in dated:
        for entry in files:
            if entry.path.endswith("day1-0.webp") or entry.path.endswith("day2-0.webp"):
                assert not stored(repo, entry.sha256)
            elif backup_id in pruned.kept:
                assert stored(repo, entry.sha256)
        for sha in lists:  # a folder list is an object too: kept while a remaining manifest names it
            assert stored(repo, sha) == (sha in kept_lists)
    for backup_id in pruned.kept:  # packs rewritten without the removed objects lost nothing kept
        found = verify_backup(repo, backup_id, read_data=True)
        assert found.ok, found.examples  # the dump's chunks too: the store names them, not the id


def test_prune_never_removes_the_newest_verified_backup(world: World) -> None:
    older = run_backup(world.settings)
    change_a_row(world)
    newer = run_backup(world.settings)
    corrupt_object(repo_of(world), own_dump_chunk(older, newer))
    pruned = run_prune(world.settings, keep_daily=1, keep_weekly=0, keep_monthly=0)
    assert list(pruned.newest_verified.values()) == [older.id]
    assert "newest verified" in pruned.kept[older.id]
    assert pruned.removed == []


def test_objects_a_crash_may_have_left_unsynced_are_rehashed_and_written_again(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A marker left behind (the writer died before its sync) makes the next backup distrust every
    object changed since it: one whose data never reached the disk is removed and copied again, even
    where the previous backup's page naming it would otherwise be reused unread."""
    monkeypatch.setattr(store_module, "RACY_NS", 0)  # the world was written a moment ago
    [picture] = distinct_files(world, "crash", 1)
    first = run_backup(world.settings)
    repo = repo_of(world)
    assert not (repo.root / UNSYNCED).exists()  # removed once everything was synced
    sha = next(f.sha256 for f in first.manifest.files if f.path == "uploads/ads/crash-0.webp")
    # What an OS crash can leave: the marker, and an object with its name and size but other data.
    (repo.root / UNSYNCED).touch()
    corrupt_object(repo, sha)
    assert hashlib.sha256(object_bytes(repo, sha)).hexdigest() != sha

    second = run_backup(world.settings)

    assert second.manifest.counts["files_read"] == second.manifest.counts["files"]  # nothing trusted
    assert not (repo.root / UNSYNCED).exists()
    # copied again from the upload, not trusted by its size
    assert hashlib.sha256(object_bytes(repo, sha)).hexdigest() == sha
    assert hashlib.sha256(picture.read_bytes()).hexdigest() == sha
    assert verify_backup(repo, second.id, read_data=True).ok
    assert verify_backup(repo, first.id, read_data=True).ok
