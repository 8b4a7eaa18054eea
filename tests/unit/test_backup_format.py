"""Repository format 2: compressed folder lists in packs, format-1 repositories still read and upgraded."""

from __future__ import annotations

import hashlib
import json
import os
import zlib
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


def test_a_format_2_repository_keeps_its_zlib_lists_readable_and_is_upgraded_by_the_next_writer(
    tmp_path: Path,
) -> None:
    root = tmp_path / "repo"
    repo = Repository.open(root, create=True)
    data = a_list(32)
    sha = hashlib.sha256(data).hexdigest()
    repo.store._writer.append_stored(sha, zlib.compress(data, 6), len(data))  # as format 2 wrote it
    repo.store.flush()
    (root / MARKER).write_text('{"format": "guard-backup/2"}\n')
    old = Repository.open(root, create=False)
    assert old.store.read_list(sha, len(data)) == data
    assert old.store.check(sha, len(data), read_data=True) is None
    assert json.loads((root / MARKER).read_text())["format"] == "guard-backup/2"  # reading changes nothing
    Repository.open(root, create=True)
    assert json.loads((root / MARKER).read_text())["format"] == FORMAT == "guard-backup/3"


def test_new_objects_are_zstd_frames(tmp_path: Path) -> None:
    repo = Repository.open(tmp_path / "repo", create=True)
    sha, size = repo.store.add_list(a_list(32))
    chunk, chunk_size = repo.store.add_chunk(b"COPY public.ads (id) FROM stdin;\n" * 1000)
    repo.store.flush()
    for name, length in ((sha, size), (chunk, chunk_size)):
        where = repo.store.index[name]
        assert where.stored < length
        assert Path(where.file).read_bytes()[where.offset : where.offset + 4] == packs.ZSTD_MAGIC
        assert Repository.open(tmp_path / "repo", create=False).store.read(name) == repo.store.read(name)
