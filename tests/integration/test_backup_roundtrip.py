"""Backups of real demo worlds: verify, the stat cache, scratch restores, odd names, concurrent writes."""

from __future__ import annotations

import errno
import os
import threading
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import psycopg
import pytest
from backup_support import (
    World,
    corrupt_object,
    drop_database,
    lose_object,
    make_world,
    object_bytes,
    repo_of,
    table_checksums,
    write_older_format,
)

from guard.backup import run_backup, run_drill
from guard.backup.recovery import restore_missing
from guard.backup.repo import objects as store_module
from guard.backup.repo.manifest import FLAT_FORMAT, LISTS_FORMAT
from guard.backup.repo.repository import Repository
from guard.backup.restorer import check_pair, restore_backup
from guard.backup.verify import verify_backup
from guard.backup.walk import walk as walk_module
from guard.errors import GuardError, UnreachableError, UsageError

pytestmark = pytest.mark.integration


@pytest.fixture
def world(tmp_path: Path) -> Iterator[World]:
    """A fresh 150-ad world with 2% of each incident planted, and an empty backup folder."""
    yield from make_world(tmp_path, ads=150, bad_rate=0.02)


def add_file(root: Path, name: str | bytes, content: bytes) -> None:
    folder = os.fsencode(root / "uploads" / "ads")
    target = os.path.join(folder, os.fsencode(name))
    with open(target, "wb") as handle:
        handle.write(content)
    os.utime(target, (1_700_000_000, 1_700_000_000))


def test_verify_read_data_finds_a_corrupt_and_a_missing_object(world: World) -> None:
    add_file(world.root, "extra-a.webp", b"first distinct content")
    add_file(world.root, "extra-b.webp", b"second distinct content")
    result = run_backup(world.settings)
    repo = Repository.open(world.settings.backup_dir or Path(), create=False)
    assert verify_backup(repo, result.id, read_data=True).ok
    entries = {f.path.rsplit("/", 1)[-1]: f for f in result.manifest.files}
    corrupt, gone = entries["extra-a.webp"], entries["extra-b.webp"]
    corrupt_object(repo, corrupt.sha256)  # same size: only re-hashing can tell
    lose_object(repo, gone.sha256)
    quick = verify_backup(repo, result.id, read_data=False)
    assert quick.problems == 1 and "missing" in quick.examples[0]
    full = verify_backup(repo, result.id, read_data=True)
    assert full.problems == 2
    assert any("does not match its hash" in e for e in full.examples)


