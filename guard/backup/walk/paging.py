"""Cut a folder's names into pages of consecutive names (format 5), and find a page's old rows.

A page ends after a name whose CRC-32 has its low PAGE_BITS bits all set (1 name in 128), or once it
holds MAX_FILES names, so where pages end depends on the names alone, as content-defined chunks
depend on the bytes: a file added or removed changes its own page (and at most splits or joins it
with the next one), never the others; except inside a run of more than MAX_FILES names without an
end, where the later cuts of the run move with it (its pages are written again, their files are
not read again). Consecutive names are what makes a page small (see
guard.backup.repo.listing): files named one after another were mostly written one after another,
so their times and inodes differ little. Format 3 and 4 pages took 32 names by a hash of each,
scattered across the whole folder.
"""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Sequence
from zlib import crc32

from guard.backup.walk.statpage import encoded

PAGE_BITS = 7  # a page ends after 1 name in 128 on average
PAGE_MASK = (1 << PAGE_BITS) - 1
MAX_FILES = 4 << PAGE_BITS  # a run of 512 names without an end is cut there


def cut(names: list[str]) -> list[list[str]]:
    """Sort names and cut them into pages; every page holds at least one name, each name once (a
    folder read can meet a name twice when a file is replaced while it reads)."""
    ordered = sorted(set(names))
    ends = [i + 1 for i, code in enumerate(map(crc32, encoded(ordered))) if code & PAGE_MASK == PAGE_MASK]
    if not ends or ends[-1] != len(ordered):
        ends.append(len(ordered))
    pages: list[list[str]] = []
    start = 0
    for end in ends:
        while end - start > MAX_FILES:
            pages.append(ordered[start : start + MAX_FILES])
            start += MAX_FILES
        if end > start:
            pages.append(ordered[start:end])
        start = end
    return pages


def overlapping(firsts: Sequence[str], first: str, last: str) -> range:
    """The old pages (by their first names, in order) that may hold names from first to last."""
    start = max(bisect_right(firsts, first) - 1, 0)
    return range(start, max(bisect_right(firsts, last), start))
