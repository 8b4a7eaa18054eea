"""`guard repair orphans`: move orphan files past the grace period into quarantine, and back on undo."""

from __future__ import annotations

import os
import posixpath
import stat
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
from guard.repair.filemove import MoveSkipped, digest_at, move_file
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


def ledger_reason(run_id: str, change: Change) -> str | None:
    """Why a file's paths as the ledger holds them must not be followed; None when they are plain.

    The same rules as the files check (no absolute path, no `..`, no NUL or backslash), and the
    quarantine path must be the run's own twin of the original: `<run id>/<original>`.
    """
    original, stored = change.before or "", change.after or ""
    reason = paths.unsafe_reason(original)
    if reason is None and (not original or paths.normalize(original) != original):
        reason = "is not a plain path under the uploads root"
    if reason is not None:
        return f"the ledger's path {paths.printable(original)!r} {reason}; refused, not followed"
    if stored != _stored(run_id, original) or paths.unsafe_reason(stored) is not None:
        return f"the ledger's quarantine path {paths.printable(stored)!r} is not {run_id}/<its path>; refused"
    return None


@dataclass(frozen=True)
class WayBack:
    """Where each file of a run stands before an undo: to move, already back, or why it cannot go."""

    to_move: list[Change]
    back: list[Change]
    conflicts: list[str]


def undo_conflicts(
    settings: Settings, run_id: str, changes: Sequence[Change], quarantine: Quarantine
) -> WayBack:
    """Sort a run's files: in quarantine with nothing in the way, already back, or a conflict (named).

    A file counts as back when its quarantine copy is gone and the file at its original path has
    the content the manifest recorded (a first undo that stopped part way moved it back).
    """
    root = UploadsRoot(settings.require_uploads_root())
    sums = {
        str(f.get("path")): str(f.get("sha256"))
        for f in quarantine.read_manifest(run_id).get("files", [])
        if isinstance(f, dict)
    }
    way = WayBack([], [], [])
    root_fd = open_root(root)
    try:
        for change in changes:
            reason = ledger_reason(run_id, change)
            if reason is not None:
                way.conflicts.append(f"{change.subject} ({reason})")
                continue
            original = change.before or ""
            at_home = _digest_beneath(root_fd, original)
            in_quarantine = quarantine.holds(run_id, original)
            if isinstance(at_home, str) and not in_quarantine and sums.get(original) == at_home:
                way.back.append(change)
            elif at_home is not None:
                shown = paths.printable(original)
                way.conflicts.append(f"{change.subject} (something is at {shown} now)")
            elif not in_quarantine:
                way.conflicts.append(f"{change.subject} (no longer in the quarantine folder; purged?)")
            else:
                way.to_move.append(change)
    finally:
        os.close(root_fd)
    return way


def _digest_beneath(root_fd: int, relpath: str) -> str | bool | None:
    """The SHA-256 of the regular file at relpath (opened beneath the root, no link followed);
    None when nothing is there (its folder may be absent), True when something else stands in the way."""
    folder, name = posixpath.split(relpath)
    try:
        fd = open_beneath(root_fd, folder)
    except FileNotFoundError:
        return None
    except OSError:
        return True  # a file or a link where a folder was: never followed
    try:
        st = os.stat(name, dir_fd=fd, follow_symlinks=False)
        if not stat.S_ISREG(st.st_mode):
            return True
        return digest_at(fd, name, st)
    except FileNotFoundError:
        return None
    except (OSError, MoveSkipped):
        return True
    finally:
        os.close(fd)


def undo(run_id: str, settings: Settings, changes: Sequence[Change], quarantine: Quarantine) -> list[Skipped]:
    """Move each file back to its original path; return those that could not go (still in quarantine)."""
    root = UploadsRoot(settings.require_uploads_root())
    failed: list[Skipped] = []
    root_fd = open_root(root)
    try:
        for change in changes:
            original = change.before or ""
            if ledger_reason(run_id, change) is not None:
                raise AssertionError("undo_conflicts refuses a bad ledger path first")
            folder, name = posixpath.split(original)
            try:
                with (
                    quarantine.folder_of(run_id, original, create=False) as src,
                    _uploads_folder(root_fd, folder, create=True) as dst,
                ):
                    move_file(src, name, dst, name)
            except (MoveSkipped, OSError) as exc:
                failed.append(Skipped(original, str(exc)))
    finally:
        os.close(root_fd)
    return failed