def test_unchanged_files_are_not_read_again_and_a_changed_one_is(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(store_module, "RACY_NS", 0)  # the world was written a moment ago
    first = run_backup(world.settings)
    assert first.manifest.counts["files_read"] == first.manifest.counts["files"]
    second = run_backup(world.settings)
    assert second.manifest.counts["files_read"] == 0
    assert second.manifest.counts["new_objects"] == 0
    changed = next(f for f in second.manifest.files if f.path.startswith("uploads/ads/ad-"))
    (world.root / changed.path).write_bytes(b"a new picture")
    third = run_backup(world.settings)
    assert third.manifest.counts["files_read"] == 1
    assert third.manifest.counts["new_objects"] == 1
    assert {f.path: f.sha256 for f in third.manifest.files}[changed.path] != changed.sha256


def test_a_file_dated_beyond_64_bit_nanoseconds_is_backed_up_every_time(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(store_module, "RACY_NS", 0)  # the world was written a moment ago
    add_file(world.root, "from-the-future.webp", b"a picture dated 2286")
    os.utime(world.root / "uploads" / "ads" / "from-the-future.webp", ns=(10**19, 10**19))
    first = run_backup(world.settings)
    second = run_backup(world.settings)
    # Its page takes the careful path and the other digest form; the file itself is read again
    # each time, as any file whose mtime is not yet in the past is.
    assert second.manifest.counts["files_read"] == 1
    entry = next(f for f in second.manifest.files if f.path.endswith("from-the-future.webp"))
    assert entry.mtime_ns == 10**19
    repo = Repository.open(world.settings.backup_dir or Path(), create=False)
    assert verify_backup(repo, first.id, read_data=True).ok
    assert verify_backup(repo, second.id, read_data=True).ok


def test_scratch_restore_leaves_live_untouched_and_restores_the_same_rows(world: World) -> None:
    result = run_backup(world.settings)
    before = table_checksums(world.url)
    restored = restore_backup(world.settings, result.id)
    try:
        assert restored.target_db != world.name
        assert table_checksums(world.url) == before
        target = psycopg.conninfo.make_conninfo(world.url, dbname=restored.target_db)
        assert table_checksums(target) == before
        live_checks, live_skipped = check_pair(world.settings, world.url, world.root)
        live = {c.name: c.counts for c in live_checks}
        again = {c.name: c.counts for c in restored.checks}
        # A path that escapes the live root through a symlink was not backed up: restored, it is missing.
        escapes = sum(1 for m in result.manifest.missing if m.kind == "escapes")
        files = live["files"]
        moved = {
            "missing_file": files["missing_file"] + escapes,
            "unsafe_path": files["unsafe_path"] - escapes,
        }
        assert sorted(again) == ["files", "health", "integrity"]
        assert again == {**live, "files": {**files, **moved}}
        assert again["integrity"] == world.truth["integrity"]  # every planted row incident, counted
        assert again["health"] == {"database_unreachable": 0, "uploads_unreadable": 0}
        # Only the checks that need MIGRATIONS_DIR (not set here) are skipped, and on live alike.
        assert restored.skipped == live_skipped
        assert [s.split(":", 1)[0] for s in restored.skipped] == ["migrations", "drift"]
        assert all("MIGRATIONS_DIR is not set" in s for s in restored.skipped)
    finally:
        drop_database(restored.target_db)


def test_hostile_and_odd_file_names_survive_the_round_trip(world: World) -> None:
    names: list[str | bytes] = [
        "line\nbreak.webp",
        "tab\there.webp",
        'say "cheese".webp',
        "日本の車 🚗.webp",
        "-dash.webp",
        "back\\slash.webp",
        b"latin1-\xe9\xff.webp",
        "$(rm -rf ~).webp",
        " leading space.webp",
    ]
    for i, name in enumerate(names):
        add_file(world.root, name, f"content {i}".encode())
    with psycopg.connect(world.url, autocommit=True) as conn:
        for name in names:
            if isinstance(name, str):
                conn.execute(
                    "INSERT INTO ad_images (ad_id, filename, file_path) VALUES (1, %s, %s)",
                    (name, f"uploads/ads/{name}"),
                )
    result = run_backup(world.settings)
    restored = restore_backup(world.settings, result.id)
    try:
        for name in names:
            raw = os.fsencode(name) if isinstance(name, str) else name
            live = os.path.join(os.fsencode(world.root / "uploads/ads"), raw)
            copy = os.path.join(os.fsencode(restored.uploads_dir / "uploads/ads"), raw)
            with open(live, "rb") as a, open(copy, "rb") as b:
                assert a.read() == b.read()
    finally:
        drop_database(restored.target_db)


def test_backup_while_the_app_writes_restores_every_rows_file(tmp_path: Path) -> None:
    for built in make_world(tmp_path, ads=100, bad_rate=0):
        stop = threading.Event()
        writer = threading.Thread(target=_app_writes, args=(built, stop))
        writer.start()
        try:
            results = [run_backup(built.settings) for _ in range(2)]
        finally:
            stop.set()
            writer.join()
        for result in results:
            assert result.ok, result.missing[:3]
            restored = restore_backup(built.settings, result.id)
            try:
                counts = next(c.counts for c in restored.checks if c.name == "files")
                assert counts["missing_file"] == 0
            finally:
                drop_database(restored.target_db)


def _app_writes(world: World, stop: threading.Event) -> None:
    """Write a file, then the row naming it, as the app does, until told to stop."""
    with psycopg.connect(world.url, autocommit=True) as conn:
        n = 0
        while not stop.is_set() and n < 5000:
            n += 1
            name = f"live-{n}.webp"
            (world.root / "uploads" / "ads" / name).write_bytes(f"upload {n}".encode())
            conn.execute(
                "INSERT INTO ad_images (ad_id, filename, file_path) VALUES (1, %s, %s)",
                (name, f"uploads/ads/{name}"),
            )


def test_restore_over_a_non_empty_database_needs_force_and_backs_it_up_first(world: World) -> None:
    result = run_backup(world.settings)
    with pytest.raises(UsageError, match="--force"):
        restore_backup(world.settings, result.id, target_db=world.name, uploads_dir=world.root)
    before = table_checksums(world.url)
    with psycopg.connect(world.url, autocommit=True) as conn:
        conn.execute("DELETE FROM ad_images WHERE id < 10")
    forced = restore_backup(
        world.settings, result.id, target_db=world.name, uploads_dir=world.root, force=True
    )
    assert forced.safety_backup is not None
    assert table_checksums(world.url) == before
    repo = Repository.open(world.settings.backup_dir or Path(), create=False)
    assert forced.safety_backup in repo.ids()


def test_restore_files_missing_puts_files_back_and_names_the_rest(world: World) -> None:
    result = run_backup(world.settings)
    victim = next(f for f in result.manifest.files if f.path.startswith("uploads/ads/ad-"))
    (world.root / victim.path).unlink()
    outcomes = restore_missing(world.settings)
    restored = [o for o in outcomes if o.outcome == "restored"]
    assert [o.path for o in restored] == [victim.path]
    repo = Repository.open(world.settings.backup_dir or Path(), create=False)
    assert (world.root / victim.path).read_bytes() == object_bytes(repo, victim.sha256)
    never = [o for o in outcomes if o.outcome == "in no backup"]
    assert len(never) == len([m for m in result.manifest.missing if m.kind == "absent"])


def test_drill_restores_the_newest_backup_checks_it_and_cleans_up(world: World) -> None:
    run_backup(world.settings)
    drill = run_drill(world.settings.replace())
    assert drill.ok, drill.detail
    repo = Repository.open(world.settings.backup_dir or Path(), create=False)
    assert not any(repo.restores.iterdir())
    assert '"ok": true' in repo.drill_log.read_text()


def test_a_drill_without_backups_fails_instead_of_crashing(world: World) -> None:
    drill = run_drill(world.settings)
    assert not drill.ok and "could not run" in drill.detail


def test_verify_finds_a_corrupt_and_a_missing_folder_list(world: World) -> None:
    result = run_backup(world.settings)
    repo = Repository.open(world.settings.backup_dir or Path(), create=False)
    pages = [page for folder in result.manifest.folders for page in folder.pages]
    assert len(pages) >= 2
    corrupt, gone = pages[0], pages[1]
    corrupt_object(repo, corrupt.sha256)  # same size: only hashing can tell
    lose_object(repo, gone.sha256)
    for read_data in (False, True):  # a folder list is always re-hashed, since it is read anyway
        found = verify_backup(repo, result.id, read_data=read_data)
        assert found.problems == 2
        assert any("does not match its hash" in e for e in found.examples)
        assert any(f"{gone.sha256} is missing" in e for e in found.examples)
    with pytest.raises(GuardError, match="failed verification"):
        restore_backup(world.settings, result.id)
    assert run_backup(world.settings).manifest.counts["files"] == result.manifest.counts["files"]


def test_unchanged_folder_lists_are_reused_and_an_in_place_rewrite_is_read_again(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(store_module, "RACY_NS", 0)
    first = run_backup(world.settings)
    second = run_backup(world.settings)
    assert second.manifest.counts["folder_lists_written"] == 0
    assert second.manifest.folders == first.manifest.folders
    folder = second.manifest.folders[0]
    victim = second.manifest.page_files(folder, folder.pages[0])[0]  # a walked file, not a symlink
    target = world.root / victim.path
    before = target.stat()
    target.write_bytes(bytes(b ^ 0xFF for b in target.read_bytes()))  # same size, same folder mtime
    os.utime(target, ns=(before.st_atime_ns, before.st_mtime_ns))  # even the mtime put back
    third = run_backup(world.settings)
    assert third.manifest.counts["files_read"] == 1
    assert third.manifest.counts["folder_lists_written"] == 1
    assert {f.path: f.sha256 for f in third.manifest.files}[victim.path] != victim.sha256
    assert verify_backup(repo_of(world), third.id, read_data=True).ok


def test_a_format_2_backup_still_serves_as_stat_cache_and_restores(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(store_module, "RACY_NS", 0)
    first = run_backup(world.settings)
    flat = replace(first.manifest, inline_files=first.manifest.files, folders=())
    repo = repo_of(world)
    write_older_format(repo, flat, FLAT_FORMAT)
    assert repo.load(first.id).folders == ()
    assert verify_backup(repo, first.id, read_data=True).ok
    second = run_backup(world.settings)
    assert second.manifest.counts["files_read"] == 0
    assert sorted(second.manifest.files) == sorted(first.manifest.files)
    restored = restore_backup(world.settings, first.id)
    try:
        assert restored.files == first.manifest.counts["files"]
    finally:
        drop_database(restored.target_db)


def test_a_folder_shared_with_a_forked_worker_gives_the_same_lists(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(store_module, "RACY_NS", 0)
    serial = run_backup(world.settings)
    monkeypatch.setattr(walk_module, "PARALLEL_MIN", 0)  # every folder: pages shared with a worker
    # whatever threads earlier tests left in this process: this test is about the forked worker
    monkeypatch.setattr(walk_module, "fork_is_safe", lambda: True)
    shared = run_backup(world.settings)
    assert shared.manifest.folders == serial.manifest.folders
    assert shared.manifest.counts["files_read"] == 0
    assert shared.manifest.missing == serial.manifest.missing
    assert shared.manifest.inline_files == serial.manifest.inline_files  # refs the walk dropped
    assert serial.manifest.inline_files and serial.manifest.missing
    names = [f for f in shared.manifest.files if f.path.startswith("uploads/ads/ad-")][:8]
    for entry in names:  # files in pages either process may take
        (world.root / entry.path).write_bytes(b"changed " + entry.path.encode())
    changed = run_backup(world.settings)
    assert changed.manifest.counts["files_read"] == len(names)
    assert changed.manifest.counts["new_objects"] == len(names)
    assert verify_backup(repo_of(world), changed.id, read_data=True).ok


def test_with_another_thread_running_the_walk_does_not_fork_and_gives_the_same_lists(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(store_module, "RACY_NS", 0)
    alone = run_backup(world.settings)
    monkeypatch.setattr(walk_module, "PARALLEL_MIN", 0)

    def no_fork() -> int:
        raise AssertionError("forked while another thread was running")

    monkeypatch.setattr(walk_module.os, "fork", no_fork)
    stop = threading.Event()
    other = threading.Thread(target=stop.wait)  # as sentry-sdk's transport thread in a worker
    other.start()
    try:
        beside = run_backup(world.settings)
    finally:
        stop.set()
        other.join()
    assert beside.manifest.folders == alone.manifest.folders
    assert beside.manifest.missing == alone.manifest.missing


def test_a_worker_that_fails_fails_the_backup_and_publishes_nothing(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    first = run_backup(world.settings)
    monkeypatch.setattr(walk_module, "PARALLEL_MIN", 0)
    monkeypatch.setattr(walk_module, "fork_is_safe", lambda: True)  # as above: the worker is the point

    parent, run = os.getpid(), walk_module._Job.run

    def full_disk_in_worker(job: Any, buckets: Any) -> Any:
        # The worker always runs once, whichever of the queued pages it gets (maybe none at all).
        if os.getpid() != parent:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return run(job, buckets)

    monkeypatch.setattr(walk_module._Job, "run", full_disk_in_worker)
    add_file(world.root, "new-one.webp", b"new content, so a list must be written")
    with pytest.raises(UnreachableError, match="No space left"):
        run_backup(world.settings)
    assert repo_of(world).ids() == [first.id]


def test_the_dump_is_chunks_in_the_store_and_an_unchanged_one_costs_one_chunk(world: World) -> None:
    first = run_backup(world.settings)
    second = run_backup(world.settings)
    repo = repo_of(world)
    assert not list(repo.backups.glob("*/database.dump"))
    chunks = first.manifest.dump.chunks
    assert chunks and sum(c.size for c in chunks) == first.manifest.dump.size
    assert all(repo.store.index[c.sha256].stored < c.size for c in chunks)  # compressed in its pack
    new = {c.sha256 for c in second.manifest.dump.chunks} - {c.sha256 for c in chunks}
    # only the archive's header holds the dump's time, to the second: one new chunk, or none when
    # both dumps started within the same second (CI saw that: the whole dump was one shared chunk)
    assert len(new) <= 1 and second.manifest.counts["dump_chunks_written"] == len(new)
    assert verify_backup(repo, second.id, read_data=True).ok


def test_verify_and_restore_refuse_a_dump_whose_chunk_is_damaged_or_lost(world: World) -> None:
    first = run_backup(world.settings)
    repo = repo_of(world)
    victim = first.manifest.dump.chunks[-1]
    corrupt_object(repo, victim.sha256)
    found = verify_backup(repo_of(world), first.id, read_data=False)  # the dump is always read whole
    assert not found.ok and "does not match its hash" in found.examples[0], found.examples
    with pytest.raises(GuardError, match="does not match its hash"):
        restore_backup(world.settings, first.id)
    lose_object(repo_of(world), victim.sha256)
    found = verify_backup(repo_of(world), first.id, read_data=False)
    assert not found.ok and "is missing" in found.examples[0], found.examples
    with pytest.raises(GuardError, match="missing"):
        restore_backup(world.settings, first.id)


def test_a_format_3_backup_with_its_dump_beside_the_manifest_verifies_and_restores(world: World) -> None:
    first = run_backup(world.settings)
    repo = repo_of(world)
    write_older_format(repo, first.manifest, LISTS_FORMAT)
    loaded = repo_of(world).load(first.id)
    assert loaded.dump.chunks == () and repo.dump_path(first.id).is_file()
    assert verify_backup(repo_of(world), first.id, read_data=True).ok
    before = table_checksums(world.url)
    restored = restore_backup(world.settings, first.id)
    try:
        target = psycopg.conninfo.make_conninfo(world.url, dbname=restored.target_db)
        assert table_checksums(target) == before
    finally:
        drop_database(restored.target_db)
    repo.dump_path(first.id).chmod(0o600)
    repo.dump_path(first.id).write_bytes(b"PGDMP damaged")
    assert not verify_backup(repo_of(world), first.id, read_data=False).ok
