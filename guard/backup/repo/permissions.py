"""Who may read the backup repository: its owner alone, whatever the umask, and a check that says so.

Folders are made 0700 and files 0600, or 0400 once they never change again (objects, packs, their
indexes, published manifests and dumps). Modes are given at creation (os.open, os.mkdir), where a
umask can only take bits away, never add any.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

from guard.fs.fdio import write_all

FOLDER = 0o700
FILE = 0o600
FROZEN = 0o400
OTHERS = 0o066  # read or write for group or others (restores/ may be entered by all: 0711)


def make_folder(path: Path | str, *, exist_ok: bool = False) -> None:
    """Create one folder its owner alone can enter."""
    try:
        os.mkdir(path, FOLDER)
    except FileExistsError:
        if not exist_ok:
            raise


def write_file(path: Path | str, data: bytes, mode: int = FILE) -> None:
    """Create a new file with these bytes, readable by its owner only (FROZEN: not writable either)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    try:
        write_all(fd, data)
    finally:
        os.close(fd)


def exposed(root: Path) -> list[str]:
    """Name the paths of a repository that others than its owner may read or enter (objects aside).

    The repository root, its folders, its top-level files and every published backup's files are
    looked at; objects and packs sit in folders listed here, so a private folder covers them.
    """
    found = []
    for path in _looked_at(root):
        try:
            mode = stat.S_IMODE(path.lstat().st_mode)
        except FileNotFoundError:
            continue
        if mode & OTHERS:
            found.append(f"{path} ({mode:03o})")
    return found


def _looked_at(root: Path) -> list[Path]:
    paths = [root, *root.iterdir()]
    backups = root / "backups"
    if backups.is_dir():
        for folder in backups.iterdir():
            paths.append(folder)
            if folder.is_dir() and not folder.is_symlink():
                paths.extend(folder.iterdir())
    return paths
