"""Format 5's pages cut by name: a format-4 backup's hash pages as stat cache, pages that split."""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any
from zlib import crc32

import pytest
import zstandard
from backup_support import World, assert_restores_byte_identical, make_world, repo_of

from guard.backup import run_backup
from guard.backup.repo import objects as store_module
from guard.backup.repo import permissions
from guard.backup.repo.manifest import (
    BY_NAME,
    CHUNKS_FORMAT,
    FolderRef,
    Manifest,
    ManifestError,
    PageRef,
    page_bytes,
    stat_digest,
)
from guard.backup.repo.repository import MANIFEST, Repository
from guard.backup.verify import verify_backup
from guard.backup.walk import paging, statpage

pytestmark = pytest.mark.integration


@pytest.fixture
def world(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[World]:
    """A 150-ad world whose files are all old enough to trust as the stat cache."""
    monkeypatch.setattr(store_module, "RACY_NS", 0)
    yield from make_world(tmp_path, ads=150, bad_rate=0.02)


def hash_pages(repo: Repository, manifest: Manifest, folder: FolderRef) -> FolderRef:
    """The folder as format 4 listed it: 32 files a page by the CRC-32 of the name, format-1 pages."""
    rows = {r[0]: tuple(r) for page in folder.pages for r in manifest.page_list(folder, page)}
    buckets = 1
    while buckets * 32 < len(rows):
        buckets *= 2
    pages = []
    for bucket, names in enumerate(statpage.group(sorted(rows), buckets)):
        if names:
            part = [rows[n] for n in sorted(names)]
            sha, size = repo.store.add_list(page_bytes(folder.path, part))
            digest = stat_digest([(r[0], r[2], r[3], r[4], r[5]) for r in part])
            pages.append(PageRef(bucket, sha, size, len(part), sum(r[2] for r in part), digest))
    return FolderRef(folder.path, buckets, tuple(pages))


def write_format_4(repo: Repository, manifest: Manifest) -> None:
    """Rewrite a backup as format 4 left it: hash pages of six values each, one zstd frame."""
    with repo.lock(exclusive=True):
        folders = tuple(hash_pages(repo, manifest, f) for f in manifest.folders)
        repo.store.flush()
    body: dict[str, Any] = replace(manifest, folders=folders).body()
    body["format"] = CHUNKS_FORMAT
    body["folders"] = [[f.path, f.buckets, [list(p)[:6] for p in f.pages]] for f in folders]
    raw = json.dumps(body, ensure_ascii=True, separators=(",", ":")).encode("ascii")
    digest = hashlib.sha256(raw).hexdigest().encode()
    folder = repo.folder(manifest.id)
    folder.chmod(0o700)
    (folder / MANIFEST).unlink()
    data = b'{"checksum":"sha256:' + digest + b'",' + raw[1:]
    permissions.write_file(folder / MANIFEST, zstandard.ZstdCompressor().compress(data), permissions.FROZEN)


def test_a_format_4_backup_with_hash_pages_is_the_stat_cache_of_the_first_format_5_one(world: World) -> None:
    first = run_backup(world.settings)
    repo = repo_of(world)
    write_format_4(repo, first.manifest)
    old = repo_of(world).load(first.id)
    assert all(f.buckets >= 1 and all(p.first is None for p in f.pages) for f in old.folders)
    assert sorted(old.files) == sorted(first.manifest.files)
    assert verify_backup(repo_of(world), first.id, read_data=True).ok

    second = run_backup(world.settings)

    assert second.manifest.counts["files_read"] == 0  # every file known from the hash pages
    assert all(f.buckets == BY_NAME for f in second.manifest.folders)
    assert sorted(second.manifest.files) == sorted(first.manifest.files)
    assert verify_backup(repo_of(world), second.id, read_data=True).ok
    assert verify_backup(repo_of(world), first.id, read_data=True).ok
    assert_restores_byte_identical(world, first.id)
    third = run_backup(world.settings)
    assert third.manifest.counts["folder_lists_written"] == 0
    assert third.manifest.folders == second.manifest.folders


def splitting_name(page_first: str, second_name: str) -> str:
    """A new name that sorts between a page's first two names and ends a page there."""
    for i in range(1_000_000):
        name = f"{page_first}-{i}"
        if name < second_name and crc32(os.fsencode(name)) & paging.PAGE_MASK == paging.PAGE_MASK:
            return name
    raise AssertionError("no such name")


def test_a_file_added_or_removed_inside_a_page_rereads_only_itself(world: World) -> None:
    first = run_backup(world.settings)
    folder = max(first.manifest.folders, key=lambda f: len(f.pages))
    page = next(p for p in folder.pages if p.files >= 4)  # names[2] does not end it: no merge
    names = [r[0] for r in first.manifest.page_list(folder, page)]
    added = splitting_name(names[0], names[1])
    (world.root / folder.path / added).write_bytes(b"a picture added between two backups")
    os.unlink(world.root / folder.path / names[2])

    second = run_backup(world.settings)

    assert second.manifest.counts["files_read"] == 1  # the split page's other files came from its rows
    assert 1 <= second.manifest.counts["folder_lists_written"] <= 3
    after = next(f for f in second.manifest.folders if f.path == folder.path)
    assert len(after.pages) == len(folder.pages) + 1
    assert {p.first for p in after.pages} == {p.first for p in folder.pages} | {names[1]}
    listed = {f.path for f in second.manifest.files}
    assert f"{folder.path}/{added}" in listed and f"{folder.path}/{names[2]}" not in listed
    assert verify_backup(repo_of(world), second.id, read_data=True).ok
    assert_restores_byte_identical(world, second.id)


def test_pages_kept_from_a_backup_before_stay_in_name_order_once_earlier_pages_are_gone(world: World) -> None:
    # A page kept from the backup before keeps its PageRef; the folder's pages are put in order by
    # their place: a kept page's place must be its place now, not the one it had when it was written.
    bulk = world.root / world.settings.scan_dirs[0] / "bulk"
    bulk.mkdir()
    for i in range(1_500):
        (bulk / f"f{i:05}").write_bytes(b"picture %d" % i)
    first = run_backup(world.settings)
    where = f"{world.settings.scan_dirs[0]}/bulk"
    folder = next(f for f in first.manifest.folders if f.path == where)
    assert len(folder.pages) >= 6
    for page in folder.pages[1:3]:  # two whole pages removed: every later page moves two places up
        for row in first.manifest.page_list(folder, page):
            os.unlink(bulk / row[0])
    changed = first.manifest.page_list(folder, folder.pages[4])[0][0]
    (bulk / changed).write_bytes(b"a picture replaced between two backups")

    second = run_backup(world.settings)

    after = repo_of(world).load(second.id)  # a folder's pages out of name order: unreadable
    pages = next(f for f in after.folders if f.path == where).pages
    assert [p.first for p in pages] == sorted(p.first or "" for p in pages)
    assert after.counts["folder_lists_written"] >= 1 and after.counts["files_read"] == 1
    assert verify_backup(repo_of(world), second.id, read_data=True).ok


def test_a_manifest_guard_could_not_read_back_is_never_published(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    first = run_backup(world.settings)
    body = Manifest.to_bytes
    monkeypatch.setattr(Manifest, "to_bytes", lambda self: body(self).replace(b'"format":', b'"format_":'))
    with pytest.raises(ManifestError):
        run_backup(world.settings)
    assert repo_of(world).ids() == [first.id]  # nothing half-published, and the store takes the next
    monkeypatch.undo()
    assert verify_backup(repo_of(world), run_backup(world.settings).id, read_data=True).ok
