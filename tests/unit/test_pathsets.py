"""The compiled folder lister and stored-path index and their pure-Python twins: the same answers."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from guard.fs import pathsets

NAMES = [
    "plain.webp",
    "with space.webp",
    "new\nline.webp",
    "tab\there.webp",
    "back\\slash.webp",
    "ñandú-日本-🚗.webp",
    os.fsdecode(b"latin1-\xe9.webp"),  # not UTF-8: round-trips as a surrogate escape
]
LISTERS = [
    pytest.param(pathsets.list_folder_py, id="python"),
    pytest.param(getattr(pathsets._module, "list_folder", None), id="compiled"),
]
INDEXES = [
    pytest.param(pathsets.StoredIndexPy, id="python"),
    pytest.param(getattr(pathsets._module, "StoredIndex", None), id="compiled"),
]


def copy_text(values: list[str]) -> bytes:
    """Spell values as COPY's text format writes them (what psql hands over)."""
    escapes = {"\\": "\\\\", "\n": "\\n", "\r": "\\r", "\t": "\\t", "\b": "\\b", "\f": "\\f", "\v": "\\v"}
    return "".join("".join(escapes.get(c, c) for c in v) + "\n" for v in values).encode("utf-8")


def blob_of(paths: list[str]) -> bytes:
    return b"".join(os.fsencode(p) + b"\0" for p in paths)


def test_the_extension_is_built_where_a_compiler_was_there() -> None:
    # make's install has gcc on every machine here; a silent fallback would hide a slow files check
    assert pathsets.COMPILED and pathsets.implementation() == "compiled"
    assert pathsets.list_folder is not pathsets.list_folder_py
    assert not isinstance(pathsets.stored_index(), pathsets.StoredIndexPy)


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    for name in NAMES:
        (tmp_path / name).write_bytes(b"RIFF")
    (tmp_path / "sub").mkdir()
    (tmp_path / "link.webp").symlink_to(tmp_path / "plain.webp")  # a link to a file is not one
    (tmp_path / "dangling.webp").symlink_to(tmp_path / "nowhere")
    (tmp_path / "linked-folder").symlink_to(tmp_path / "sub")  # not a folder to walk either
    os.mkfifo(tmp_path / "fifo")
    return tmp_path


@pytest.mark.parametrize("list_folder", LISTERS)
def test_a_folder_lists_its_regular_files_with_the_prefix_and_every_other_entry(
    list_folder: Callable[[str, str], tuple[bytes, Any]], folder: Path
) -> None:
    blob, others = list_folder(str(folder), "uploads/ads/")
    assert blob.endswith(b"\0")
    assert sorted(pathsets.paths_of(blob)) == sorted(f"uploads/ads/{n}" for n in NAMES)
    assert sorted(others) == [
        ("dangling.webp", False),
        ("fifo", False),
        ("link.webp", False),
        ("linked-folder", False),
        ("sub", True),
    ]


@pytest.mark.parametrize("list_folder", LISTERS)
def test_an_empty_folder_lists_nothing(list_folder: Callable[[str, str], Any], tmp_path: Path) -> None:
    assert list_folder(str(tmp_path), "x/") == (b"", [])


@pytest.mark.parametrize("list_folder", LISTERS)
@pytest.mark.parametrize(
    ("make", "error"),
    [("missing", FileNotFoundError), ("file", NotADirectoryError), ("locked", PermissionError)],
)
def test_a_folder_that_cannot_be_listed_raises_the_same_error(
    list_folder: Callable[[str, str], Any], tmp_path: Path, make: str, error: type[OSError]
) -> None:
    path = tmp_path / make
    if make == "file":
        path.write_bytes(b"")
    elif make == "locked":
        path.mkdir(mode=0)
        if os.access(path, os.R_OK):  # root reads anything: nothing to refuse here
            pytest.skip("running as root")
    with pytest.raises(error):
        list_folder(str(path), "x/")


