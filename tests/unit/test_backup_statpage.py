"""The compiled page stat and its pure-Python twin: the same bytes, the same refusals, one digest."""

from __future__ import annotations

import hashlib
import marshal
import os
import zlib
from collections.abc import Iterator
from pathlib import Path

import pytest

from guard.backup.repo.manifest import stat_digest_matches
from guard.backup.walk import statpage

NAMES = [
    "-leading-dash.webp",
    "line\nbreak.webp",
    "not-utf8-\udcff\udcfe.webp",  # os.fsdecode of the bytes b"\xff\xfe"
    "plain.webp",
    'say "cheese".webp',
    "日本の車 🚗.webp",
]
IMPLEMENTATIONS = [
    pytest.param(statpage.stat_blob_py, id="python"),
    pytest.param(statpage.stat_blob, id="compiled"),
]


@pytest.fixture
def folder(tmp_path: Path) -> Iterator[tuple[Path, int]]:
    for i, name in enumerate(NAMES):
        (tmp_path / name).write_bytes(b"x" * i)
    fd = os.open(tmp_path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        yield tmp_path, fd
    finally:
        os.close(fd)


def test_the_extension_is_built_where_a_compiler_was_there() -> None:
    # make's install has gcc on every machine here; a silent fallback would hide a slow walk
    assert statpage.COMPILED
    assert statpage.stat_blob is not statpage.stat_blob_py
    assert statpage.group is not statpage.group_py


@pytest.mark.parametrize("stat_blob", IMPLEMENTATIONS)
def test_every_name_is_stat_ed_in_order(stat_blob, folder: tuple[Path, int]) -> None:  # type: ignore[no-untyped-def]
    path, fd = folder
    packed = stat_blob(fd, statpage.names_blob(NAMES))
    rows = statpage.rows(NAMES, packed)
    for name, size, mtime_ns, ctime_ns, inode in rows:
        st = os.lstat(path / name)
        assert (size, mtime_ns, ctime_ns, inode) == (st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino)
    assert [r[1] for r in rows] == list(range(len(NAMES)))


@pytest.mark.parametrize("stat_blob", IMPLEMENTATIONS)
@pytest.mark.parametrize("odd", ["gone.webp", "folder", "link.webp", "fifo"])
def test_a_page_with_anything_but_regular_files_is_refused(
    stat_blob, folder: tuple[Path, int], odd: str
) -> None:  # type: ignore[no-untyped-def]
    path, fd = folder
    if odd == "folder":
        (path / odd).mkdir()
    elif odd == "link.webp":
        (path / odd).symlink_to(path / "plain.webp")  # a link to a regular file is still not one
    elif odd == "fifo":
        os.mkfifo(path / odd)
    assert stat_blob(fd, statpage.names_blob(sorted([*NAMES, odd]))) is None


def test_both_give_the_same_bytes(folder: tuple[Path, int]) -> None:
    _, fd = folder
    blob = statpage.names_blob(NAMES)
    assert statpage.stat_blob(fd, blob) == statpage.stat_blob_py(fd, blob)


def test_the_digest_from_bytes_is_the_digest_from_rows(folder: tuple[Path, int]) -> None:
    _, fd = folder
    blob = statpage.names_blob(NAMES)
    packed = statpage.stat_blob(fd, blob)
    assert packed is not None
    rows = statpage.rows(NAMES, packed)
    assert statpage.digest(blob, packed) == statpage.rows_digest(rows)
    assert stat_digest_matches(rows, statpage.rows_digest(rows))


def test_a_name_cannot_slide_into_the_next_one() -> None:
    packed = bytes(64)
    assert statpage.digest(statpage.names_blob(["ab", "c"]), packed) != statpage.digest(
        statpage.names_blob(["a", "bc"]), packed
    )


def test_digests_recorded_by_earlier_versions_still_verify() -> None:
    rows = [("a.webp", 34, 1, 2, 3), ("b.webp", 34, 1, 2, 3)]
    old = "m2:" + hashlib.sha256(marshal.dumps(rows, 2)).hexdigest()
    assert stat_digest_matches(rows, old)
    assert not stat_digest_matches([rows[0], ("b.webp", 35, 1, 2, 3)], old)


def test_the_compiled_one_refuses_a_blob_without_its_last_nul() -> None:
    with pytest.raises(ValueError, match="NUL"):
        statpage.stat_blob(0, b"plain.webp")


@pytest.mark.parametrize("buckets", [1, 2, 64])
def test_both_group_names_into_the_same_buckets_in_listing_order(buckets: int) -> None:
    names = [*NAMES, *(f"ad-{i}.webp" for i in range(500))]
    groups = statpage.group(names, buckets)
    assert groups == statpage.group_py(names, buckets)
    assert sorted(n for g in groups for n in g) == sorted(names)
    for bucket, members in enumerate(groups):  # zlib's CRC of the file-system bytes picks the bucket
        for name in members:
            assert zlib.crc32(os.fsencode(name)) % buckets == bucket
        assert members == [n for n in names if n in set(members)]


def test_group_refuses_a_bucket_count_that_is_not_a_power_of_two() -> None:
    with pytest.raises(ValueError, match="power of two"):
        statpage.group(["a"], 3)


@pytest.mark.parametrize("stat_blob", IMPLEMENTATIONS)
def test_times_before_1970_are_packed_alike(stat_blob, folder: tuple[Path, int]) -> None:  # type: ignore[no-untyped-def]
    path, fd = folder
    os.utime(path / "plain.webp", ns=(-1_500_000_000_123, -1_500_000_000_123))
    packed = stat_blob(fd, statpage.names_blob(NAMES))
    assert packed == statpage.stat_blob_py(fd, statpage.names_blob(NAMES))
    rows = statpage.rows(NAMES, packed)
    assert rows[NAMES.index("plain.webp")][2] == -1_500_000_000_123


@pytest.mark.parametrize("stat_blob", IMPLEMENTATIONS)
def test_a_time_beyond_64_bit_nanoseconds_takes_the_careful_path(stat_blob, folder: tuple[Path, int]) -> None:  # type: ignore[no-untyped-def]
    path, fd = folder
    far = 10**19  # the year 2286: ext4 and tmpfs keep it, 64-bit nanoseconds do not
    os.utime(path / "plain.webp", ns=(far, far))
    assert os.lstat(path / "plain.webp").st_mtime_ns == far
    assert stat_blob(fd, statpage.names_blob(NAMES)) is None


def test_a_page_with_such_a_time_still_has_a_digest_that_verifies() -> None:
    rows = [("a.webp", 34, 10**19, 2, 3), ("b.webp", 34, 1, 2, 3)]
    digest = statpage.rows_digest(rows)
    assert digest.startswith("m2:")
    assert stat_digest_matches(rows, digest)
    assert not stat_digest_matches([rows[0], ("b.webp", 35, 1, 2, 3)], digest)
