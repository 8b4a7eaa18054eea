"""Format 5's folder lists: pages of consecutive names (format guard-files/2), and where they end."""

from __future__ import annotations

import hashlib
import json
from dataclasses import replace
from typing import Any
from zlib import crc32

import pytest

from guard.backup.repo import listing
from guard.backup.repo.manifest import (
    BY_NAME,
    CHUNKS_FORMAT,
    FORMAT,
    FileEntry,
    FolderRef,
    Manifest,
    ManifestError,
    PageRef,
    page_bytes,
    page_rows,
    parse,
)
from guard.backup.walk import paging
from tests.unit.test_backup_manifest import ODD_NAMES, manifest

SHA_A, SHA_B = "ab" * 32, "cd" * 32


def odd_rows() -> list[tuple[Any, ...]]:
    """Rows of every kind of name, in name order, with repeated hashes and unknown values."""
    names = sorted(n.rsplit("/", 1)[1] for n in ODD_NAMES)
    values = [
        (SHA_A, 34, 1_796_155_533_963_384_389, 1_796_162_734_244_202_676, 5_498_477),
        (SHA_A, 34, 1_796_155_533_963_384_389, 1_796_162_734_244_202_600, 5_498_478),  # ctime back
        (SHA_B, 0, None, None, None),  # too fresh to trust: no times
        (SHA_A, 35, 1, 2, 3),
        (SHA_A, 1 << 40, 2**70, -5, 2**63),  # beyond 64 bits, before 1970
        (SHA_B, 34, 7, None, 9),
        (SHA_B, 34, 7, 8, 9),
    ]
    return [(name, *v) for name, v in zip(names, values, strict=True)]


def test_a_page_round_trips_every_name_hash_and_value() -> None:
    rows = odd_rows()
    data = listing.page_bytes(rows)
    assert data.isascii()
    assert listing.page_rows(data) == [list(r) for r in rows]


def test_a_page_spells_a_repeated_hash_once_and_numbers_as_differences() -> None:
    rows = [(f"ad-{i:04}.webp", SHA_A, 34, 1000 + i, 2000 + 2 * i, 5_000_000 + i) for i in range(100)]
    data = listing.page_bytes(rows)
    assert data.count(SHA_A.encode()) == 1
    assert b"5000099" not in data  # the last inode is written as 1
    assert listing.page_rows(data) == [list(r) for r in rows]


@pytest.mark.parametrize(
    "body",
    [
        ["guard-files/1", []],
        ["guard-files/2", [["b", SHA_A, 1, 1, 1, 1], ["a", SHA_A, 1, 1, 1, 1]]],  # out of order
        ["guard-files/2", [["a", SHA_A, 1, 1, 1, 1], ["a", SHA_A, 1, 1, 1, 1]]],  # twice
        ["guard-files/2", [["a", "", 1, 1, 1, 1]]],  # "the hash before" with none before
        ["guard-files/2", [["a", SHA_A, 1, 1, 1]]],  # a value short
        ["guard-files/2", [["a", SHA_A, 1, 1, 1, "1"]]],  # not a number
        ["guard-files/2", {"a": 1}],
    ],
)
def test_a_page_that_is_not_a_format_2_list_is_a_manifest_error(body: Any) -> None:
    data = json.dumps(body).encode()
    page = PageRef(0, hashlib.sha256(data).hexdigest(), len(data), 1, 1, None, "a")
    with pytest.raises(ManifestError, match="is not the list named"):
        page_rows(data, "uploads/ads", page, "backup x")


def test_a_page_must_hold_the_first_name_and_the_file_count_the_manifest_names() -> None:
    rows = odd_rows()
    data = listing.page_bytes(rows)
    good = PageRef(0, hashlib.sha256(data).hexdigest(), len(data), len(rows), 0, None, rows[0][0])
    assert page_rows(data, "uploads/ads", good, "x") == [list(r) for r in rows]
    for bad in (good._replace(first=rows[1][0]), good._replace(files=len(rows) - 1)):
        with pytest.raises(ManifestError, match="is not the list named"):
            page_rows(data, "uploads/ads", bad, "x")


def by_name_manifest(rows: list[tuple[Any, ...]], per_page: int) -> tuple[Manifest, dict[str, bytes]]:
    stored: dict[str, bytes] = {}
    pages = []
    for number, start in enumerate(range(0, len(rows), per_page)):
        part = rows[start : start + per_page]
        data = listing.page_bytes(part)
        sha = hashlib.sha256(data).hexdigest()
        stored[sha] = data
        pages.append(PageRef(number, sha, len(data), len(part), sum(r[2] for r in part), None, part[0][0]))
    folder = FolderRef("uploads/ads", BY_NAME, tuple(pages))
    return replace(manifest(), inline_files=(), folders=(folder,)), stored


