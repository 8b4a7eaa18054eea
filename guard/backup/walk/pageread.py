"""Read a page's new or changed small files in one call: open, fstat, read, fstat, close and hash each.

read_files(dir_fd, blob, limit) takes the names as statpage.names_blob() makes them and returns, per
name in order, (sha256 hex, content, size, mtime_ns, ctime_ns, inode) or None. None is every case
but the plain one (not openable without following a link, not a regular file, over limit bytes, one
read() of size + 1 bytes did not give exactly its size, the file changed between the fstat before and
the one after, a time outside 64-bit nanoseconds): the caller reads that file the careful way
(ObjectStore.add_file), which raises, retries or streams as it always did. Compiled in _statpage.c
(with its own SHA-256, sha256.h) when a C compiler was there at install, else read_files_py, which
gives the same results.
"""

from __future__ import annotations

import hashlib
import importlib
import os
import stat
from collections.abc import Callable
from typing import Any

Read = tuple[str, bytes, int, int, int, int]  # sha256 hex, content, size, mtime_ns, ctime_ns, inode
_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC  # as ObjectStore.add_file opens an upload
# and without updating its access time where the kernel allows (owner or root): a million reads then
# dirty no inode for the backup's sync to write out; EPERM (someone else's file) turns it off
_NOATIME = getattr(os, "O_NOATIME", 0)
_NS = range(-9223372035 * 1_000_000_000, 9223372036 * 1_000_000_000)  # what _statpage.c's fits() allows


def read_files_py(dir_fd: int, blob: bytes, limit: int) -> list[Read | None]:
    """The pure-Python read_files: the same results as the compiled one."""
    if not blob.endswith(b"\0") or limit < 0:
        raise ValueError("every name must end with a NUL byte; limit must be >= 0")
    noatime = [_NOATIME]
    return [_read_one(dir_fd, name, limit, noatime) for name in blob.split(b"\0")[:-1]]


def _open(dir_fd: int, name: bytes, noatime: list[int]) -> int:
    if noatime[0]:
        try:
            return os.open(name, _FLAGS | noatime[0], dir_fd=dir_fd)
        except PermissionError:
            noatime[0] = 0
    return os.open(name, _FLAGS, dir_fd=dir_fd)


def _read_one(dir_fd: int, name: bytes, limit: int, noatime: list[int]) -> Read | None:
    try:
        fd = _open(dir_fd, name, noatime)
    except OSError:
        return None
    try:
        before = os.fstat(fd)
        if not stat.S_ISREG(before.st_mode) or before.st_size > limit:
            return None
        data = os.read(fd, before.st_size + 1)
        if len(data) != before.st_size:
            return None
        after = os.fstat(fd)
    except OSError:
        return None
    finally:
        os.close(fd)
    key = (after.st_size, after.st_mtime_ns, after.st_ctime_ns, after.st_ino)
    if key != (before.st_size, before.st_mtime_ns, before.st_ctime_ns, before.st_ino):
        return None
    if after.st_mtime_ns not in _NS or after.st_ctime_ns not in _NS:
        return None
    return (hashlib.sha256(data).hexdigest(), data, *key)


try:
    _module: Any = importlib.import_module("guard.backup.walk._statpage")
except ImportError:  # built without a C compiler: the pure-Python twin, same results
    _module = None
# getattr: an extension built before read_files was added (a stale in-place build) still imports
read_files: Callable[[int, bytes, int], list[Read | None]] = getattr(_module, "read_files", read_files_py)


def implementation() -> str:
    """Name the page read the walk calls now: "compiled" (_statpage.c) or "python" (its twin)."""
    return "python" if read_files is read_files_py else "compiled"
