"""Put backed-up files back under an uploads root: hash-verified, atomic, never outside the root."""

from __future__ import annotations

import hashlib
import os
import secrets
from pathlib import Path

from guard import paths
from guard.backup.faults import race_point
from guard.backup.manifest import FileEntry
from guard.backup.store import ObjectStore
from guard.fdio import write_all

PLACED, PRESENT = "placed", "present"


class Placer:
    """Write manifest entries under one root, creating folders but never following one out of it."""

    def __init__(self, store: ObjectStore, root: Path) -> None:
        self.store = store
        self.root = Path(os.path.realpath(root))
        self._safe_dirs: set[Path] = set()

    def place(self, entry: FileEntry, *, overwrite: bool) -> str:
        """Return PLACED or PRESENT, or a sentence saying why the file could not be put back."""
        reason = paths.unsafe_reason(entry.path, backslash_ok=True)  # a legal file name on disk
        if reason is not None:
            return f"path {reason}; not written"
        dest = self.root / paths.normalize(entry.path)
        if not self._safe_parent(dest.parent):
            return "its folder resolves outside the uploads root; not written"
        if os.path.lexists(dest) and not overwrite:
            return PRESENT
        race_point("place")
        return self._write(entry, dest)

    def _safe_parent(self, parent: Path) -> bool:
        if parent in self._safe_dirs:
            return True
        parent.mkdir(parents=True, exist_ok=True)
        real = Path(os.path.realpath(parent))
        if real != self.root and self.root not in real.parents:
            return False
        self._safe_dirs.add(parent)
        return True

    def _write(self, entry: FileEntry, dest: Path) -> str:
        temp = dest.parent / f".guard-restore-{secrets.token_hex(6)}"
        digest = hashlib.sha256()
        try:
            chunks = self.store.chunks(entry.sha256)
        except FileNotFoundError:
            return f"object {entry.sha256} is missing from the backup"
        out = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        try:
            for chunk in chunks:
                digest.update(chunk)
                write_all(out, chunk)
        finally:
            os.close(out)
        if digest.hexdigest() != entry.sha256:
            temp.unlink()
            return f"object {entry.sha256} is corrupt (its content does not match its hash)"
        if entry.mtime_ns is not None:
            os.utime(temp, ns=(entry.mtime_ns, entry.mtime_ns))
        os.rename(temp, dest)
        return PLACED
