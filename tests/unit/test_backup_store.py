"""The backup object store: each content stored once, known content costs no write, big files stream."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest

from guard.backup.repo import objects as store_module
from guard.backup.repo.objects import ObjectStore
from guard.backup.walk import pageread


@pytest.fixture
def store(tmp_path: Path) -> ObjectStore:
    for name in ("objects", "tmp"):
        (tmp_path / name).mkdir()
    return ObjectStore(tmp_path / "objects", tmp_path / "tmp")


def _file(folder: Path, name: str, content: bytes) -> Path:
    path = folder / name
    path.write_bytes(content)
    return path


def test_content_the_store_already_holds_is_hashed_but_not_written_again(
    store: ObjectStore, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The second object write would fail: adding the same content again must not write at all.
    monkeypatch.setenv("GUARD_BACKUP_FAULT", "enospc:2")
    store = ObjectStore(store.objects, store.tmp)
    first = store.add_file(_file(tmp_path, "a.webp", b"same picture"), "uploads/ads/a.webp")
    second = store.add_file(_file(tmp_path, "b.webp", b"same picture"), "uploads/ads/b.webp")
    assert first.sha256 == second.sha256 == hashlib.sha256(b"same picture").hexdigest()
    assert (store.files_read, store.new_objects) == (2, 1)
    assert store.read(first.sha256) == b"same picture"  # read from the pack still being written
    store.flush()
    assert list(store.tmp.iterdir()) == []
    assert store.read(first.sha256) == b"same picture"
    with pytest.raises(OSError, match="No space left"):
        store.add_file(_file(tmp_path, "c.webp", b"new content"), "uploads/ads/c.webp")


def test_a_file_bigger_than_the_in_memory_limit_is_streamed_in_and_verified(
    store: ObjectStore, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(store_module, "SMALL", 16)
    monkeypatch.setattr(store_module, "CHUNK", 7)
    content = b"a picture much longer than sixteen bytes, read in chunks of seven"
    entry = store.add_file(_file(tmp_path, "big.webp", content), "uploads/ads/big.webp")
    assert entry.sha256 == hashlib.sha256(content).hexdigest()
    assert entry.size == len(content)
    assert store.path(entry.sha256).read_bytes() == content
    assert list(store.tmp.iterdir()) == []


@pytest.fixture(params=["compiled", "python"])
def page_read(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """add_files with the compiled page read and with its pure-Python twin."""
    if request.param == "python":
        monkeypatch.setattr(pageread, "read_files", pageread.read_files_py)
    return str(request.param)


def test_a_page_of_files_is_read_into_the_store_in_one_call(
    store: ObjectStore, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, page_read: str
) -> None:
    monkeypatch.setattr(store_module, "SMALL", 16)  # big.webp takes add_file's streaming path
    folder = tmp_path / "ads"
    folder.mkdir()
    contents = {"a.webp": b"picture a", "b.webp": b"picture a", "big.webp": b"x" * 40, "c.webp": b""}
    for name, content in contents.items():
        _file(folder, name, content)
    (folder / "link.webp").symlink_to(folder / "a.webp")  # never followed: as if gone
    names = ["a.webp", "b.webp", "big.webp", "c.webp", "gone.webp", "link.webp"]
    fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
    try:
        rows = store.add_files(names, "uploads/ads", fd)
        monkeypatch.setattr(store_module, "RACY_NS", 0)  # as if they were written long ago
        again = store.add_files(["a.webp", "big.webp"], "uploads/ads", fd)
    finally:
        os.close(fd)
    assert rows[4:] == [None, None]
    for name, row in zip(names, rows[:4], strict=False):
        st = os.lstat(folder / name)
        assert row is not None
        assert row[:3] == (hashlib.sha256(contents[name]).hexdigest(), st.st_size, st.st_mtime_ns)
        assert row[4] == st.st_ino
        assert store.read(row[0]) == contents[name]
        assert row[3] is None  # written just now: never a cache hit
    assert [r[3] if r else None for r in again] == [
        os.lstat(folder / n).st_ctime_ns for n in ("a.webp", "big.webp")
    ]
    assert (store.files_read, store.new_objects) == (8, 3)  # every attempt counts; a.webp, b.webp: one object
