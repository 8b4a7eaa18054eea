"""Cut a file into content-defined chunks, so a second copy with a few changes shares most of them.

As restic does with every file, the database dump is cut where a rolling hash of the 64 bytes
before a position matches a pattern, never at fixed offsets: an inserted or deleted row moves the
cuts next to it and no others, so the chunks of an unchanged table are the same objects in every
backup and are stored once. Chunks are MIN_SIZE to MAX_SIZE bytes, about AVERAGE on average. The
cut is compiled (_chunker.c) when a C compiler was there at install, else the pure-Python cuts_py,
which gives the same cuts (tests/unit/test_chunker.py holds them to it) at a fraction of the speed.
"""

from __future__ import annotations

import importlib
import mmap
import os
from collections.abc import Callable, Iterator
from pathlib import Path

MIN_SIZE = 256 << 10
AVERAGE_BITS = 20  # a cut where the hash's top 20 bits are zero: 1 MiB on average after MIN_SIZE
MAX_SIZE = 4 << 20
MASK = ((1 << AVERAGE_BITS) - 1) << (64 - AVERAGE_BITS)  # the top bits: they depend on all 64 bytes
_M64 = (1 << 64) - 1


def gear_table() -> list[int]:
    """The rolling hash's 256 random 64-bit values: splitmix64 from seed 0, as _chunker.c builds them."""
    table, state = [], 0
    for _ in range(256):
        state = (state + 0x9E3779B97F4A7C15) & _M64
        z = state
        z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & _M64
        z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & _M64
        table.append(z ^ (z >> 31))
    return table


_GEAR = gear_table()


def cuts_py(data: bytes | memoryview, min_size: int, mask: int, max_size: int) -> list[int]:
    """The pure-Python cuts: the chunk lengths data is cut into, the same as the compiled one's."""
    if min_size < 1 or max_size < min_size:
        raise ValueError("need 1 <= min_size <= max_size")
    gear, out, start, length = _GEAR, [], 0, len(data)
    while start < length:
        left = length - start
        if left <= min_size:
            end = length
        else:
            limit = min(left, max_size)
            hash_, i = 0, max(min_size - 64, 0)
            while i < min_size:
                hash_ = ((hash_ << 1) + gear[data[start + i]]) & _M64
                i += 1
            while i < limit:
                hash_ = ((hash_ << 1) + gear[data[start + i]]) & _M64
                i += 1
                if not hash_ & mask:
                    break
            end = start + i
        out.append(end - start)
        start = end
    return out


def _compiled() -> Callable[[bytes | memoryview, int, int, int], list[int]] | None:
    try:
        module = importlib.import_module("guard.backup.repo._chunker")
    except ImportError:
        return None
    found: Callable[[bytes | memoryview, int, int, int], list[int]] = module.cuts
    return found


_CUTS = _compiled() or cuts_py


def implementation() -> str:
    """Which cut the chunker uses: "compiled" (_chunker.c) or "python"."""
    return "python" if _CUTS is cuts_py else "compiled"


def cuts(data: bytes | memoryview) -> list[int]:
    """The lengths of the content-defined chunks data is cut into (they add up to len(data))."""
    return _CUTS(data, MIN_SIZE, MASK, MAX_SIZE)


def file_chunks(path: Path) -> Iterator[bytes]:
    """Yield a file's content-defined chunks, in order (the file must not change meanwhile)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        size = os.fstat(fd).st_size
        if size == 0:
            return
        with mmap.mmap(fd, size, access=mmap.ACCESS_READ) as mapped:
            view = memoryview(mapped)
            try:
                offset = 0
                for length in cuts(view):
                    yield bytes(view[offset : offset + length])
                    offset += length
            finally:
                view.release()
    finally:
        os.close(fd)
