"""Repository format 2: compressed folder lists in packs, format-1 repositories still read and upgraded."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import pytest

from guard.backup.repo import packs
from guard.backup.repo.objects import ObjectStore
from guard.backup.repo.repository import FORMAT, MARKER, OLD_MARKER, Repository
from guard.errors import UnreachableError, UsageError


def a_list(n: int) -> bytes:
    rows = [
        [f"ad-{i:07d}.webp", hashlib.sha256(str(i % 7).encode()).hexdigest(), 34, 1, 2, i] for i in range(n)
    ]
    return json.dumps({"format": "guard-files/1", "files": rows}, separators=(",", ":")).encode()


def index_magic(store: ObjectStore) -> bytes:
    (name,) = store.sealed
    return (store.packs / f"{name}.idx").read_bytes()[: len(packs.IDX_MAGIC)]


def test_a_folder_list_is_stored_compressed_and_read_back_exactly(tmp_path: Path) -> None:
    repo = Repository.open(tmp_path / "repo", create=True)
    store = repo.store
    data = a_list(32)
    sha, size = store.add_list(data)
    store.flush()
    where = store.index[sha]
    assert where.size == len(data) and where.stored < len(data) / 2
    assert index_magic(store) == packs.IDX2_MAGIC
    assert Repository.open(tmp_path / "repo", create=False).store.read_list(sha, size) == data
    assert store.check(sha, size, read_data=True) is None


def test_uploads_alone_keep_a_format_1_index_every_version_reads(tmp_path: Path) -> None:
    repo = Repository.open(tmp_path / "repo", create=True)
    source = tmp_path / "pic.webp"
    source.write_bytes(b"RIFF a small picture " * 10)  # compressible, but an upload is stored as it is
    entry = repo.store.add_file(source, "uploads/pic.webp")
    repo.store.flush()
    assert index_magic(repo.store) == packs.IDX_MAGIC
    assert repo.store.index[entry.sha256].stored == entry.size


def test_a_damaged_compressed_object_is_found_by_read_data(tmp_path: Path) -> None:
    repo = Repository.open(tmp_path / "repo", create=True)
    sha, size = repo.store.add_list(a_list(32))
    repo.store.flush()
    where = repo.store.index[sha]
    os.chmod(where.file, 0o600)
    data = bytearray(Path(where.file).read_bytes())
    data[where.offset + where.stored // 2] ^= 0x55
    Path(where.file).write_bytes(bytes(data))
    fresh = Repository.open(tmp_path / "repo", create=False).store
    assert fresh.check(sha, size, read_data=True) == "content does not match its hash"
    (name,) = repo.store.sealed
    assert packs.unindex_bad(repo.packs, repo.tmp, name) == [sha]


def test_a_repack_keeps_compressed_objects_readable(tmp_path: Path) -> None:
    repo = Repository.open(tmp_path / "repo", create=True)
    keep, keep_size = repo.store.add_list(a_list(40))
    drop, _ = repo.store.add_list(a_list(41))
    repo.store.flush()
    removed, _, notes = repo.store.collect_garbage({keep})
    assert removed == 1 and not notes
    store = Repository.open(tmp_path / "repo", create=False).store
    assert store.read_list(keep, keep_size) == a_list(40)
    assert drop not in store.index


def test_a_format_1_repository_is_read_then_upgraded_by_the_next_writer(tmp_path: Path) -> None:
    root = tmp_path / "repo"
    repo = Repository.open(root, create=True)
    source = tmp_path / "pic.webp"
    source.write_bytes(b"a picture an earlier version backed up")
    entry = repo.store.add_file(source, "uploads/pic.webp")
    repo.store.flush()
    (root / MARKER).unlink()
    (root / OLD_MARKER).write_text('{"format": "guard-backup/1"}\n')  # as every earlier version left it
    old = Repository.open(root, create=False)
    assert old.store.read(entry.sha256) == source.read_bytes()
    assert (root / OLD_MARKER).exists() and not (root / MARKER).exists()  # reading changes nothing
    Repository.open(root, create=True)
    assert json.loads((root / MARKER).read_text())["format"] == FORMAT
    assert not (root / OLD_MARKER).exists()  # earlier versions now refuse it instead of misreading it


def test_a_repository_from_a_newer_guard_is_refused_with_one_clear_line(tmp_path: Path) -> None:
    root = tmp_path / "repo"
    Repository.open(root, create=True)
    (root / MARKER).write_text('{"format": "guard-backup/9"}\n')
    for create in (False, True):
        with pytest.raises(UsageError, match="format 'guard-backup/9', which this guard does not know"):
            Repository.open(root, create=create)
    (root / MARKER).unlink()
    with pytest.raises(UnreachableError, match="no guard backup repository"):
        Repository.open(root, create=False)
