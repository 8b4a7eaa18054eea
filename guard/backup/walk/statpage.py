"""A page's stat listing as bytes, and its digest: the walk's test of "nothing in this page changed".

A folder's names are grouped into pages by group(names, buckets), a CRC of each name's bytes. A
page is its names in name order. names_blob() is their file-system bytes, each followed by a NUL;
stat_blob(dir_fd, blob) is every name's (size, mtime_ns, ctime_ns, inode) as little-endian 64-bit
integers, or None when a name is not a regular file or cannot be stat-ed. It is compiled
(_statpage.c) when a C compiler was there at install, else the pure-Python stat_blob_py, which
gives the same bytes (group_py likewise). The digest of a page that has not changed is then one
SHA-256 over two bytes objects, with no Python object per file.
"""

from __future__ import annotations

import hashlib
import importlib
import marshal
import os
import stat
import struct
from collections.abc import Callable, Iterable
from typing import Any
from zlib import crc32

DIGEST_PREFIX = "s1:"
_NS = range(-9223372035 * 1_000_000_000, 9223372036 * 1_000_000_000)  # what _statpage.c's fits() allows
_ENTRY = struct.Struct("<qqqQ")  # size, mtime_ns, ctime_ns, inode
StatRow = tuple[str, int, int, int, int]  # name, size, mtime_ns, ctime_ns, inode


def names_blob(names: Iterable[str]) -> bytes:
    """Each name's bytes as the file system has them, each followed by a NUL (names hold none)."""
    return ("\0".join(names) + "\0").encode("utf-8", "surrogateescape")


def stat_blob_py(dir_fd: int, blob: bytes) -> bytes | None:
    """The pure-Python stat_blob: the same bytes as the compiled one, or None in the same cases."""
    out = bytearray()
    pack = _ENTRY.pack
    for name in blob.split(b"\0")[:-1]:
        try:
            st = os.lstat(name, dir_fd=dir_fd)
        except OSError:
            return None
        if not stat.S_ISREG(st.st_mode) or st.st_mtime_ns not in _NS or st.st_ctime_ns not in _NS:
            return None
        out += pack(st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino)
    return bytes(out)


def group_py(names: list[str], buckets: int) -> list[list[str]]:
    """The pure-Python group: each name into bucket crc32(its file-system bytes) & (buckets - 1)."""
    groups: list[list[str]] = [[] for _ in range(buckets)]
    mask = buckets - 1
    add = [g.append for g in groups]
    for name, code in zip(names, map(crc32, encoded(names)), strict=True):
        add[code & mask](name)
    return groups


def encoded(names: list[str]) -> list[bytes]:
    """Each name's bytes as the file system has them, in two bulk calls instead of one call per name.

    Names cannot hold a NUL, and surrogateescape encodes character by character, so splitting the
    encoded join gives exactly each name's own encoding.
    """
    return "\0".join(names).encode("utf-8", "surrogateescape").split(b"\0")


try:
    _module: Any = importlib.import_module("guard.backup.walk._statpage")
except ImportError:  # built without a C compiler: the pure-Python twins, same results
    _module = None
COMPILED = _module is not None
stat_blob: Callable[[int, bytes], bytes | None] = _module.stat_blob if _module else stat_blob_py
group: Callable[[list[str], int], list[list[str]]] = _module.group if _module else group_py


def implementation() -> str:
    """Name the page stat the walk calls now: "compiled" (_statpage.c) or "python" (its twin)."""
    return "python" if stat_blob is stat_blob_py else "compiled"


def digest(blob: bytes, packed: bytes) -> str:
    """The stat digest of a page from its names blob and its packed stat entries."""
    head = struct.pack("<QQ", len(blob), len(packed))
    return DIGEST_PREFIX + hashlib.sha256(head + blob + packed).hexdigest()


def rows_digest(rows: list[StatRow]) -> str:
    """The same digest from (name, size, mtime_ns, ctime_ns, inode) rows in name order.

    A page with a time stat_blob refuses (before 1678 or after 2262) is hashed as marshal format 2
    ("m2:", which takes integers of any size), so it is still reused when nothing in it changed.
    """
    if all(r[2] in _NS and r[3] in _NS for r in rows):
        pack = _ENTRY.pack
        return digest(names_blob(r[0] for r in rows), b"".join(pack(*r[1:]) for r in rows))
    return marshal_digest(rows)


def marshal_digest(rows: list[StatRow]) -> str:
    """The digest of earlier versions: marshal format 2 has no back-references, so equal rows give
    equal bytes."""
    return "m2:" + hashlib.sha256(marshal.dumps(rows, 2)).hexdigest()


def rows(names: list[str], packed: bytes) -> list[StatRow]:
    """Unpack stat_blob's bytes into rows beside the names they are for."""
    return [(name, *entry) for name, entry in zip(names, _ENTRY.iter_unpack(packed), strict=True)]
