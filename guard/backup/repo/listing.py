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
    out: list[list[Any]] = []
    last_sha = None
    bases = [0, 0, 0]
    for name, sha, size, *numbers in rows:
        deltas: list[int | None] = []
        for i, value in enumerate(numbers):
            if value is None:
                deltas.append(None)
            else:
                deltas.append(value - bases[i])
                bases[i] = value
        out.append([name, "" if sha == last_sha else sha, size, *deltas])
        last_sha = sha
    return json.dumps([FORMAT, out], ensure_ascii=True, separators=(",", ":")).encode("ascii")


def page_rows(data: bytes) -> list[list[Any]]:
    """Read a page's rows back: [name, sha256, size, mtime_ns, ctime_ns, inode] each.

    Raises ValueError (or KeyError, TypeError, RecursionError from hostile JSON) when the bytes are
    not a format-2 page: names out of order, a row of the wrong shape, a number that is not one.
    """
    tag, packed = json.loads(data)
    if tag != FORMAT or not isinstance(packed, list):
        raise ValueError("not a format-2 folder list")
    rows: list[list[Any]] = []
    sha = previous = None
    bases = [0, 0, 0]
    for name, stated, size, *deltas in packed:
        if len(deltas) != 3 or not isinstance(name, str) or not isinstance(size, int):
            raise ValueError("bad row")
        if previous is not None and not previous < name:
            raise ValueError("names out of order")
        sha = stated or sha
        if not isinstance(sha, str):
            raise ValueError("bad content hash")
        numbers: list[int | None] = []
        for i, delta in enumerate(deltas):
            if delta is None:
                numbers.append(None)
            elif isinstance(delta, int):
                bases[i] += delta
                numbers.append(bases[i])
            else:
                raise ValueError("bad number")
        rows.append([name, sha, size, *numbers])
        previous = name
    return rows
