"""A restore's reads are planned pack by pack: each pack read once, each object checked, damage seen."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from guard.backup import restoreplan
from guard.backup.placement import PLACED, Placer
from guard.backup.repo.manifest import FileEntry
from guard.backup.repo.objects import ObjectStore


@pytest.fixture
def store(tmp_path: Path) -> ObjectStore:
    for name in ("objects", "tmp"):
        (tmp_path / name).mkdir()
    return ObjectStore(tmp_path / "objects", tmp_path / "tmp")


def stored(store: ObjectStore, tmp_path: Path, contents: list[bytes], prefix: str = "f") -> list[FileEntry]:
    entries = []
    for i, content in enumerate(contents):
        source = tmp_path / f"{prefix}{i}.src"
        source.write_bytes(content)
        entries.append(store.add_file(source, f"uploads/{prefix}{i}.webp"))
    store.flush()
    return entries


def count_preads(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, int, int]]:
    calls: list[tuple[str, int, int]] = []
    real_open, real_pread = os.open, os.pread
    names: dict[int, str] = {}

    def opening(path: str, *args: object, **kwargs: object) -> int:
        fd = real_open(path, *args, **kwargs)  # type: ignore[arg-type]
        names[fd] = str(path)
        return fd

    def reading(fd: int, size: int, offset: int) -> bytes:
        calls.append((names.get(fd, "?"), size, offset))
        return real_pread(fd, size, offset)

    monkeypatch.setattr(restoreplan.os, "open", opening)
    monkeypatch.setattr(restoreplan.os, "pread", reading)
    return calls


def test_each_pack_is_read_once_for_all_the_files_it_holds(
    store: ObjectStore, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    first = stored(store, tmp_path, [f"picture {i}".encode() for i in range(50)], "a")
    second = stored(store, tmp_path, [f"other {i}".encode() for i in range(50)], "b")
    duplicates = [FileEntry(f"uploads/copy{i}.webp", e.sha256, e.size) for i, e in enumerate(first[:10])]
    assert len(store.sealed) == 2
    plan = restoreplan.make_plan(store, [*first, *second, *duplicates])
    assert len(plan.spans) == 2 and not plan.loose
    calls = count_preads(monkeypatch)
    root = tmp_path / "restored"
    placer = Placer(store, root)
    for objects in restoreplan.fetch(plan.spans):
        for sha, data in objects:
            assert data is not None
            for entry in plan.users[sha]:
                assert placer.put(entry, data, fresh=True) == PLACED
    placer.close()
    assert sorted(c[0] for c in calls) == sorted(f"{store.packs}/{n}.pack" for n in store.sealed)
    assert (root / "uploads" / "copy3.webp").read_bytes() == b"picture 3"
    assert (root / "uploads" / "b49.webp").read_bytes() == b"other 49"


def test_a_span_breaks_at_a_long_gap_and_never_reads_a_byte_twice(
    store: ObjectStore, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(restoreplan, "GAP", 100)
    entries = stored(store, tmp_path, [b"x" * 60 + bytes([i]) for i in range(10)])
    wanted = [entries[0], entries[1], entries[8]]  # 6 objects of 61 bytes lie between 1 and 8
    plan = restoreplan.make_plan(store, wanted)
    assert [len(s.objects) for s in plan.spans] == [2, 1]
    ranges = [(s.start, s.end) for s in plan.spans]
    assert ranges[0][1] <= ranges[1][0]


def test_a_corrupted_pack_is_caught_before_any_file_is_written_from_it(
    store: ObjectStore, tmp_path: Path
) -> None:
    entries = stored(store, tmp_path, [b"first picture", b"second picture"])
    pack = store.packs / f"{store.sealed[0]}.pack"
    data = bytearray(pack.read_bytes())
    where = store.index[entries[1].sha256]
    data[where.offset] ^= 0xFF
    os.chmod(pack, 0o600)
    pack.write_bytes(bytes(data))
    plan = restoreplan.make_plan(store, entries)
    verdicts = dict(obj for objects in restoreplan.fetch(plan.spans) for obj in objects)
    assert verdicts[entries[0].sha256] == b"first picture"
    assert verdicts[entries[1].sha256] is None


def test_a_reading_error_reaches_the_caller_and_stops_the_reader(store: ObjectStore, tmp_path: Path) -> None:
    entries = stored(store, tmp_path, [b"a picture"])
    plan = restoreplan.make_plan(store, entries)
    (store.packs / f"{store.sealed[0]}.pack").unlink()
    with pytest.raises(FileNotFoundError):
        list(restoreplan.fetch(plan.spans))


def test_a_fresh_put_leaves_no_short_file_when_the_write_fails(
    store: ObjectStore, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from guard.backup import placement

    def full_disk(_fd: int, _data: bytes) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(placement, "write_all", full_disk)
    root = tmp_path / "restored"
    entry = FileEntry("uploads/a.webp", "0" * 64, 3)
    with pytest.raises(OSError, match="No space"):
        Placer(store, root).put(entry, b"abc", fresh=True)
    assert not (root / "uploads" / "a.webp").exists()
