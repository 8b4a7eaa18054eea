"""Forget backups a keep-policy does not keep, then delete the objects no remaining manifest names.

The keep rules apply to each source's backups on their own (and to a source's safety backups apart
from its own backups), so one database's backups never push out another's.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from guard.backup.builder import require_backup_dir
from guard.backup.policy import Policy, keep
from guard.backup.repo import packs
from guard.backup.repo.manifest import Manifest
from guard.backup.repo.repository import LOCK_WAIT_S, Repository
from guard.backup.selection import others
from guard.backup.source import BACKUP, Wanted, configured_source
from guard.backup.verify import verify_backup
from guard.config.settings import Settings
from guard.errors import ConfigError, GuardError, UsageError
from guard.history import events

NO_RULE = "no rule keeps it"


@dataclass(frozen=True)
class PruneResult:
    """What prune kept (with why), removed and freed; the problems (findings) make it not ok.

    A dry run removes nothing: `removed` lists what a real run would remove, and `objects_removed` and
    `bytes_freed` what its garbage collection would delete (packed objects counted by their bytes).
    """

    kept: dict[str, list[str]]
    removed: list[str]
    objects_removed: int
    bytes_freed: int
    newest_verified: dict[str, str]  # per group of backups (a source, or its safety backups): the id
    problems: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    dry_run: bool = False
    policy: Policy = field(default_factory=Policy)

    @property
    def ok(self) -> bool:
        return not self.problems

    def to_json(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "dry_run": self.dry_run,
            "policy": {
                "keep_daily": self.policy.daily,
                "keep_weekly": self.policy.weekly,
                "keep_monthly": self.policy.monthly,
            },
            "kept": self.kept,
            "removed": self.removed,
            "removed_why": {i: NO_RULE for i in self.removed},
            "objects_removed": self.objects_removed,
            "bytes_freed": self.bytes_freed,
            "newest_verified": self.newest_verified,
            "problems": self.problems,
            "notes": self.notes,
        }


@dataclass
class _Plan:
    """The backups prune judges, in groups (oldest first), and those it cannot read."""

    groups: dict[str, list[str]] = field(default_factory=lambda: defaultdict(list))
    unreadable: dict[str, str] = field(default_factory=dict)  # id -> why
    ids: list[str] = field(default_factory=list)


def backup_time(backup_id: str) -> datetime:
    """Return when a backup started, read from its id (UTC), in local time as restic buckets it."""
    return datetime.strptime(backup_id[:16], "%Y%m%dT%H%M%SZ").replace(tzinfo=UTC).astimezone()


def _judged(result: PruneResult) -> tuple[str | None, dict[str, object]]:
    if result.dry_run:  # removed nothing: not a prune in the history
        return None, {}
    return (events.OK if result.ok else events.FAILED), {
        "removed": len(result.removed),
        "bytes_freed": result.bytes_freed,
        "problems": [p[:300] for p in result.problems[:5]],
    }


@events.recorded(events.PRUNE, _judged)
def run_prune(
    settings: Settings,
    keep_daily: int | None = None,
    keep_weekly: int | None = None,
    keep_monthly: int | None = None,
    *,
    source: Wanted | None = None,
    all_sources: bool = False,
    dry_run: bool = False,
) -> PruneResult:
    """Apply the policy to one source's backups (default: the configured database's), or to all.

    A keep count not given is the setting's (KEEP_DAILY, KEEP_WEEKLY, KEEP_MONTHLY). Never removes a
    group's newest verified backup, nor a backup whose manifest cannot be read. A dry run only reads
    (under the shared lock, leaving even a killed run's leftovers alone) and removes nothing.
    """
    policy = Policy(
        settings.keep_daily if keep_daily is None else keep_daily,
        settings.keep_weekly if keep_weekly is None else keep_weekly,
        settings.keep_monthly if keep_monthly is None else keep_monthly,
    )
    if policy.empty() or min(policy.daily, policy.weekly, policy.monthly) < 0:
        raise UsageError(
            "prune needs at least one positive keep count: --keep-daily/--keep-weekly/--keep-monthly "
            "or the KEEP_DAILY/KEEP_WEEKLY/KEEP_MONTHLY settings"
        )
    if not (all_sources or source or settings.database_url):
        raise ConfigError(
            "DATABASE_URL is not set: prune needs it to tell the database's own backups apart "
            "(or pass --source NAME or --all-sources)"
        )
    repo = Repository.open(require_backup_dir(settings), create=False)
    wanted = None if all_sources else source or configured_source(settings.require_database_url())
    with repo.lock(exclusive=not dry_run, wait_s=LOCK_WAIT_S):  # a nightly backup still running: wait
        if not dry_run:
            repo.clear_tmp()
        return prune_repository(repo, policy, datetime.now().astimezone(), wanted, dry_run=dry_run)


def prune_repository(
    repo: Repository, policy: Policy, now: datetime, wanted: Wanted | None, *, dry_run: bool = False
) -> PruneResult:
    """Prune the wanted source's backups (None: every source's), each group under its own rules."""
    plan = _plan(repo, wanted)
    kept: dict[str, list[str]] = {i: ["cannot be read: source unknown"] for i in plan.unreadable}
    verified: dict[str, str] = {}
    problems: list[str] = []
    for label, ids in plan.groups.items():
        kept.update(keep([(i, backup_time(i)) for i in ids], now, policy))
        newest = _newest_verified(repo, label, ids, problems)
        if newest is not None:
            verified[label] = newest
            kept.setdefault(newest, []).append("newest verified")
    problems += _unreadable_problems(plan, wanted)
    if wanted is not None and not plan.groups.get(wanted.label):
        problems.append(_none_of(repo, wanted))
    removed = [i for ids in plan.groups.values() for i in ids if i not in kept]
    # Every backup not removed stays, other sources' included: their objects must all survive.
    remaining = [i for i in plan.ids if i not in removed]
    if dry_run:
        objects, freed, notes = _count_garbage(repo, remaining)
        return PruneResult(kept, removed, objects, freed, verified, problems, notes, True, policy)
    for backup_id in removed:
        repo.remove(backup_id)
    objects, freed, notes = _collect_garbage(repo, remaining)
    return PruneResult(kept, removed, objects, freed, verified, problems, notes, False, policy)


def _plan(repo: Repository, wanted: Wanted | None) -> _Plan:
    """Group the wanted source's readable backups by source and purpose; set aside the unreadable."""
    plan = _Plan()
    for backup_id, loaded in repo.manifests():
        plan.ids.append(backup_id)
        if not isinstance(loaded, Manifest):
            plan.unreadable[backup_id] = str(loaded)
        elif wanted is None or wanted.matches(loaded.source):
            plan.groups[_group(loaded, wanted)].append(backup_id)
    return plan


