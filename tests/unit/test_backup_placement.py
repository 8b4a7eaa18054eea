"""Placing backed-up files: a backslash is an ordinary name character, escapes of the root are refused."""

from __future__ import annotations

from pathlib import Path

import pytest

from guard.backup import faults
from guard.backup.faults import FAULT_ENV
from guard.backup.placement import PLACED, PRESENT, Placer
from guard.backup.repo.manifest import FileEntry
from guard.backup.repo.objects import ObjectStore
from guard.fs import paths


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


@pytest.fixture
def picture(store: ObjectStore, tmp_path: Path) -> FileEntry:
    source = tmp_path / "source.webp"
    source.write_bytes(b"the backed-up picture")
    return store.add_file(source, "a/b/pic.webp")


def test_folders_are_never_created_through_a_symlink(store: ObjectStore, tmp_path: Path) -> None:
    source = tmp_path / "source.webp"
    source.write_bytes(b"the backed-up picture")
    entry = store.add_file(source, "link/new/pic.webp")
    root, outside = tmp_path / "restored", tmp_path / "outside"
    root.mkdir()
    outside.mkdir()
    (root / "link").symlink_to(outside)
    outcome = Placer(store, root).place(entry, overwrite=True)
    assert outcome != PLACED
    assert list(outside.iterdir()) == []


def test_a_folder_swapped_for_a_symlink_before_the_write_is_not_followed(
    store: ObjectStore, tmp_path: Path, picture: FileEntry, monkeypatch: pytest.MonkeyPatch
) -> None:
    root, outside = tmp_path / "restored", tmp_path / "outside"
    (root / "a" / "b").mkdir(parents=True)
    (outside / "b").mkdir(parents=True)
    monkeypatch.setenv(FAULT_ENV, f"swap:place:{root / 'a'}:{outside}")
    monkeypatch.setattr(faults, "_raced", set())
    outcome = Placer(store, root).place(picture, overwrite=True)
    assert (root / "a").is_symlink()  # the swap did happen between the check and the write
    assert list((outside / "b").iterdir()) == []
    assert outcome == PLACED
    assert (root / "a.swapped" / "b" / "pic.webp").read_bytes() == b"the backed-up picture"


def test_a_file_that_appears_before_the_placement_is_never_overwritten(
    store: ObjectStore, tmp_path: Path, picture: FileEntry, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = tmp_path / "restored"
    (root / "a" / "b").mkdir(parents=True)
    monkeypatch.setenv(FAULT_ENV, f"touch:place:{root / 'a' / 'b' / 'pic.webp'}")
    monkeypatch.setattr(faults, "_raced", set())
    outcome = Placer(store, root).place(picture, overwrite=False)
    assert (root / "a" / "b" / "pic.webp").read_bytes() == b"appeared meanwhile\n"
    assert outcome == PRESENT
    assert [p.name for p in (root / "a" / "b").iterdir()] == ["pic.webp"]  # no temp file left