STORED = [
    "uploads/ads/plain.webp",
    "uploads/ads/plain.webp",  # two rows, one file
    "uploads/ads/new\nline.webp",
    "uploads/ads/tab\there.webp",
    "uploads/ads/back\\slash.webp",  # unsafe: never matches the file of that name
    "uploads/ads/ñandú-日本-🚗.webp",
    "uploads/ads/missing.webp",
    "./uploads/ads/plain.webp",  # another spelling: matched later by the check, not here
    "",
    "  ",
    "\\N",
]
WALKED = [f"uploads/ads/{n}" for n in NAMES]
UNMATCHED = {
    "uploads/ads/back\\slash.webp",
    "uploads/ads/missing.webp",
    "./uploads/ads/plain.webp",
    "",
    "  ",
    "\\N",
}
UNREFERENCED = {"uploads/ads/with space.webp", "uploads/ads/back\\slash.webp", WALKED[-1]}


@pytest.mark.parametrize("make_index", INDEXES)
def test_only_what_one_side_has_and_the_other_lacks_comes_back(make_index: Callable[[], Any]) -> None:
    index = make_index()
    assert index.add_copy(copy_text(STORED[:5])) + index.add_copy(copy_text(STORED[5:])) == len(STORED)
    assert index.match(blob_of(WALKED[:3])) + index.match(blob_of(WALKED[3:])) == len(WALKED)
    assert index.rows == len(STORED)
    assert set(index.unmatched()) == UNMATCHED and len(index.unmatched()) == len(UNMATCHED)
    assert set(index.unreferenced()) == UNREFERENCED and len(index.unreferenced()) == len(UNREFERENCED)


@pytest.mark.parametrize("make_index", INDEXES)
def test_values_read_through_psycopg_match_as_copy_lines_do(make_index: Callable[[], Any]) -> None:
    index = make_index()
    assert index.add_values(STORED) == len(STORED)
    index.match(blob_of(WALKED))
    assert set(index.unmatched()) == UNMATCHED
    assert set(index.unreferenced()) == UNREFERENCED


@pytest.mark.parametrize("make_index", INDEXES)
def test_a_million_scale_index_grows_and_matches_exactly(make_index: Callable[[], Any]) -> None:
    stored = [f"uploads/ads/ad-{i}.webp" for i in range(200_000)]
    walked = [f"uploads/ads/ad-{i}.webp" for i in range(100_000, 300_000)]
    index = make_index()
    index.add_copy(copy_text(stored))
    index.match(blob_of(walked))
    assert sorted(index.unmatched()) == sorted(stored[:100_000])
    assert sorted(index.unreferenced()) == sorted(walked[100_000:])


@pytest.mark.parametrize("make_index", INDEXES)
def test_an_empty_index_leaves_every_walked_path_unreferenced(make_index: Callable[[], Any]) -> None:
    index = make_index()
    index.match(blob_of(WALKED))
    assert index.unmatched() == []
    assert set(index.unreferenced()) == set(WALKED)


def test_the_compiled_index_refuses_a_partial_line_and_a_name_without_its_nul() -> None:
    index = pathsets.stored_index()
    with pytest.raises(ValueError, match="whole lines"):
        index.add_copy(b"a\nb")
    with pytest.raises(ValueError, match="NUL"):
        index.match(b"a")


def _mapped_kib() -> int:
    """The process's mapped memory (VmSize), in KiB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmSize:"):
            return int(line.split()[1])
    raise AssertionError("no VmSize in /proc/self/status")


@pytest.mark.skipif(not pathsets.COMPILED, reason="the compiled index is not built here")
def test_a_stored_path_over_the_arena_block_is_unmapped_whole_when_the_index_closes() -> None:
    """A block bigger than the arena's 8 MiB is mapped for its own size, which need not be a whole
    number of pages: the unused tail of its huge-page padding must still be given back."""
    odd = "uploads/" + "x" * ((9 << 20) + 123)  # over 8 MiB, and not a multiple of a page
    pathsets.stored_index().close()  # the first index's one-time costs are not counted
    before = _mapped_kib()
    for _ in range(8):
        index = pathsets.stored_index()
        index.add_values([odd])
        index.close()
    grown = _mapped_kib() - before
    assert grown < 2048, f"{grown} KiB still mapped after 8 indexes were closed"
