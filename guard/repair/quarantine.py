"""The quarantine folder: one sub-folder per repair run holding the moved files and a manifest.

`DIR/<run id>/<path under the uploads root>` keeps every file's place, so undo knows where each goes
back, and `DIR/<run id>/manifest.json` says what each was (size, SHA-256, modification time) and
when it was moved. Files are never deleted here except by purge, by whole runs older than asked.
"""

from __future__ import annotations

import json
import os
import posixpath
import re
import shutil
import stat
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import guard.backup  # noqa: F401  (first: guard.fs.beneath imports guard.backup.faults)
from guard.errors import UsageError
from guard.fs.beneath import open_beneath
from guard.fs.root import UploadsRoot
from guard.repair.filemove import Moved

MANIFEST = "manifest.json"
DURATION = re.compile(r"^(\d+)([smhdw])$")
UNIT_S = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def parse_age(text: str) -> int:
    """Read `30d`, `12h`, `90m`, `3600s` or `2w` into seconds."""
    found = DURATION.match(text.strip())
    if found is None:
        raise UsageError(f"--older-than {text!r}: give a number and a unit, such as 30d, 12h or 3600s")
    return int(found.group(1)) * UNIT_S[found.group(2)]


@dataclass(frozen=True)
class Entry:
    """One quarantined file in a run's manifest."""

    path: str
    size: int
    sha256: str
    mtime: float
    copied: bool
    moved_at: float

    @classmethod
    def of(cls, path: str, moved: Moved) -> Entry:
        return cls(path, moved.size, moved.sha256, moved.mtime, moved.copied, time.time())

    def to_json(self) -> dict[str, Any]:
        return {
            "path": self.path,
            "size": self.size,
            "sha256": self.sha256,
            "mtime": self.mtime,
            "copied_across_filesystems": self.copied,
            "moved_at": self.moved_at,
        }


class Quarantine:
    """A folder outside the uploads root where orphan files wait instead of being deleted."""

    def __init__(self, folder: Path, root: UploadsRoot | None = None) -> None:
        self.folder = folder.expanduser().absolute()
        real = Path(os.path.realpath(self.folder))
        if root is not None and (real == root.real or root.real in real.parents):
            raise UsageError(
                f"quarantine folder {folder} is inside the uploads root; choose one outside it "
                "(files in it would be scanned as orphans again)"
            )

    def create(self) -> None:
        self.folder.mkdir(mode=0o700, parents=True, exist_ok=True)

    def run_folder(self, run_id: str) -> Path:
        return self.folder / run_id

    @contextmanager
    def folder_of(self, run_id: str, relpath: str, *, create: bool) -> Iterator[int]:
        """Open the quarantine folder a file of a run goes to (its uploads folder's twin), level by
        level from the quarantine folder without following a link."""
        inner = posixpath.join(run_id, posixpath.dirname(relpath))
        if create:
            (self.folder / inner).mkdir(mode=0o700, parents=True, exist_ok=True)
        base = os.open(self.folder, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        try:
            fd = open_beneath(base, inner)
        finally:
            os.close(base)
        try:
            yield fd
        finally:
            os.close(fd)

    def holds(self, run_id: str, relpath: str) -> bool:
        """Whether the run's copy of relpath is here, a regular file reached through no link."""
        try:
            with self.folder_of(run_id, relpath, create=False) as fd:
                st = os.stat(posixpath.basename(relpath), dir_fd=fd, follow_symlinks=False)
        except OSError:
            return False
        return stat.S_ISREG(st.st_mode)

    def write_manifest(self, run_id: str, entries: list[Entry], detail: dict[str, Any]) -> Path:
        """Write the run's manifest atomically (owner-readable only)."""
        folder = self.run_folder(run_id)
        folder.mkdir(mode=0o700, parents=True, exist_ok=True)
        target = folder / MANIFEST
        tmp = folder / f".{MANIFEST}.tmp"
        document = {"run": run_id, **detail, "files": [e.to_json() for e in entries]}
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as out:
            json.dump(document, out, indent=2, ensure_ascii=False)
            out.flush()
            os.fsync(out.fileno())
        os.replace(tmp, target)
        return target

    def read_manifest(self, run_id: str) -> dict[str, Any]:
        try:
            loaded: dict[str, Any] = json.loads((self.run_folder(run_id) / MANIFEST).read_text("utf-8"))
        except (OSError, ValueError):
            return {}
        return loaded

    def purge(self, older_than_s: int, now: float | None = None) -> list[tuple[str, int]]:
        """Delete whole runs whose files were all moved in longer ago than older_than_s; the only delete."""
        cutoff = (time.time() if now is None else now) - older_than_s
        purged: list[tuple[str, int]] = []
        if not self.folder.is_dir():
            return purged
        for run in sorted(p for p in self.folder.iterdir() if p.is_dir() and not p.is_symlink()):
            files = self.read_manifest(run.name).get("files")
            if not isinstance(files, list):
                continue  # not a run guard wrote: never touched
            newest = max((float(f.get("moved_at", 0)) for f in files), default=0.0)
            if newest == 0.0:
                newest = run.stat().st_mtime
            if newest <= cutoff:
                shutil.rmtree(run)  # removes links themselves, never what they point at
                purged.append((run.name, len(files)))
        return purged
