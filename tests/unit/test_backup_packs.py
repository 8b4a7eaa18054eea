"""Packs: small objects share a file, each re-hashed on disk before it is named, and only what no
manifest needs is ever dropped."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from guard.backup.repo import packs
from guard.backup.repo.objects import ObjectStore


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@pytest.fixture
def store(tmp_path: Path) -> ObjectStore:
    for name in ("objects", "tmp"):
        (tmp_path / name).mkdir()
    return ObjectStore(tmp_path / "objects", tmp_path / "tmp")


def packed(store: ObjectStore, *contents: bytes) -> str:
    """Store contents in one sealed pack; return its name."""
    for data in contents:
        store.add_list(data)
    store.flush()
    [name] = packs.pack_names(store.packs)
    return name


def damage(store: ObjectStore, data: bytes) -> None:
    """Flip the first byte of a packed object where it lies on disk."""
    where = store.index[sha(data)]
    pack = Path(where.file)
    pack.chmod(0o644)
    content = bytearray(pack.read_bytes())
    content[where.offset] ^= 0xFF
    pack.write_bytes(bytes(content))


def fresh(store: ObjectStore) -> ObjectStore:
    """The same store as another process would open it: everything read from disk again."""
    return ObjectStore(store.objects, store.tmp, store.packs)


def test_small_objects_share_one_pack_named_only_once_sealed(store: ObjectStore) -> None:
    contents = [f"picture {i}".encode() for i in range(5)]
    for data in contents:
        store.add_list(data)
    assert packs.pack_names(store.packs) == []  # nothing is named before it is checked on disk
    assert not fresh(store).has(sha(contents[0]), len(contents[0]))
    store.flush()
    assert len(packs.pack_names(store.packs)) == 1
    assert list(store.tmp.iterdir()) == []
    reopened = fresh(store)
    assert [reopened.read(sha(d)) for d in contents] == contents
    assert all(reopened.check(sha(d), len(d), read_data=True) is None for d in contents)
    assert list(store.objects.iterdir()) == []  # no loose file for a small object


def test_a_pack_is_sealed_when_full_and_at_the_end(
    store: ObjectStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(packs, "TARGET", 40)
    for i in range(10):
        store.add_list(f"a folder list number {i}".encode())  # 23 bytes: two per pack
    store.flush()
    assert len(packs.pack_names(store.packs)) == 5
    assert len(fresh(store).index) == 10


def test_an_object_damaged_before_the_seal_is_never_named(store: ObjectStore) -> None:
    store.add_list(b"a folder list")
    pending = Path(store._writer.pending)
    pending.chmod(0o644)
    pending.write_bytes(b"A FOLDER LIST")  # what a disk or memory fault could leave
    with pytest.raises(packs.PackError, match="did not hash"):
        store.flush()
    assert packs.pack_names(store.packs) == []
    assert list(store.tmp.iterdir()) == []
    assert not store.has(sha(b"a folder list"), 13)  # so the next backup writes it again


def test_a_damaged_index_or_a_short_pack_names_nothing(store: ObjectStore) -> None:
    one, two = b"first object", b"second object"
    name = packed(store, one, two)
    pack = store.packs / f"{name}.pack"
    pack.chmod(0o644)
    pack.write_bytes(pack.read_bytes()[: len(one) + 3])  # truncated inside the second object
    assert set(fresh(store).index) == {sha(one)}
    index = store.packs / f"{name}.idx"
    data = bytearray(index.read_bytes())
    data[len(packs.IDX_MAGIC)] ^= 1
    index.write_bytes(bytes(data))
    assert fresh(store).index == {}
    assert fresh(store).check(sha(one), len(one), read_data=False) == "missing"


def test_a_pack_without_its_index_is_removed(store: ObjectStore) -> None:
    store.add_list(b"an object")
    store.flush()
    [name] = packs.pack_names(store.packs)
    (store.packs / f"{name}.idx").unlink()  # a crash between the pack's rename and its index's
    assert packs.remove_unindexed(store.packs) == 1
    assert list(store.packs.iterdir()) == []


def test_only_objects_that_do_not_match_are_unindexed(store: ObjectStore) -> None:
    good, bad = b"intact object", b"damaged object"
    name = packed(store, good, bad)
    damage(store, bad)
    assert packs.drop_bad(store.packs, store.tmp, name) == 1
    reopened = fresh(store)
    assert set(reopened.index) == {sha(good)}
    assert reopened.read(sha(good)) == good


def test_garbage_collection_keeps_every_needed_object_and_drops_the_rest(
    store: ObjectStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(packs, "TARGET", 30)
    contents = [f"object number {i}".encode() for i in range(6)]  # 15 bytes: two per pack
    for data in contents:
        store.add_list(data)
    store.flush()
    needed = {sha(contents[0]), sha(contents[1]), sha(contents[2])}  # a whole pack, and half of one
    removed, freed, notes = store.collect_garbage(needed)
    assert (removed, freed, notes) == (3, 45, [])
    reopened = fresh(store)
    assert set(reopened.index) == needed
    assert all(reopened.check(s, 15, read_data=True) is None for s in needed)
    assert len(packs.pack_names(store.packs)) == 2  # the whole pack kept, the half one rewritten


def test_a_failed_backup_drops_its_open_pack(store: ObjectStore) -> None:
    store.add_list(b"never published")
    store.abandon()
    assert list(store.tmp.iterdir()) == []
    assert not store.has(sha(b"never published"), 15)


def test_prune_keeps_a_pack_whose_needed_object_is_damaged_and_says_so(store: ObjectStore) -> None:
    needed, dead = b"needed object", b"object no backup names"
    packed(store, needed, dead)
    damage(store, needed)
    removed, _, notes = fresh(store).collect_garbage({sha(needed)})
    assert removed == 0
    assert len(notes) == 1 and "do not match their hash" in notes[0]
    assert len(fresh(store).index) == 2  # nothing dropped: what to do with it is the operator's call


def test_prune_is_not_stuck_on_an_index_whose_pack_is_gone(store: ObjectStore) -> None:
    name = packed(store, b"needed object", b"object no backup names")
    (store.packs / f"{name}.pack").unlink()  # an OS crash kept the pack's unlink, not the index's
    fresh(store).collect_garbage({sha(b"needed object")})
    assert packs.pack_names(store.packs) == []


def test_a_reader_finds_an_object_that_prune_moved_to_a_new_pack(store: ObjectStore) -> None:
    kept, dropped = b"object a backup names", b"object none names"
    store.add_list(kept)
    store.add_list(dropped)
    store.flush()
    reader = fresh(store)
    old = reader.index[sha(kept)]
    fresh(store).collect_garbage({sha(kept)})  # prune, which `backup list` does not wait for
    assert reader.read(sha(kept)) == kept
    assert reader.index[sha(kept)] != old


def test_a_damaged_index_is_removed_and_its_pack_goes_at_the_next_clean_up(store: ObjectStore) -> None:
    store.add_list(b"an object")
    store.flush()
    [name] = packs.pack_names(store.packs)
    index = store.packs / f"{name}.idx"
    index.write_bytes(index.read_bytes()[:-1] + b"?")
    assert packs.drop_bad(store.packs, store.tmp, name) == 0
    assert not index.exists()
    assert packs.remove_unindexed(store.packs) == 1
