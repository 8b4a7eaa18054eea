"""The compiled page read and its pure-Python twin: the same hashes and stats, None for the same cases."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from guard.backup.walk import pageread, statpage

LIMIT = 1 << 20
SIZES = [0, 1, 55, 56, 63, 64, 65, 119, 120, 128, 1000, 100_000]  # around SHA-256's block edges
IMPLEMENTATIONS = [
    pytest.param(pageread.read_files_py, id="python"),
    pytest.param(pageread.read_files, id="compiled"),
]


@pytest.fixture
def folder(tmp_path: Path) -> Iterator[tuple[Path, int]]:
    for size in SIZES:
        (tmp_path / f"{size:06d}.webp").write_bytes(os.urandom(size))
    (tmp_path / "日本の車 🚗.webp").write_bytes(b"a name beyond ASCII")
    fd = os.open(tmp_path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        yield tmp_path, fd
    finally:
        os.close(fd)


def test_the_compiled_read_is_built_where_a_compiler_was_there() -> None:
    assert pageread.implementation() == "compiled"
    assert pageread.read_files is not pageread.read_files_py


@pytest.mark.parametrize("read_files", IMPLEMENTATIONS)
def test_each_file_comes_back_with_its_sha256_content_and_stat(read_files, folder: tuple[Path, int]) -> None:  # type: ignore[no-untyped-def]
    path, fd = folder
    names = sorted(os.listdir(path))
    results = read_files(fd, statpage.names_blob(names), LIMIT)
    assert len(results) == len(names)
    for name, got in zip(names, results, strict=True):
        data = (path / name).read_bytes()
        st = os.lstat(path / name)
        assert got == (
            hashlib.sha256(data).hexdigest(),
            data,
            st.st_size,
            st.st_mtime_ns,
            st.st_ctime_ns,
            st.st_ino,
        )


def test_both_give_the_same_results(folder: tuple[Path, int]) -> None:
    path, fd = folder
    blob = statpage.names_blob(sorted(os.listdir(path)))
    assert pageread.read_files(fd, blob, LIMIT) == pageread.read_files_py(fd, blob, LIMIT)


@pytest.mark.parametrize("read_files", IMPLEMENTATIONS)
@pytest.mark.parametrize("odd", ["gone.webp", "folder", "link.webp", "big.webp", "unreadable.webp"])
def test_anything_but_a_plain_small_file_is_left_to_the_careful_path(
    read_files, folder: tuple[Path, int], odd: str
) -> None:  # type: ignore[no-untyped-def]
    path, fd = folder
    if odd == "folder":
        (path / odd).mkdir()
    elif odd == "link.webp":
        (path / odd).symlink_to(path / "000001.webp")  # never followed, even to a file inside
    elif odd == "big.webp":
        (path / odd).write_bytes(b"x" * 101)
    elif odd == "unreadable.webp":
        if os.geteuid() == 0:
            pytest.skip("root reads a file whatever its mode")
        (path / odd).write_bytes(b"secret")
        (path / odd).chmod(0)
    names = sorted([*os.listdir(path), odd] if odd == "gone.webp" else os.listdir(path))
    results = dict(zip(names, read_files(fd, statpage.names_blob(names), 100), strict=True))
    assert results[odd] is None
    assert results["000001.webp"] is not None  # the rest of the page is read all the same
    assert results["100000.webp"] is None  # over the limit given


@pytest.mark.parametrize("read_files", IMPLEMENTATIONS)
def test_reading_leaves_the_access_time_alone(read_files, folder: tuple[Path, int]) -> None:  # type: ignore[no-untyped-def]
    path, fd = folder
    name = "000064.webp"
    os.utime(path / name, ns=(1_000_000_000, 2_000_000_000))  # atime before mtime: relatime would update it
    results = read_files(fd, statpage.names_blob([name]), LIMIT)
    assert results[0] is not None
    assert os.stat(path / name).st_atime_ns == 1_000_000_000


@pytest.mark.parametrize("read_files", IMPLEMENTATIONS)
def test_a_name_without_its_nul_is_refused(read_files, folder: tuple[Path, int]) -> None:  # type: ignore[no-untyped-def]
    _, fd = folder
    with pytest.raises(ValueError, match="NUL"):
        read_files(fd, b"000001.webp", LIMIT)
