"""What a backup is made of on a remote: the repository's own layout, plus one content list a backup.

A remote holds the repository as it is on disk (guard-repository.json, packs/, objects/, backups/<id>/),
each file immutable once written. backups/<id>/content.json names every file the backup needs there
(packs with their indexes, loose objects; the dump's chunks are in packs, or before format 4 the
dump is a file) with its size; it is sent before the content,
and the manifest after the content is verified, so a backup whose manifest is on the remote has
everything, and a copy killed at any moment left no manifest behind.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass
from typing import Any

from guard.backup.repo.manifest import Manifest
from guard.backup.repo.repository import BACKUP_ID, DUMP, MANIFEST, MARKER, OLD_MARKER, Repository
from guard.errors import GuardError

CONTENT = "content.json"
CONTENT_FORMAT = "guard-remote-content/1"
# The only paths a content list may name: a remote's list is input, never a path outside the repository.
CONTENT_PATH = re.compile(
    r"packs/[0-9a-f]{32}\.(?:pack|idx)|objects/[0-9a-f]{2}/[0-9a-f]{64}|"
    rf"backups/{BACKUP_ID.pattern}/{re.escape(DUMP)}"
)


class LocalGap(GuardError):
    """A local backup lacks an object it names: it is not copied (guard backup verify says more)."""

    exit_code = 3


def marked(top: list[tuple[str, bool]]) -> bool:
    """Whether a remote's root (Rclone.top()) holds a guard repository's marker (format 1's too)."""
    return any(name in (MARKER, OLD_MARKER) for name, _ in top)


def manifest_path(backup_id: str) -> str:
    return f"backups/{backup_id}/{MANIFEST}"


def content_path(backup_id: str) -> str:
    return f"backups/{backup_id}/{CONTENT}"


@dataclass(frozen=True)
class Content:
    """The files one backup needs on a remote, by path under the remote root, with their sizes."""

    backup_id: str
    files: dict[str, int]

    def to_bytes(self) -> bytes:
        body = {"format": CONTENT_FORMAT, "id": self.backup_id, "files": dict(sorted(self.files.items()))}
        return json.dumps(body, separators=(",", ":")).encode("ascii")

    @classmethod
    def parse(cls, data: bytes, backup_id: str) -> Content:
        """Read a content list; GuardError when it is not one, or names a path it may not."""
        try:
            body: dict[str, Any] = json.loads(data)
            files = {str(p): int(s) for p, s in body["files"].items()}
            ok = body["format"] == CONTENT_FORMAT and body["id"] == backup_id
        except (ValueError, KeyError, TypeError, AttributeError, RecursionError):
            ok, files = False, {}
        if not ok or not all(CONTENT_PATH.fullmatch(p) for p in files):
            raise GuardError(f"backup {backup_id}: its content list on the remote is damaged")
        return cls(backup_id, files)


def content_of(repo: Repository, manifest: Manifest) -> Content:
    """Name the local files a backup needs: the packs (and indexes) holding its objects, loose ones, dump."""
    wanted: dict[str, int] = {f.sha256: f.size for f in manifest.files}
    wanted.update({p.sha256: p.size for folder in manifest.folders for p in folder.pages})
    wanted.update({c.sha256: c.size for c in manifest.dump.chunks})
    files: dict[str, int] = {}
    index = repo.store.index
    packs_seen: set[str] = set()
    for sha, size in wanted.items():
        where = index.get(sha)
        if where is not None and where.size == size:
            packs_seen.add(where.file)
            continue
        loose = repo.store.path(sha)
        try:
            actual = loose.stat().st_size
        except FileNotFoundError:
            raise LocalGap(f"backup {manifest.id} lacks object {sha} here: not copied") from None
        if actual != size:
            raise LocalGap(f"backup {manifest.id}: object {sha} has the wrong size here: not copied")
        files[f"objects/{sha[:2]}/{sha}"] = size
    for pack in sorted(packs_seen):
        name = os.path.basename(pack)[: -len(".pack")]
        for suffix in (".pack", ".idx"):
            files[f"packs/{name}{suffix}"] = (repo.packs / f"{name}{suffix}").stat().st_size
    if not manifest.dump.chunks:  # formats 1-3: the dump is a file next to the manifest
        dump = f"backups/{manifest.id}/{DUMP}"
        files[dump] = (repo.root / dump).stat().st_size
    return Content(manifest.id, files)
