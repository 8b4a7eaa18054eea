"""Placing backed-up files: a backslash is an ordinary name character, escapes of the root are refused."""

from __future__ import annotations

from pathlib import Path

import pytest

from guard import paths
from guard.backup.placement import PLACED, Placer
from guard.backup.store import ObjectStore


@pytest.fixture
def store(tmp_path: Path) -> ObjectStore:
    for name in ("objects", "tmp"):
        (tmp_path / name).mkdir()
    return ObjectStore(tmp_path / "objects", tmp_path / "tmp")


def test_a_backslash_is_allowed_only_when_asked_and_nothing_else_is_relaxed() -> None:
    assert paths.unsafe_reason("ads\\photo.webp") == "contains a backslash"
    assert paths.unsafe_reason("ads\\photo.webp", backslash_ok=True) is None
    assert paths.unsafe_reason("../x\\y", backslash_ok=True) == "has a '..' segment"
    assert paths.unsafe_reason("/etc\\x", backslash_ok=True) == "is absolute"
    assert paths.unsafe_reason("a\x00\\b", backslash_ok=True) == "contains a NUL byte"


def test_a_file_named_with_a_backslash_is_placed_under_the_root(store: ObjectStore, tmp_path: Path) -> None:
    source = tmp_path / "source.webp"
    source.write_bytes(b"a picture whose name holds a backslash")
    entry = store.add_file(source, "uploads/ads\\odd.webp")
    root = tmp_path / "restored"
    assert Placer(store, root).place(entry, overwrite=False) == PLACED
    assert (root / "uploads" / "ads\\odd.webp").read_bytes() == source.read_bytes()


@pytest.mark.parametrize(
    ("name", "reason"),
    [
        ("../outside.webp", "has a '..' segment"),
        ("uploads/../../outside.webp", "has a '..' segment"),
        ("/tmp/absolute.webp", "is absolute"),
        ("uploads/nul\x00.webp", "contains a NUL byte"),
    ],
)
def test_a_name_that_escapes_or_cannot_exist_is_not_written(
    store: ObjectStore, tmp_path: Path, name: str, reason: str
) -> None:
    source = tmp_path / "source.webp"
    source.write_bytes(b"content")
    entry = store.add_file(source, name)
    root = tmp_path / "restored"
    root.mkdir()
    assert Placer(store, root).place(entry, overwrite=True) == f"path {reason}; not written"
    assert list(root.iterdir()) == []
    assert not (tmp_path / "outside.webp").exists()
