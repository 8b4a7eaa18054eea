"""What the backup repository records for `guard status`: the newest backup and the last restore drill.

Read only, and cheap: the newest manifest of the configured database (selection.newest_first stops at
the first), and the last line of BACKUP_DIR/drills.jsonl that guard/backup/drill.py appends.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from guard.backup.repo.repository import Repository
from guard.backup.selection import newest_first
from guard.backup.source import Wanted
from guard.errors import UnreachableError

DRILLS = "drills.jsonl"
TAIL_BYTES = 65536  # the last drill's line is well within this


@dataclass(frozen=True)
class NewestBackup:
    """The newest backup of the configured database, or why it cannot be read."""

    backup_id: str
    started_at: str | None = None
    finished_at: str | None = None
    files: int | None = None
    size_bytes: int | None = None
    consistent: bool | None = None
    missing: int | None = None  # referenced files that were already missing when it was taken
    problem: str | None = None

    @property
    def ok(self) -> bool:
        return self.problem is None and bool(self.consistent)

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.backup_id,
            "started_at": self.started_at,
            "finished_at": self.finished_at,
            "files": self.files,
            "bytes": self.size_bytes,
            "consistent": self.consistent,
            "missing": self.missing,
            "problem": self.problem,
        }


def newest_backup(backup_dir: Path, wanted: Wanted) -> NewestBackup | None:
    """Return the wanted source's newest backup (an unreadable newer one is named, not skipped)."""
    repo = Repository.open(backup_dir, create=False)
    candidate = next(newest_first(repo, wanted), None)
    if candidate is None:
        return None
    manifest = candidate.manifest
    if manifest is None:
        return NewestBackup(candidate.backup_id, problem=candidate.problem or "cannot be read")
    size = manifest.counts.get("bytes", 0) + manifest.dump.size
    return NewestBackup(
        candidate.backup_id,
        manifest.started_at,
        manifest.finished_at,
        manifest.counts.get("files"),
        size,
        manifest.consistent,
        len(manifest.missing),
    )


def last_drill(backup_dir: Path) -> dict[str, Any] | None:
    """Return the last drill drill.py recorded (at, ok, backup, restore_s, detail), or None."""
    path = backup_dir / DRILLS
    try:
        with path.open("rb") as handle:
            handle.seek(0, 2)
            end = handle.tell()
            handle.seek(max(0, end - TAIL_BYTES))
            tail = handle.read().decode("utf-8", errors="replace")
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise UnreachableError(f"cannot read {path}: {exc.strerror}") from None
    for line in reversed(tail.splitlines()):
        try:
            record = json.loads(line)
        except ValueError:
            continue  # a torn or partial line (the read started mid-line)
        if isinstance(record, dict) and "ok" in record:
            return record
    return None