def _group(manifest: Manifest, wanted: Wanted | None) -> str:
    """Name a backup's group: its source (the wanted one, when one is) and, unless BACKUP, its purpose."""
    label = wanted.label if wanted is not None else manifest.source.label if manifest.source else "unknown"
    return label if manifest.purpose == BACKUP else f"{label} ({manifest.purpose})"


def _newest_verified(repo: Repository, label: str, ids: list[str], problems: list[str]) -> str | None:
    """Return a group's newest backup passing verify; a newest that fails it is a problem."""
    for backup_id in reversed(ids):
        verdict = verify_backup(repo, backup_id, read_data=False)
        if verdict.ok:
            return backup_id
        if backup_id == ids[-1]:
            problems.append(f"newest backup {backup_id} of {label} fails verification: {verdict.examples[0]}")
    problems.append(f"no backup of {label} passed verification; nothing is known good")
    return None


def _none_of(repo: Repository, wanted: Wanted) -> str:
    held = others(repo, wanted)
    return f"no backup of {wanted.label}" + (f" (the repository holds {', '.join(held)})" if held else "")


def _unreadable_problems(plan: _Plan, wanted: Wanted | None) -> list[str]:
    """Name each backup whose manifest cannot be read: it is kept, and may be a source's newest."""
    judged = plan.groups.get(wanted.label, []) if wanted is not None else plan.ids
    newest = max((i for i in judged if i not in plan.unreadable), default="")
    return [
        f"{'newest backup' if backup_id > newest else 'backup'} {backup_id} cannot be read ({why}); "
        "kept, as its source is unknown"
        for backup_id, why in plan.unreadable.items()
    ]


def _needed(repo: Repository, remaining: list[str]) -> set[str] | str:
    """Return every object the remaining backups name (folder lists included), or why it is unknown."""
    needed: set[str] = set()
    for backup_id in remaining:
        try:
            manifest = repo.load(backup_id)
            needed.update(page.sha256 for folder in manifest.folders for page in folder.pages)
            needed.update(chunk.sha256 for chunk in manifest.dump.chunks)
            needed.update(f.sha256 for f in manifest.files)  # reads every folder list: all must be whole
        except GuardError as exc:
            return f"kept every object: {exc}"
    return needed


def _collect_garbage(repo: Repository, remaining: list[str]) -> tuple[int, int, list[str]]:
    """Delete objects no remaining manifest refers to, folder lists included (each is an object too).

    Deletes none if any manifest or any of its folder lists is unreadable.
    """
    needed = _needed(repo, remaining)
    if isinstance(needed, str):
        return 0, 0, [needed]
    return repo.store.collect_garbage(needed)


def _count_garbage(repo: Repository, remaining: list[str]) -> tuple[int, int, list[str]]:
    """Count what _collect_garbage would delete, reading only: loose files and packed objects' bytes."""
    needed = _needed(repo, remaining)
    if isinstance(needed, str):
        return 0, 0, [needed.replace("kept", "would keep", 1)]
    objects = size = 0
    for entry in repo.store.loose_entries():
        if entry.name not in needed:
            objects, size = objects + 1, size + entry.stat(follow_symlinks=False).st_size
    for name in packs.pack_names(repo.store.packs):
        try:
            entries = packs.read_index(repo.store.packs / f"{name}.idx")
        except FileNotFoundError:
            continue
        dead = [e for e in entries or [] if e[0] not in needed]
        objects, size = objects + len(dead), size + sum(e[2] for e in dead)
    return objects, size, []
