"""Forget backups a keep-policy does not keep, then delete the objects no remaining manifest names."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from guard.backup.builder import require_backup_dir
from guard.backup.policy import Policy, keep
from guard.backup.repository import Repository
from guard.backup.verify import verify_backup
from guard.errors import GuardError, UsageError
from guard.settings import Settings


@dataclass(frozen=True)
class PruneResult:
    """What prune kept (with why), removed, and freed."""

    kept: dict[str, list[str]]
    removed: list[str]
    objects_removed: int
    bytes_freed: int
    newest_verified: str | None
    notes: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.newest_verified is not None

    def to_json(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "kept": self.kept,
            "removed": self.removed,
            "objects_removed": self.objects_removed,
            "bytes_freed": self.bytes_freed,
            "newest_verified": self.newest_verified,
            "notes": self.notes,
        }


def backup_time(backup_id: str) -> datetime:
    """Return when a backup started, read from its id (UTC), in local time as restic buckets it."""
    return datetime.strptime(backup_id[:16], "%Y%m%dT%H%M%SZ").replace(tzinfo=UTC).astimezone()


def run_prune(
    settings: Settings, keep_daily: int = 7, keep_weekly: int = 4, keep_monthly: int = 6
) -> PruneResult:
    """Apply the policy under the repository lock; never remove the newest verified backup."""
    policy = Policy(keep_daily, keep_weekly, keep_monthly)
    if policy.empty() or min(keep_daily, keep_weekly, keep_monthly) < 0:
        raise UsageError("prune needs at least one positive --keep-daily/--keep-weekly/--keep-monthly")
    repo = Repository.open(require_backup_dir(settings), create=False)
    with repo.lock(exclusive=True):
        repo.clear_tmp()
        return prune_repository(repo, policy, datetime.now().astimezone())


def prune_repository(repo: Repository, policy: Policy, now: datetime) -> PruneResult:
    ids = repo.ids()
    kept = keep([(i, backup_time(i)) for i in ids], now, policy)
    newest = _newest_verified(repo, ids)
    if newest is not None:
        kept.setdefault(newest, []).append("newest verified")
    removed = [i for i in ids if i not in kept]
    for backup_id in removed:
        repo.remove(backup_id)
    objects, freed, notes = _collect_garbage(repo, [i for i in ids if i in kept])
    if newest is None:
        notes.append("no backup passed verification; nothing is known good")
    return PruneResult(kept, removed, objects, freed, newest, notes)


def _newest_verified(repo: Repository, ids: list[str]) -> str | None:
    for backup_id in reversed(ids):
        if verify_backup(repo, backup_id, read_data=False).ok:
            return backup_id
    return None


def _collect_garbage(repo: Repository, remaining: list[str]) -> tuple[int, int, list[str]]:
    """Delete objects no remaining manifest refers to, folder lists included (each is an object too).

    Deletes none if any manifest or any of its folder lists is unreadable.
    """
    needed: set[str] = set()
    for backup_id in remaining:
        try:
            manifest = repo.load(backup_id)
            needed.update(page.sha256 for folder in manifest.folders for page in folder.pages)
            needed.update(f.sha256 for f in manifest.files)  # reads every folder list: all must be whole
        except GuardError as exc:
            return 0, 0, [f"kept every object: {exc}"]
    return repo.store.collect_garbage(needed)
