"""Move one file between two open folders without following links: rename, or copy-verify-unlink.

Both ends are folder descriptors opened without following symlinks, and names are single path
components, so a move never leaves the folders it was given. Within one filesystem a move is a
rename (atomic, nothing copied); across filesystems the file is copied to a temporary name, flushed
to disk, read back and compared by SHA-256, renamed into place, and only then is the source
unlinked, and only if it is still the very file that was copied.
"""

from __future__ import annotations

import hashlib
import os
import stat
from dataclasses import dataclass

CHUNK = 1 << 20
NOFOLLOW = os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC


class MoveSkipped(Exception):
    """The file is not there, not a regular file, or changed while it was being moved."""


@dataclass(frozen=True)
class Moved:
    """What was moved: its size, digest, modification time, and whether it was copied across filesystems."""

    size: int
    sha256: str
    mtime: float
    copied: bool


def move_file(src_dir: int, src_name: str, dst_dir: int, dst_name: str) -> Moved:
    """Move src_name (in src_dir) to dst_name (in dst_dir); dst_name must not exist."""
    try:
        before = os.stat(src_name, dir_fd=src_dir, follow_symlinks=False)
    except FileNotFoundError:
        raise MoveSkipped("no longer there") from None
    if not stat.S_ISREG(before.st_mode):
        raise MoveSkipped("not a regular file")
    if _exists(dst_dir, dst_name):
        raise MoveSkipped("something is already at the destination")
    digest = digest_at(src_dir, src_name, before)
    if before.st_dev == os.fstat(dst_dir).st_dev:
        os.rename(src_name, dst_name, src_dir_fd=src_dir, dst_dir_fd=dst_dir)
        return Moved(before.st_size, digest, before.st_mtime, copied=False)
    _copy_verified(src_dir, src_name, dst_dir, dst_name, before, digest)
    after = os.stat(src_name, dir_fd=src_dir, follow_symlinks=False)
    if (after.st_ino, after.st_size, after.st_mtime_ns) != (
        before.st_ino,
        before.st_size,
        before.st_mtime_ns,
    ):
        os.unlink(dst_name, dir_fd=dst_dir)
        raise MoveSkipped("changed while it was being copied; left where it was")
    os.unlink(src_name, dir_fd=src_dir)
    os.fsync(src_dir)
    return Moved(before.st_size, digest, before.st_mtime, copied=True)


def _exists(dir_fd: int, name: str) -> bool:
    try:
        os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
    except FileNotFoundError:
        return False
    return True


def digest_at(dir_fd: int, name: str, expected: os.stat_result) -> str:
    fd = os.open(name, NOFOLLOW, dir_fd=dir_fd)
    try:
        if os.fstat(fd).st_ino != expected.st_ino:
            raise MoveSkipped("replaced while it was being moved")
        return _digest(fd)
    finally:
        os.close(fd)


def _digest(fd: int) -> str:
    h = hashlib.sha256()
    while block := os.read(fd, CHUNK):
        h.update(block)
    return h.hexdigest()


def _write_all(fd: int, block: bytes) -> None:
    view = memoryview(block)
    while view:
        view = view[os.write(fd, view) :]


def _copy_verified(
    src_dir: int, src_name: str, dst_dir: int, dst_name: str, before: os.stat_result, digest: str
) -> None:
    """Copy to a temporary name, fsync, read back and compare, then rename into place."""
    tmp = f".{dst_name}.guard-tmp"
    src = os.open(src_name, NOFOLLOW, dir_fd=src_dir)
    try:
        out = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600, dir_fd=dst_dir)
        try:
            h = hashlib.sha256()
            while block := os.read(src, CHUNK):
                h.update(block)
                _write_all(out, block)
            os.fchmod(out, stat.S_IMODE(before.st_mode))
            os.utime(out, ns=(before.st_atime_ns, before.st_mtime_ns))
            os.fsync(out)
        finally:
            os.close(out)
    finally:
        os.close(src)
    check = os.open(tmp, NOFOLLOW, dir_fd=dst_dir)
    try:
        copied = _digest(check)
    finally:
        os.close(check)
    if copied != digest or h.hexdigest() != digest:
        os.unlink(tmp, dir_fd=dst_dir)
        raise MoveSkipped("the copy did not read back as the original; left where it was")
    os.rename(tmp, dst_name, src_dir_fd=dst_dir, dst_dir_fd=dst_dir)
    os.fsync(dst_dir)
