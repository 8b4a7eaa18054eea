"""Put back files rows still need: each missing_file, from the database's newest backup holding it."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from guard.backup.builder import require_backup_dir
from guard.backup.placement import PLACED, PRESENT, Placer
from guard.backup.repo.manifest import FileEntry
from guard.backup.repo.repository import LOCK_WAIT_S, Repository
from guard.backup.selection import newest_first, readable
from guard.backup.source import Wanted, configured_source
from guard.checks import CheckContext
from guard.checks import files as files_check
from guard.config.settings import Settings
from guard.errors import GuardError
from guard.fs.paths import json_safe


@dataclass(frozen=True)
class Recovered:
    """One missing file's outcome: restored from a backup, already back, or not recoverable."""

    subject: str
    path: str
    outcome: str
    backup_id: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "subject": self.subject,
            "path": json_safe(self.path),
            "outcome": self.outcome,
            "backup": self.backup_id,
        }


def restore_missing(settings: Settings, source: Wanted | None = None) -> list[Recovered]:
    """Find every missing_file now, and restore each from the newest backup that has it, hash-verified.

    Only backups of the source (default: the configured database) are used, never a safety backup.
    """
    result = files_check.run(CheckContext(settings, limit=None))
    missing = [
        (f.subject, f.path) for f in result.findings if f.kind == "missing_file" and f.path is not None
    ]
    if not missing:
        return []
    repo = Repository.open(require_backup_dir(settings), create=False)
    of = source or configured_source(settings.require_database_url())
    placer = Placer(repo.store, settings.require_uploads_root())
    with repo.lock(exclusive=False, wait_s=LOCK_WAIT_S):
        sources = _newest_sources(repo, of, {path for _, path in missing})
        return [_recover(placer, subject, path, sources.get(path)) for subject, path in missing]


def _newest_sources(repo: Repository, of: Wanted, wanted: set[str]) -> dict[str, tuple[str, FileEntry]]:
    """Return, for each wanted path, the source's newest readable backup holding it and its entry."""
    found: dict[str, tuple[str, FileEntry]] = {}
    for manifest in readable(newest_first(repo, of)):
        try:
            files = manifest.files  # reads its folder lists, each checked against its hash
        except GuardError:
            continue
        for entry in files:
            if entry.path in wanted and entry.path not in found:
                found[entry.path] = (manifest.id, entry)
        if len(found) == len(wanted):
            break
    return found


def _recover(placer: Placer, subject: str, path: str, source: tuple[str, FileEntry] | None) -> Recovered:
    if source is None:
        return Recovered(subject, path, "in no backup")
    backup_id, entry = source
    outcome = placer.place(entry, overwrite=False)
    if outcome == PLACED:
        return Recovered(subject, path, "restored", backup_id)
    if outcome == PRESENT:
        return Recovered(subject, path, "already present", backup_id)
    return Recovered(subject, path, outcome, backup_id)