def test_a_format_5_manifest_reads_its_files_through_pages_cut_by_name() -> None:
    rows = odd_rows()
    original, stored = by_name_manifest(rows, 3)
    data = original.to_bytes()
    assert json.loads(data)["format"] == FORMAT == "guard-backup/5"
    loaded = parse(data, "test", lambda s, _size: stored[s])
    assert loaded.folders == original.folders
    assert loaded.files == tuple(FileEntry(f"uploads/ads/{r[0]}", *r[1:]) for r in rows)


def test_a_format_5_folder_whose_pages_are_out_of_name_order_is_refused() -> None:
    original, _ = by_name_manifest(odd_rows(), 3)
    folder = original.folders[0]
    swapped = replace(original, folders=(folder._replace(pages=folder.pages[::-1]),))
    with pytest.raises(ManifestError, match="missing a field or has a bad value"):
        parse(swapped.to_bytes(), "test")
    nameless = replace(original, folders=(folder._replace(pages=(folder.pages[0]._replace(first=None),)),))
    with pytest.raises(ManifestError, match="missing a field or has a bad value"):
        parse(nameless.to_bytes(), "test")


def test_a_format_4_manifest_with_hash_pages_of_six_values_is_still_read() -> None:
    rows = [(n.rsplit("/", 1)[1], SHA_A, 34, 1, 2, 3) for n in ODD_NAMES]
    data = page_bytes("uploads/ads", rows)
    sha = hashlib.sha256(data).hexdigest()
    page = PageRef(0, sha, len(data), len(rows), 34 * len(rows), None)
    body = replace(manifest(), inline_files=(), folders=(FolderRef("uploads/ads", 1, (page,)),)).body()
    body["format"] = CHUNKS_FORMAT
    body["folders"] = [["uploads/ads", 1, [list(page)[:6]]]]  # as format 4 wrote it: no first name
    raw = json.dumps(body, ensure_ascii=True, separators=(",", ":")).encode("ascii")
    signed = b'{"checksum":"sha256:' + hashlib.sha256(raw).hexdigest().encode() + b'",' + raw[1:]
    loaded = parse(signed, "old", lambda s, _size: {sha: data}[s])
    assert loaded.folders[0].pages[0].first is None
    assert loaded.files == manifest().files


def test_pages_are_runs_of_sorted_names_that_end_where_a_name_says() -> None:
    names = [f"ad-{i * 7919 % 10_007:05}.webp" for i in range(10_007)]
    pages = paging.cut(names)
    assert [n for page in pages for n in page] == sorted(names)
    for page in pages:
        assert 1 <= len(page) <= paging.MAX_FILES
        ends = [crc32(n.encode()) & paging.PAGE_MASK == paging.PAGE_MASK for n in page]
        assert not any(ends[:-1])  # only the last name of a page may end it
        assert ends[-1] or len(page) == paging.MAX_FILES or page is pages[-1]
    assert 10_007 / len(pages) == pytest.approx(1 << paging.PAGE_BITS, rel=0.3)


def test_a_name_added_or_removed_changes_only_its_own_page_and_the_next() -> None:
    names = [f"ad-{i:05}.webp" for i in range(5000)]
    before = paging.cut(names)
    for changed in (names[:2500] + ["ad-02500x.webp"] + names[2500:], names[:2500] + names[2501:]):
        after = paging.cut(changed)
        different = {tuple(p) for p in after} - {tuple(p) for p in before}
        assert 1 <= len(different) <= 2


def test_a_name_a_folder_read_returned_twice_is_paged_once() -> None:
    # A directory read can meet a name twice (a file replaced while the folder is read); a page that
    # held it twice would be written and then refused as out of order: a backup that cannot be read.
    names = [f"f{i:04}" for i in range(300)]
    pages = paging.cut([*names, "f0150", "f0007"])
    assert [n for page in pages for n in page] == names


def test_a_run_without_an_end_is_cut_at_the_most_names_a_page_holds() -> None:
    plain = [
        n
        for n in (f"x{i:06}" for i in range(200_000))
        if crc32(n.encode()) & paging.PAGE_MASK != paging.PAGE_MASK
    ]
    pages = paging.cut(plain[: paging.MAX_FILES * 2 + 3])
    assert [len(p) for p in pages] == [paging.MAX_FILES, paging.MAX_FILES, 3]


def test_the_old_pages_a_new_page_may_take_rows_from_are_found_by_first_name() -> None:
    firsts = ["b", "f", "m", "t"]
    assert list(paging.overlapping(firsts, "b", "e")) == [0]
    assert list(paging.overlapping(firsts, "c", "g")) == [0, 1]
    assert list(paging.overlapping(firsts, "a", "a")) == []  # before every page: none held it
    assert list(paging.overlapping(firsts, "a", "c")) == [0]
    assert list(paging.overlapping(firsts, "u", "z")) == [3]
    assert list(paging.overlapping(firsts, "f", "t")) == [1, 2, 3]
    assert list(paging.overlapping([], "a", "z")) == []
