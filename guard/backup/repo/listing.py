"""A folder list page in format guard-files/2: a run of a folder's files in name order, made small.

Format 1 (guard.backup.repo.manifest.page_bytes) put 32 files picked by a hash of the name in each
page and spelled each file's SHA-256 and times out in full: a page is compressed on its own, so on
a folder of a million small files that was 28 bytes a file after zstd (37 MB of the bench's 79 MB
repository). Format 2 pages are runs of consecutive names (guard.backup.walk.paging cuts them), so
neighbouring files in a page were mostly made one after the other, and a page writes each number
as the difference from the file before it:

    ["guard-files/2", [[name, sha256 or "", size, mtime, ctime, inode], ...]]

where sha256 "" means the file before's content, and mtime, ctime and inode are differences from
the last such value that was not null (the first from 0; null is a value too fresh to trust, or
unknown, and is kept as null). On the bench's world a page then costs 7 bytes a file after zstd.
A page's SHA-256 is of these bytes, so it is checked exactly as format 1's.
"""

from __future__ import annotations

import json
from typing import Any

FORMAT = "guard-files/2"
Row = tuple[Any, ...]  # name, sha256, size, mtime_ns, ctime_ns, inode (the last three may be None)


def page_bytes(rows: list[Row]) -> bytes:
    """Serialize a page's rows (in name order): ASCII JSON, numbers as differences."""
    out: list[tuple[Any, ...]] = []
    append = out.append
    last_sha = None
    mtime0 = ctime0 = inode0 = 0  # the last value of each that was not None
    for name, sha, size, mtime, ctime, inode in rows:  # unrolled: this runs once a file
        if mtime is not None:
            mtime, mtime0 = mtime - mtime0, mtime
        if ctime is not None:
            ctime, ctime0 = ctime - ctime0, ctime
        if inode is not None:
            inode, inode0 = inode - inode0, inode
        append((name, "" if sha == last_sha else sha, size, mtime, ctime, inode))
        last_sha = sha
    return json.dumps([FORMAT, out], ensure_ascii=True, separators=(",", ":")).encode("ascii")


def _no_fraction(text: str) -> float:
    """Sizes, times and inodes are whole numbers: a page holding 1.5, 1e3 or NaN is not one guard wrote."""
    raise ValueError(f"a fraction in a folder list: {text[:20]}")


def page_rows(data: bytes) -> list[list[Any]]:
    """Read a page's rows back: [name, sha256, size, mtime_ns, ctime_ns, inode] each.

    Raises ValueError (or TypeError, RecursionError from hostile JSON) when the bytes are not a
    format-2 page: names out of order, a row of the wrong shape, a content hash that is not a
    string, a number with a fraction or an exponent.
    """
    tag, packed = json.loads(data, parse_float=_no_fraction, parse_constant=_no_fraction)
    if tag != FORMAT or not isinstance(packed, list):
        raise ValueError("not a format-2 folder list")
    rows: list[list[Any]] = []
    append = rows.append
    sha = previous = None
    mtime = ctime = inode = 0
    for name, stated, size, dm, dc, di in packed:  # a row of another length: ValueError
        if type(stated) is not str:  # only "" means the file before's content, not 0, false or []
            raise ValueError("bad content hash")
        if stated:
            sha = stated
        elif sha is None:
            raise ValueError("no content hash before")
        if previous is not None and not previous < name:  # a name that is not a string: TypeError
            raise ValueError("names out of order")
        previous = name
        if dm is not None:
            mtime += dm  # a difference that is not a number: TypeError (a fraction never parses)
        if dc is not None:
            ctime += dc
        if di is not None:
            inode += di
        append(
            [
                name,
                sha,
                size,
                None if dm is None else mtime,
                None if dc is None else ctime,
                None if di is None else inode,
            ]
        )
    return rows
