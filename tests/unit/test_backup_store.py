"""The backup object store: each content stored once, known content costs no write, big files stream."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from guard.backup.repo import objects as store_module
from guard.backup.repo.objects import ObjectStore


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
