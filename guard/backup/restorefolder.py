"""The uploads folder a restore creates: made like the live one (its owner, its mode), not like guard's."""

from __future__ import annotations

import contextlib
import os
import stat
from pathlib import Path


def make_uploads_folder(live: Path | None, restores: Path, folder: Path) -> None:
    """Create a restore's new uploads folder with the live folder's owner and mode (not ours)."""
    if folder.parent == restores:
        # The repository is private, but the app (another user, maybe) must reach a restored folder
        # by its name: restores/ may be entered by all, never listed.
        with contextlib.suppress(FileExistsError):
            os.mkdir(restores, 0o711)
    else:
        folder.parent.mkdir(parents=True, exist_ok=True)
    os.mkdir(folder, 0o700)
    like = _live_folder(live)
    if like is not None:
        _like_live(folder, like)


def _live_folder(live: Path | None) -> os.stat_result | None:
    try:
        return os.stat(live) if live is not None else None
    except OSError:
        return None


def _like_live(folder: Path, like: os.stat_result) -> None:
    """Give a folder the live uploads folder's mode and, when we may, its owner."""
    os.chmod(folder, stat.S_IMODE(like.st_mode))
    if (like.st_uid, like.st_gid) != (os.geteuid(), os.getegid()):
        with contextlib.suppress(PermissionError):  # only root may give files away; then they stay ours
            os.lchown(folder, like.st_uid, like.st_gid)


def hand_over(live: Path | None, folder: Path) -> None:
    """Give what a restore placed in its new folder the live folder's owner (and folders its mode)."""
    like = _live_folder(live)
    if like is None:
        return
    for base, folders, files in os.walk(folder):
        for name in folders:
            _like_live(Path(base, name), like)
        for name in files:
            if (like.st_uid, like.st_gid) != (os.geteuid(), os.getegid()):
                with contextlib.suppress(PermissionError):
                    os.lchown(os.path.join(base, name), like.st_uid, like.st_gid)
