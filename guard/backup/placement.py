"""Put backed-up files back under an uploads root: hash-verified, atomic, never outside the root.

Folders are created and opened one level at a time from the root, following no symlink at any
level, and each file is written and placed through its folder's descriptor: a folder swapped for a
symlink after it was opened changes nothing. A file that must not be overwritten is placed with
link(), which fails when anything is at the name, so one that appears meanwhile is kept.

put() writes bytes the caller already checked against their hash (a restore reads each object once
and writes every file that holds it); into a folder the restore itself created it writes under the
final name with O_EXCL (nothing can be there, not even a symlink), elsewhere through a temp file
renamed in, as place() does.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import os
import secrets
from pathlib import Path

from guard.backup.faults import FAULT_ENV, race_point
from guard.backup.repo.manifest import FileEntry
from guard.backup.repo.objects import ObjectStore
from guard.fs import paths
from guard.fs.fdio import write_all

PLACED, PRESENT = "placed", "present"
THROUGH_SYMLINK = "its folder is reached through a symlink or is not a folder (never followed); not written"
_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_NEW_FILE = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
OPEN_FOLDERS = 64  # folders kept open between files (a restore writes files pack by pack, not by folder)


class Placer:
    """Write manifest entries under one root, creating folders but never following one out of it."""

    def __init__(self, store: ObjectStore, root: Path) -> None:
        self.store = store
        self.root = Path(os.path.realpath(root))
        self._open: dict[str, int] = {}  # folders written to, kept open (insertion order: oldest first)
        self._racing = bool(os.environ.get(FAULT_ENV))  # a test's race point: not looked up per file

    def place(self, entry: FileEntry, *, overwrite: bool) -> str:
        """Return PLACED or PRESENT, or a sentence saying why the file could not be put back."""
        reason = paths.unsafe_reason(entry.path, backslash_ok=True)  # a legal file name on disk
        if reason is not None:
            return f"path {reason}; not written"
        folder, _, name = paths.normalize(entry.path).rpartition("/")
        fd = self._folder(folder)
        if fd is None:
            return THROUGH_SYMLINK
        if not overwrite and _lexists(name, fd):
            return PRESENT
        race_point("place")
        return self._write(entry, fd, name, overwrite)

    def put(self, entry: FileEntry, data: bytes, *, fresh: bool) -> str:
        """Write data, already checked against entry.sha256, as entry's file (replacing one there).

        fresh: the root is a new folder only this restore writes to, so the file is created under its
        own name with O_EXCL; a failed write removes it. Otherwise a temp file is renamed in.
        Returns PLACED or why the file could not be put back.
        """
        reason = paths.unsafe_reason(entry.path, backslash_ok=True)
        if reason is not None:
            return f"path {reason}; not written"
        folder, _, name = paths.normalize(entry.path).rpartition("/")
        fd = self._folder(folder)
        if fd is None:
            return THROUGH_SYMLINK
        if self._racing:
            race_point("place")
        target = name if fresh else f".guard-restore-{secrets.token_hex(6)}"
        out = os.open(target, _NEW_FILE, 0o644, dir_fd=fd)
        try:
            write_all(out, data)
            if entry.mtime_ns is not None:
                os.utime(out, ns=(entry.mtime_ns, entry.mtime_ns))
        except BaseException:
            os.close(out)
            os.unlink(target, dir_fd=fd)  # never a short file under any name
            raise
        os.close(out)
        if not fresh:
            os.rename(target, name, src_dir_fd=fd, dst_dir_fd=fd)
        return PLACED

    def close(self) -> None:
        """Close the folders kept open."""
        for fd in self._open.values():
            os.close(fd)
        self._open.clear()

    def __del__(self) -> None:
        self.close()

    def _folder(self, folder: str) -> int | None:
        """The open folder (created level by level), or None when a symlink or a file is in the way."""
        known = self._open.get(folder)
        if known is not None:
            return known
        if len(self._open) >= OPEN_FOLDERS:
            os.close(self._open.pop(next(iter(self._open))))
        self.root.mkdir(parents=True, exist_ok=True)  # the root is the operator's choice, not the backup's
        fd = os.open(self.root, _DIR_FLAGS)
        try:
            for part in folder.split("/") if folder else ():
                with contextlib.suppress(FileExistsError):  # a symlink there too: refused just below
                    os.mkdir(part, dir_fd=fd)
                inner = os.open(part, _DIR_FLAGS, dir_fd=fd)
                os.close(fd)
                fd = inner
        except OSError as exc:
            os.close(fd)
            if exc.errno in (errno.ELOOP, errno.ENOTDIR):
                return None
            raise
        self._open[folder] = fd
        return fd

    def _write(self, entry: FileEntry, fd: int, name: str, overwrite: bool) -> str:
        temp = f".guard-restore-{secrets.token_hex(6)}"
        digest = hashlib.sha256()
        try:
            chunks = self.store.chunks(entry.sha256)
        except FileNotFoundError:
            return f"object {entry.sha256} is missing from the backup"
        out = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o644, dir_fd=fd)
        try:
            for chunk in chunks:
                digest.update(chunk)
                write_all(out, chunk)
            if entry.mtime_ns is not None:
                os.utime(out, ns=(entry.mtime_ns, entry.mtime_ns))
        finally:
            os.close(out)
        if digest.hexdigest() != entry.sha256:
            os.unlink(temp, dir_fd=fd)
            return f"object {entry.sha256} is corrupt (its content does not match its hash)"
        if overwrite:
            os.rename(temp, name, src_dir_fd=fd, dst_dir_fd=fd)
            return PLACED
        try:
            os.link(temp, name, src_dir_fd=fd, dst_dir_fd=fd, follow_symlinks=False)
        except FileExistsError:
            return PRESENT  # it appeared since it was looked for: kept as it is
        finally:
            os.unlink(temp, dir_fd=fd)
        return PLACED


def _lexists(name: str, fd: int) -> bool:
    try:
        os.stat(name, dir_fd=fd, follow_symlinks=False)
    except FileNotFoundError:
        return False
    return True
