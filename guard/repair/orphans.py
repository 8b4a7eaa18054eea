"""`guard repair orphans`: move orphan files past the grace period into quarantine, and back on undo."""

from __future__ import annotations

import os
import posixpath
from collections.abc import Iterator, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass

import guard.backup  # noqa: F401  (first: guard.fs.beneath imports guard.backup.faults, a cycle otherwise)
from guard.checks import CheckContext, files_targeted
from guard.checks import files as files_check
from guard.config.settings import Settings
from guard.db.database import Database
from guard.errors import UnreachableError
from guard.fs import paths
from guard.fs.beneath import open_beneath, open_root
from guard.fs.root import UploadsRoot
from guard.repair import journal
from guard.repair.batching import chunks
from guard.repair.filemove import MoveSkipped, move_file
from guard.repair.journal import Change
from guard.repair.quarantine import Entry, Quarantine

KIND = "orphans"
BATCH_FILES = 200


@dataclass(frozen=True)
class Skipped:
    """A planned file that was not moved, and why."""

    path: str
    reason: str

    def to_json(self) -> dict[str, str]:
        return {"path": self.path, "reason": self.reason}


def plan(settings: Settings) -> list[str]:
    """Return the orphan files past the grace period, as the files check finds them now."""
    result = files_check.run(CheckContext(settings, limit=None))
    if result.error is not None:
        raise UnreachableError(result.error)
    return sorted(f.path for f in result.findings if f.kind == "orphan_file" and f.path is not None)


def subject(relpath: str) -> str:
    return files_targeted.path_subject(relpath)


def apply(
    db: Database, settings: Settings, planned: Sequence[str], quarantine: Quarantine, run_id: str
) -> tuple[list[Entry], list[Skipped]]:
    """Move each planned file that no row refers to even now; record each move and write the manifest."""
    root = UploadsRoot(settings.require_uploads_root())
    quarantine.create()
    moved: list[Entry] = []
    skipped: list[Skipped] = []
    detail = {"uploads_root": str(root.real), "kind": KIND}
    root_fd = open_root(root)
    try:
        for batch in chunks(list(planned), BATCH_FILES):
            # A row may have come to name the file since the plan: asked again right before the move.
            still = {f.path for f in files_targeted.check_paths(db, settings, root, batch).orphans}
            done: list[Entry] = []
            for relpath in batch:
                if relpath not in still:
                    skipped.append(
                        Skipped(relpath, "no longer an orphan (a row refers to it now, or it changed)")
                    )
                    continue
                try:
                    done.append(_move_in(root_fd, relpath, quarantine, run_id))
                except MoveSkipped as exc:
                    skipped.append(Skipped(relpath, str(exc)))
            moved += done
            quarantine.write_manifest(run_id, moved, detail)
            with db.transaction():
                journal.record_changes(
                    db, run_id, [Change(subject(e.path), e.path, _stored(run_id, e.path)) for e in done]
                )
    finally:
        os.close(root_fd)
    return moved, skipped


def _stored(run_id: str, relpath: str) -> str:
    return f"{run_id}/{relpath}"


def _move_in(root_fd: int, relpath: str, quarantine: Quarantine, run_id: str) -> Entry:
    if paths.unsafe_reason(relpath) is not None or paths.normalize(relpath) != relpath:
        raise MoveSkipped("not a plain path under the uploads root")
    folder, name = posixpath.split(relpath)
    with (
        _uploads_folder(root_fd, folder, create=False) as src,
        quarantine.folder_of(run_id, relpath, create=True) as dst,
    ):
        return Entry.of(relpath, move_file(src, name, dst, name))


@contextmanager
def _uploads_folder(root_fd: int, folder: str, *, create: bool) -> Iterator[int]:
    """Open a folder under the uploads root without following links (creating it level by level)."""
    try:
        fd = open_beneath(root_fd, folder)
    except FileNotFoundError:
        if not create:
            raise MoveSkipped("its folder is gone") from None
        fd = _make_beneath(root_fd, folder)
    except OSError as exc:
        raise MoveSkipped(f"its folder cannot be opened without following a link ({exc.strerror})") from None
    try:
        yield fd
    finally:
        os.close(fd)


def _make_beneath(root_fd: int, folder: str) -> int:
    fd = os.dup(root_fd)
    for part in folder.split("/") if folder else ():
        with suppress(FileExistsError):
            os.mkdir(part, 0o755, dir_fd=fd)
        inner = os.open(part, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=fd)
        os.close(fd)
        fd = inner
    return fd


def undo_conflicts(settings: Settings, changes: Sequence[Change], quarantine: Quarantine) -> list[str]:
    """Name each file that cannot go back: something is at its original path, or it left quarantine."""
    root = UploadsRoot(settings.require_uploads_root())
    conflicts = []
    for change in changes:
        original, stored = change.before or "", change.after or ""
        if os.path.lexists(os.path.join(root.real, original)):
            conflicts.append(f"{change.subject} (something is at {paths.printable(original)} now)")
        elif not os.path.isfile(quarantine.folder / stored) or os.path.islink(quarantine.folder / stored):
            conflicts.append(f"{change.subject} (no longer in the quarantine folder; purged?)")
    return conflicts


def undo(settings: Settings, changes: Sequence[Change], quarantine: Quarantine) -> list[Skipped]:
    """Move every file of a run back to its original path; return those that could not go."""
    root = UploadsRoot(settings.require_uploads_root())
    failed: list[Skipped] = []
    root_fd = open_root(root)
    try:
        for change in changes:
            original, stored = change.before or "", change.after or ""
            run_id, _, relpath = stored.partition("/")
            folder, name = posixpath.split(original)
            try:
                with (
                    quarantine.folder_of(run_id, relpath, create=False) as src,
                    _uploads_folder(root_fd, folder, create=True) as dst,
                ):
                    move_file(src, posixpath.basename(relpath), dst, name)
            except (MoveSkipped, OSError) as exc:
                failed.append(Skipped(original, str(exc)))
    finally:
        os.close(root_fd)
    return failed
