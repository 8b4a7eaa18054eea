"""The off-site operations as the CLI and the nightly chain call them, over settings."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from guard.backup.builder import require_backup_dir
from guard.backup.policy import Policy
from guard.backup.remote.copier import CopyResult, copy_backups
from guard.backup.remote.expiry import RemotePruneResult, prune_remote
from guard.backup.remote.mirror import Mirror, cache_folder, private_folder
from guard.backup.remote.rclone import display
from guard.backup.repo.repository import Repository, check_backup_id
from guard.backup.restorer import RestoreResult, restore_backup
from guard.backup.verify import VerifyResult, verify_backup
from guard.config.settings import Settings
from guard.errors import ConfigError, GuardError, UnreachableError
from guard.history import events
from guard.progress import ProgressFactory, no_progress


@dataclass(frozen=True)
class CopyRun:
    """The nightly copy to every BACKUP_REMOTES entry: what each got, and what failed."""

    results: list[CopyResult]
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems

    def to_json(self) -> dict[str, Any]:
        return {"ok": self.ok, "remotes": [r.to_json() for r in self.results], "problems": self.problems}


def remotes(settings: Settings) -> tuple[str, ...]:
    if not settings.backup_remotes:
        raise ConfigError("BACKUP_REMOTES is not set: name one or more rclone remote paths")
    return settings.backup_remotes


def _judged_run(run: CopyRun) -> tuple[str, dict[str, object]]:
    return (events.OK if run.ok else events.FAILED), {
        "copied": sum(len(r.copied) for r in run.results),
        "problems": [p[:300] for p in run.problems[:5]],
    }


def _judged_one(result: CopyResult) -> tuple[str, dict[str, object]]:
    return events.OK, {"copied": len(result.copied), "bytes_sent": result.sent_bytes}


@events.recorded(events.COPY, _judged_one)
def copy_one(
    settings: Settings, remote: str, ids: list[str] | None, progress: ProgressFactory = no_progress
) -> CopyResult:
    """`guard backup copy --to REMOTE [ID...]`: copy to one remote, recorded in the history."""
    repo = Repository.open(require_backup_dir(settings), create=False)
    return copy_backups(repo, remote, ids, progress)


@events.recorded(events.COPY, _judged_run)
def run_copy(settings: Settings, progress: ProgressFactory = no_progress) -> CopyRun:
    """Copy every local backup to each of BACKUP_REMOTES; one remote failing does not stop the others."""
    repo = Repository.open(require_backup_dir(settings), create=False)
    results, problems = [], []
    for remote in remotes(settings):
        try:
            results.append(copy_backups(repo, remote, None, progress))
        except GuardError as exc:
            problems.append(f"{display(remote)}: {exc}")
    return CopyRun(results, problems)


def run_prune_remote(settings: Settings) -> CopyRunPrune:
    """Prune each of BACKUP_REMOTES with the nightly prune's keep rules."""
    # The local prune's keep counts: KEEP_DAILY, KEEP_WEEKLY, KEEP_MONTHLY.
    policy = Policy(settings.keep_daily, settings.keep_weekly, settings.keep_monthly)
    results, problems = [], []
    for remote in remotes(settings):
        try:
            result = prune_remote(remote, policy)
        except GuardError as exc:
            problems.append(f"{display(remote)}: {exc}")
            continue
        results.append(result)
        problems += [f"{result.remote}: {p}" for p in result.problems]
    return CopyRunPrune(results, problems)


@dataclass(frozen=True)
class CopyRunPrune:
    """The nightly prune of every remote."""

    results: list[RemotePruneResult]
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems


def verify_remote(
    remote: str, *, read_data: bool, progress: ProgressFactory = no_progress
) -> list[VerifyResult]:
    """Check the remote's backups: manifests and content sizes; read_data fetches all and re-hashes it."""
    mirror = Mirror(remote)
    backups = mirror.backups()
    results: list[VerifyResult] = []
    if not read_data:
        for b in backups:
            objects = len(b.content.files) if b.content else 0
            results.append(VerifyResult(b.backup_id, len(b.problems), b.problems[:20], objects, False))
        return results
    with private_folder("guard-remote-verify-") as folder:
        repo = Repository.open(folder / "repository", create=True)
        for backup in backups:
            if not backup.complete:
                results.append(
                    VerifyResult(backup.backup_id, len(backup.problems), backup.problems[:20], 0, True)
                )
                continue
            mirror.fetch_into(repo, backup, progress)
            results.append(verify_backup(repo, backup.backup_id, read_data=True, progress=progress))
    return results


def fetch_backup(
    settings: Settings, remote: str, backup_id: str, progress: ProgressFactory = no_progress
) -> Path:
    """Fetch what one backup needs from a remote into the local cache; return the cache repository."""
    check_backup_id(backup_id)
    mirror = Mirror(remote)
    if backup_id not in mirror.ids():
        raise UnreachableError(f"backup {backup_id} is not on {mirror.label} (guard backup list --remote)")
    (backup,) = mirror.backups([backup_id])
    if not backup.complete:
        raise UnreachableError(f"backup {backup_id} on {mirror.label} is not whole: {backup.problems[0]}")
    folder = cache_folder(settings.backup_cache_dir, mirror.label)
    repo = Repository.open(folder, create=True)
    with repo.lock(exclusive=True, wait_s=60.0):
        repo.clear_tmp()
        mirror.fetch_into(repo, backup, progress)
    return folder


def restore_from_remote(
    settings: Settings,
    remote: str,
    backup_id: str,
    *,
    target_db: str | None = None,
    uploads_dir: Path | None = None,
    force: bool = False,
    progress: ProgressFactory = no_progress,
) -> RestoreResult:
    """Fetch a backup from a remote into the local cache, then restore it from there as `guard restore`."""
    cache = fetch_backup(settings, remote, backup_id, progress)
    # A --force safety backup goes to BACKUP_DIR; with none set (a new machine), to the cache.
    own = settings if settings.backup_dir is not None else settings.replace(backup_dir=cache)
    return restore_backup(
        own,
        backup_id,
        target_db=target_db,
        uploads_dir=uploads_dir,
        force=force,
        progress=progress,
        repository=cache,
    )
