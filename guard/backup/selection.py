"""Pick one source's backups, newest first: the walk the drill, `restore files` and the stat cache share."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

from guard.backup.repo.manifest import Manifest
from guard.backup.repo.repository import Repository
from guard.backup.source import BACKUP, Wanted
from guard.errors import GuardError

ANY_PURPOSE: tuple[str, ...] = ()


@dataclass(frozen=True)
class Candidate:
    """A published backup: its manifest, or (None) why it cannot be read, so its source is unknown."""

    backup_id: str
    manifest: Manifest | None
    problem: str | None = None


def newest_first(
    repo: Repository, wanted: Wanted | None, purposes: tuple[str, ...] = (BACKUP,)
) -> Iterator[Candidate]:
    """Yield the wanted source's backups (None: every source's) of those purposes, newest first.

    An unreadable backup is yielded too, wherever it falls: it may be the wanted source's, and a
    caller judging "the newest" must not step over it as if it were not there. ANY_PURPOSE: all.
    """
    for backup_id in reversed(repo.ids()):
        try:
            manifest = repo.load(backup_id)
        except GuardError as exc:
            yield Candidate(backup_id, None, str(exc))
            continue
        if wanted is not None and not wanted.matches(manifest.source):
            continue
        if purposes and manifest.purpose not in purposes:
            continue
        yield Candidate(backup_id, manifest)


def readable(candidates: Iterator[Candidate]) -> Iterator[Manifest]:
    """Keep the candidates whose manifest could be read."""
    return (c.manifest for c in candidates if c.manifest is not None)


def others(repo: Repository, wanted: Wanted) -> list[str]:
    """Name the other sources the repository holds backups of, for a message that found none."""
    labels: set[str] = set()
    for candidate in newest_first(repo, None, ANY_PURPOSE):
        source = candidate.manifest.source if candidate.manifest is not None else None
        if source is not None and not wanted.matches(source):
            labels.add(source.label)
    return sorted(labels)
