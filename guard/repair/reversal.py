"""`guard repair undo ID`: revert one recorded run exactly, or refuse and name what changed since."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from guard.config.settings import Settings
from guard.db.database import Database
from guard.errors import EXIT_FINDINGS, GuardError, UsageError
from guard.plural import plural
from guard.repair import journal, orphans, slugs
from guard.repair.quarantine import Quarantine

SHOWN = 20


class UndoRefused(GuardError):
    """An undo that would not be exact: something changed again since the repair."""

    exit_code = EXIT_FINDINGS


@dataclass(frozen=True)
class Undone:
    """A run put back."""

    run: journal.Run
    reverted: int
    failed: list[orphans.Skipped]


def refuse(run_id: str, conflicts: list[str], why: str) -> UndoRefused:
    shown = ", ".join(conflicts[:SHOWN]) + (
        f" and {len(conflicts) - SHOWN} more" if len(conflicts) > SHOWN else ""
    )
    return UndoRefused(
        f"repair {run_id}: not undone, nothing changed: {plural(len(conflicts), why)}: {shown}"
    )


def unfinished(run_id: str, left: list[orphans.Skipped], back: int) -> UndoRefused:
    """The undo moved some files back but not all: the run stays not undone, the next undo finishes."""
    shown = ", ".join(f"{s.path} ({s.reason})" for s in left[:SHOWN]) + (
        f" and {len(left) - SHOWN} more" if len(left) > SHOWN else ""
    )
    return UndoRefused(
        f"repair {run_id}: not undone yet: {plural(back, 'file')} back, {len(left):,} still in quarantine: "
        f"{shown}; run `guard repair undo {run_id}` again to finish"
    )


def undo_run(settings: Settings, run_id: str) -> Undone:
    """Undo one run: every change reverted, or none (naming the rows or files that changed since)."""
    with Database(settings.require_database_url(), application_name="guard-repair") as db:
        run = journal.find_run(db, run_id)
        if run.undone_at is not None:
            raise UsageError(f"repair {run_id} was already undone at {run.undone_at:%Y-%m-%d %H:%M:%S %Z}")
        if not run.undoable:
            restore = f"restore its backup {run.backup_id}" if run.backup_id else "it took no backup"
            raise UsageError(f"repair {run_id} ({run.kind}) cannot be undone change by change; {restore}")
        changes = journal.changes_of(db, run_id)
        if run.kind == slugs.KIND:
            outcome = slugs.undo(db, settings, run_id, changes)
            if outcome.conflicts:
                raise refuse(run_id, outcome.conflicts, "row changed again since")
            if outcome.refused is not None:
                raise UndoRefused(f"repair {run_id}: not undone, nothing changed: {outcome.refused}")
            raced = [
                orphans.Skipped(s, "the app wrote it during the undo; left as the app wrote it")
                for s in outcome.raced
            ]
            return Undone(run, len(changes) - len(raced), raced)
        if run.kind == orphans.KIND:
            quarantine = Quarantine(Path(str(run.detail.get("quarantine", ""))))
            way = orphans.undo_conflicts(settings, run_id, changes, quarantine)
            if way.conflicts:
                raise refuse(run_id, way.conflicts, "file cannot go back")
            left = orphans.undo(run_id, settings, way.to_move, quarantine)
            if left:
                raise unfinished(run_id, left, len(changes) - len(left))
            journal.mark_undone(db, run_id)
            return Undone(run, len(changes), [])
        raise UsageError(f"repair {run_id}: no undo for kind {run.kind!r}")
