"""The backups and drills `guard serve` shows, read from BACKUP_DIR without locking or writing it.

A published backup never changes, so each manifest is read once per process and kept by its id;
a scrape then costs one directory listing and the tail of drills.jsonl.
"""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass, replace
from datetime import datetime
from pathlib import Path

from guard.backup.repo.manifest import Manifest
from guard.backup.repo.repository import Repository
from guard.backup.source import BACKUP
from guard.config.settings import Settings
from guard.errors import GuardError

SHOWN = 10  # backups on the page, newest first
DRILL_TAIL_BYTES = 64 * 1024


@dataclass(frozen=True)
class BackupSeen:
    """One published backup as the page and the metrics show it."""

    id: str
    readable: bool
    finished_at: float | None = None
    size_bytes: int = 0  # the database dump plus the files it holds
    files: int = 0
    missing: int = 0  # referenced files the snapshot could not include
    source: str = "?"
    verified: bool = False  # a restore drill of this very backup passed
    problem: str | None = None


@dataclass(frozen=True)
class DrillSeen:
    """The newest restore drill, as drills.jsonl records it."""

    at: float
    ok: bool
    restore_s: float
    backup: str | None
    detail: str


_seen: dict[tuple[str, str], BackupSeen | None] = {}  # None: a safety backup
_lock = threading.Lock()


def read_backups(settings: Settings) -> tuple[BackupSeen, ...] | None:
    """Return the newest SHOWN backups (purpose backup), newest first; None without BACKUP_DIR."""
    if settings.backup_dir is None:
        return None
    try:
        repo = Repository.open(settings.backup_dir, create=False)
        ids = repo.ids()
    except GuardError:
        return ()
    passed = {d.backup for d in _drills(repo.drill_log) if d.ok}
    shown: list[BackupSeen] = []
    for backup_id in reversed(ids):
        seen = _load(repo, backup_id)
        if seen is None:  # a safety backup (a restore target's old content): not a nightly backup
            continue
        shown.append(_verified(seen, backup_id in passed))
        if len(shown) == SHOWN:
            break
    return tuple(shown)


def read_drill(settings: Settings) -> DrillSeen | None:
    """Return the newest drill recorded in BACKUP_DIR/drills.jsonl, if any."""
    if settings.backup_dir is None:
        return None
    drills = _drills(settings.backup_dir / "drills.jsonl")
    return drills[-1] if drills else None


def _load(repo: Repository, backup_id: str) -> BackupSeen | None:
    key = (str(repo.root), backup_id)
    with _lock:
        if key in _seen:
            return _seen[key]
    try:
        manifest = repo.load(backup_id)
    except GuardError as exc:
        return BackupSeen(backup_id, readable=False, problem=str(exc))  # not kept: it may be repaired
    seen = _summary(manifest) if manifest.purpose == BACKUP else None
    with _lock:
        _seen[key] = seen
    return seen


def _summary(manifest: Manifest) -> BackupSeen:
    counts = manifest.counts
    source = manifest.source.label if manifest.source is not None else "?"
    return BackupSeen(
        manifest.id,
        readable=True,
        finished_at=_timestamp(manifest.finished_at),
        size_bytes=int(manifest.dump.size) + int(counts.get("bytes", 0) or 0),
        files=int(counts.get("files", 0) or 0),
        missing=len(manifest.missing),
        source=source,
    )


def _verified(seen: BackupSeen, passed: bool) -> BackupSeen:
    return replace(seen, verified=passed) if passed != seen.verified else seen


def _timestamp(text: str) -> float | None:
    try:
        return datetime.fromisoformat(text).timestamp()
    except ValueError:
        return None


def _drills(path: Path) -> list[DrillSeen]:
    """Read the last lines of drills.jsonl (oldest first); a torn or foreign line is skipped."""
    try:
        with path.open("rb") as log:
            log.seek(0, 2)
            size = log.tell()
            log.seek(max(0, size - DRILL_TAIL_BYTES))
            tail = log.read().decode("utf-8", "replace")
    except OSError:
        return []
    lines = tail.splitlines()
    if size > DRILL_TAIL_BYTES:
        lines = lines[1:]  # the first may be cut
    drills = []
    for line in lines:
        try:
            item = json.loads(line)
            at = _timestamp(str(item["at"]))
            if at is None:
                continue
            backup = None if item.get("backup") is None else str(item["backup"])
            drills.append(
                DrillSeen(at, bool(item["ok"]), float(item["restore_s"]), backup, str(item.get("detail", "")))
            )
        except (ValueError, KeyError, TypeError):
            continue
    return drills
