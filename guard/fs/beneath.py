"""Open uploads folders and files under the root without following links: unreadable is not absent.

A folder is opened from the root one level at a time with O_NOFOLLOW, and what is in it is listed,
statted and read through that descriptor, so a folder swapped for a symlink while the backup runs
is never followed out of the root. Only what vanished (ENOENT, ENOTDIR) or was replaced by a
symlink (ELOOP) may be passed over; any other error (EACCES, EMFILE, EIO) fails the backup.
"""

from __future__ import annotations

import errno
import os
import stat

from guard.backup.faults import descriptor_limit
from guard.errors import UnreachableError
from guard.fs.paths import printable
from guard.fs.root import UploadsRoot


def open_root(root: UploadsRoot) -> int:
    """Open the uploads root, the one folder opened by its path (already resolved)."""
    try:
        return os.open(root.real, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    except OSError as exc:
        raise unreadable(str(root.real), exc) from None


def open_beneath(root_fd: int, rel: str) -> int:
    """Open a folder under the root one level at a time, following no symlink at any level.

    ELOOP (or ENOTDIR) when a symlink stands at some level: a folder swapped for one since it was
    listed is never followed out of the root.
    """
    fd = os.dup(root_fd)
    try:
        for part in rel.split("/") if rel else ():
            inner = os.open(part, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=fd)
            os.close(fd)
            fd = inner
    except BaseException:
        os.close(fd)
        raise
    return fd


def open_listed(root_fd: int, rel: str, current: str) -> int | None:
    """Open a folder to walk; None when it vanished or a symlink replaced it since it was listed."""
    try:
        with descriptor_limit("folder"):
            return open_beneath(root_fd, rel)
    except (FileNotFoundError, NotADirectoryError):
        return None  # gone since it was listed: its referenced files go the careful way
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            return None  # a symlink replaced it since it was listed: never followed
        raise unreadable(current, exc) from None


def names_of(fd: int, current: str) -> list[str]:
    """List an open folder: its names are then statted and read through the same descriptor."""
    try:
        return os.listdir(fd)
    except OSError as exc:  # EACCES, EMFILE, EIO...: unreadable is not absent
        raise unreadable(current, exc) from None


def unreadable(path: str, exc: OSError) -> UnreachableError:
    """The error for an uploads path that exists but cannot be read: the backup fails, exit 3."""
    return UnreachableError(f"cannot read {printable(path)}: {exc.strerror or exc}; nothing was published")


def scan_folder(root: UploadsRoot, folder: str, absent_ok: bool) -> bool:
    """Whether to walk a scan folder; one that is absent or reached through a symlink fails the backup
    (absent_ok: an absent one is skipped, for the safety copy of an arbitrary restore target)."""
    start = root.real / folder
    try:
        st = os.stat(start)
    except (FileNotFoundError, NotADirectoryError):
        if absent_ok:
            return False
        raise UnreachableError(f"scanned folder {folder!r} is not a folder under {root.root}") from None
    except OSError as exc:
        raise unreadable(str(start), exc) from None
    if not stat.S_ISDIR(st.st_mode):
        raise UnreachableError(f"scanned folder {folder!r} is not a folder under {root.root}")
    if os.path.realpath(start) != str(start):
        raise UnreachableError(
            f"scanned folder {folder!r} is reached through a symlink, which is never followed"
        )
    return True
