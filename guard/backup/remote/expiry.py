"""`guard backup prune --remote`: the local keep rules on a remote's backups, manifests deleted first.

Then content no remaining backup's content list names (complete or still being copied) is deleted.
When any remaining backup's content list cannot be read, no content is deleted at all.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from guard.backup.policy import Policy, keep
from guard.backup.prune import backup_time
from guard.backup.remote import locks
from guard.backup.remote.layout import CONTENT_PATH, manifest_path, marked
from guard.backup.remote.mirror import Mirror, RemoteBackup
from guard.backup.remote.rclone import Rclone
from guard.backup.source import BACKUP
from guard.errors import UsageError


@dataclass(frozen=True)
class RemotePruneResult:
    """What a remote prune kept (and why), removed, and how many content files it deleted."""

    remote: str
    kept: dict[str, list[str]]
    removed: list[str]
    files_deleted: int
    bytes_freed: int
    problems: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems

    def to_json(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "remote": self.remote,
            "kept": self.kept,
            "removed": self.removed,
            "files_deleted": self.files_deleted,
            "bytes_freed": self.bytes_freed,
            "problems": self.problems,
            "notes": self.notes,
        }


def prune_remote(
    remote: str,
    policy: Policy,
    now: datetime | None = None,
    *,
    dry_run: bool = False,
    wait_s: float = locks.WAIT_S,
) -> RemotePruneResult:
    """Forget the remote's backups the policy does not keep (each source on its own), then their content.

    dry_run: decide and count the same way, delete nothing. Otherwise the remote's prune lock is held
    throughout: no copy is under way while content is judged unneeded and deleted (locks.py); this
    waits up to `wait_s` for one to end.
    """
    if policy.empty() or min(policy.daily, policy.weekly, policy.monthly) < 0:
        raise UsageError("prune needs at least one positive --keep-daily/--keep-weekly/--keep-monthly")
    rclone = Rclone(remote)
    if not marked(rclone.top()):  # nothing of guard's there: no lock written either
        note = "no guard backup repository there: nothing to prune"
        return RemotePruneResult(rclone.label, {}, [], 0, 0, [], [note])
    if dry_run:
        return _prune(Mirror(remote), policy, now, dry_run=True)
    with locks.holding(rclone, locks.PRUNE, wait_s=wait_s):
        return _prune(Mirror(remote), policy, now, dry_run=False)


def _prune(mirror: Mirror, policy: Policy, now: datetime | None, *, dry_run: bool) -> RemotePruneResult:
    backups = mirror.backups()
    moment = now or datetime.now().astimezone()
    kept, problems = _decide(backups, policy, moment)
    removed = [b.backup_id for b in backups if b.backup_id not in kept]
    remaining = [b for b in backups if b.backup_id not in removed]
    if dry_run:
        deleted, freed, notes = _collect(mirror, remaining, dry_run=True)
        return RemotePruneResult(mirror.label, kept, removed, deleted, freed, problems, notes)
    # The manifests go first: a prune killed after this leaves content nothing names, never the reverse.
    mirror.rclone.delete([manifest_path(i) for i in removed])
    mirror.rclone.delete([p for i in removed for p in mirror.files if p.startswith(f"backups/{i}/")])
    deleted, freed, notes = _collect(mirror, remaining)
    mirror.rclone.rmdirs("backups")
    incomplete = mirror.incomplete()
    if incomplete:
        notes.append(
            f"kept what {len(incomplete)} unfinished copies sent ({', '.join(incomplete[:3])}): "
            "`guard backup copy` finishes them"
        )
    return RemotePruneResult(mirror.label, kept, removed, deleted, freed, problems, notes)


def _decide(
    backups: list[RemoteBackup], policy: Policy, now: datetime
) -> tuple[dict[str, list[str]], list[str]]:
    groups: dict[str, list[str]] = defaultdict(list)
    kept: dict[str, list[str]] = {}
    problems: list[str] = []
    for backup in backups:
        manifest = backup.manifest
        if manifest is None:
            kept[backup.backup_id] = ["cannot be read: source unknown"]
            problems.append(f"backup {backup.backup_id} cannot be read ({backup.problems[0]}); kept")
            continue
        label = manifest.source.label if manifest.source else "unknown"
        groups[label if manifest.purpose == BACKUP else f"{label} ({manifest.purpose})"].append(
            backup.backup_id
        )
    complete = {b.backup_id for b in backups if b.complete}
    for label, ids in groups.items():
        kept.update(keep([(i, backup_time(i)) for i in ids], now, policy))
        newest = next((i for i in reversed(ids) if i in complete), None)
        if newest is None:
            problems.append(f"no backup of {label} on the remote is complete; nothing is known good")
        else:
            kept.setdefault(newest, []).append("newest complete")
    return kept, problems


def _collect(
    mirror: Mirror, remaining: list[RemoteBackup], *, dry_run: bool = False
) -> tuple[int, int, list[str]]:
    """Delete content files no remaining (or unfinished) backup's content list names (dry_run: count)."""
    needed: set[str] = set()
    unfinished = mirror.incomplete()
    lists = remaining + mirror.backups(unfinished) if unfinished else remaining
    for backup in lists:
        if backup.content is None:
            return 0, 0, [f"deleted no content: backup {backup.backup_id}'s content list cannot be read"]
        needed.update(backup.content.files)
    doomed = sorted(p for p in mirror.files if CONTENT_PATH.fullmatch(p) and p not in needed)
    doomed = [p for p in doomed if not p.startswith("backups/")]  # dumps went with their backup
    if not dry_run:
        mirror.rclone.delete(doomed)
    return len(doomed), sum(mirror.files[p].size for p in doomed), []
