"""A repository that lost or damaged objects: the next backup reuses nothing it no longer has."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from backup_support import (
    World,
    assert_restores_byte_identical,
    corrupt_object,
    make_world,
    repo_of,
)

from guard.backup import run_backup, run_prune
from guard.backup.repo import inventory
from guard.backup.repo import objects as store_module
from guard.backup.repo.repository import Repository
from guard.backup.verify import verify_backup

pytestmark = pytest.mark.integration


@pytest.fixture
def world(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[World]:
    """A fresh 60-ad world whose files count as settled, so a second backup reuses its pages."""
    monkeypatch.setattr(store_module, "RACY_NS", 0)  # the world was written a moment ago
    yield from make_world(tmp_path, ads=60, bad_rate=0.02)


def pack_names(repo: Repository) -> set[str]:
    return {p.name[:-5] for p in repo.packs.glob("*.pack")}


def remove_pack(repo: Repository, name: str) -> None:
    (repo.packs / f"{name}.idx").unlink()
    (repo.packs / f"{name}.pack").unlink()


def test_after_a_corrupt_pack_and_a_lost_one_the_next_backup_verifies_and_restores(world: World) -> None:
    first = run_backup(world.settings)
    repo = repo_of(world)
    old_packs = pack_names(repo)
    changed = next(f for f in first.manifest.files if f.path.startswith("uploads/ads/ad-"))
    (world.root / changed.path).write_bytes(b"a picture rewritten after the first backup")
    os.utime(world.root / changed.path, (1_700_000_000, 1_700_000_000))
    second = run_backup(world.settings)
    new_packs = pack_names(repo) - old_packs
    assert len(old_packs) == 1 and len(new_packs) == 1
    new_sha = {f.path: f.sha256 for f in second.manifest.files}[changed.path]
    corrupt_object(repo, new_sha)  # a byte run inside the newer pack, same size
    remove_pack(repo, next(iter(old_packs)))  # the older pack, with most file objects, is lost
    assert not verify_backup(repo_of(world), second.id, read_data=True).ok

    third = run_backup(world.settings)

    verdict = verify_backup(repo_of(world), third.id, read_data=True)
    assert verdict.ok, verdict.examples
    assert third.damage, "the backup must say what damage it found"
    assert_restores_byte_identical(world, third.id)


def test_a_damaged_pack_index_is_reported_and_its_files_are_stored_again(world: World) -> None:
    first = run_backup(world.settings)
    repo = repo_of(world)
    (name,) = pack_names(repo)
    index = repo.packs / f"{name}.idx"
    index.chmod(0o644)
    data = bytearray(index.read_bytes())
    data[len(data) // 2] ^= 0xFF
    index.write_bytes(bytes(data))
    found = verify_backup(repo_of(world), first.id, read_data=False)
    assert any(f"pack {name}" in e and "index" in e for e in found.examples), found.examples

    second = run_backup(world.settings)

    assert any(f"pack {name}" in note and "index" in note for note in second.damage), second.damage
    assert verify_backup(repo_of(world), second.id, read_data=True).ok
    assert_restores_byte_identical(world, second.id)


def test_a_store_that_lost_nothing_is_trusted_and_a_backup_reports_no_damage(world: World) -> None:
    first = run_backup(world.settings)
    second = run_backup(world.settings)
    assert first.damage == () and second.damage == ()
    assert not inventory.heal(repo_of(world).store).lost  # so unchanged pages are reused unread


def test_damage_only_verify_saw_is_dropped_and_stored_again_by_the_next_backup(world: World) -> None:
    first = run_backup(world.settings)
    repo = repo_of(world)
    victim = next(f for f in first.manifest.files if f.path.startswith("uploads/ads/ad-"))
    corrupt_object(repo, victim.sha256)
    inventory.record(repo.store)  # as bit rot would: no size or ctime of the store tells
    assert not inventory.heal(repo_of(world).store).lost
    assert not verify_backup(repo_of(world), first.id, read_data=True).ok  # notes where it lies

    second = run_backup(world.settings)

    assert any("do not match their hash" in note for note in second.damage), second.damage
    assert verify_backup(repo_of(world), second.id, read_data=True).ok
    assert_restores_byte_identical(world, second.id)


def test_a_prune_keeps_the_inventory_true_and_never_hides_a_lost_pack(world: World) -> None:
    first = run_backup(world.settings)
    changed = next(f for f in first.manifest.files if f.path.startswith("uploads/ads/ad-"))
    (world.root / changed.path).write_bytes(b"a picture only the first backup had not")
    run_backup(world.settings)
    run_prune(world.settings, keep_daily=1)  # drops the first backup, rewrites the pack both share
    assert not inventory.heal(repo_of(world).store).lost  # what prune did is accounted for
    repo = repo_of(world)
    remove_pack(repo, sorted(pack_names(repo))[0])
    run_prune(world.settings, keep_daily=1)  # keeps everything (a list is unreadable), hides nothing
    assert inventory.heal(repo_of(world).store).lost


def test_a_damaged_folder_list_found_during_the_backup_is_stored_again_not_reused(world: World) -> None:
    first = run_backup(world.settings)
    repo = repo_of(world)
    (old,) = pack_names(repo)
    changed = next(f for f in first.manifest.files if f.path.startswith("uploads/ads/ad-"))
    (world.root / changed.path).write_bytes(b"a picture rewritten after the first backup")
    second = run_backup(world.settings)
    repo = repo_of(world)
    pages = [p for folder in second.manifest.folders for p in folder.pages]
    kept = next(p for p in pages if repo.store.index[p.sha256].file.endswith(f"{old}.pack"))
    corrupt_object(repo, kept.sha256)
    inventory.record(repo.store)  # as bit rot would: no size or ctime of the store tells
    remove_pack(repo, next(iter(pack_names(repo) - {old})))  # so the next backup checks its pages

    third = run_backup(world.settings)

    verdict = verify_backup(repo_of(world), third.id, read_data=True)
    assert verdict.ok, verdict.examples
    assert_restores_byte_identical(world, third.id)


def test_verify_all_reads_each_pack_once_and_still_finds_a_corrupt_object(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    from guard.backup import restoreplan
    from guard.backup.verify import verify_all

    first = run_backup(world.settings)
    run_backup(world.settings)  # shares every object with the first
    repo = repo_of(world)
    victim = next(f for f in first.manifest.files if f.path.startswith("uploads/ads/ad-"))
    read: list[str] = []
    real = restoreplan.read_span

    def counted(span: restoreplan.Span) -> list[tuple[str, bytes | None]]:
        read.append(span.file)
        return real(span)

    monkeypatch.setattr(restoreplan, "read_span", counted)
    assert all(v.ok for v in verify_all(repo, read_data=True))
    assert len(read) == len(set(read)), "a pack was read twice"
    corrupt_object(repo, victim.sha256)
    verdicts = verify_all(repo_of(world), read_data=True)
    assert all(not v.ok for v in verdicts)
    assert all(any(victim.sha256 in e and "does not match" in e for e in v.examples) for v in verdicts)
