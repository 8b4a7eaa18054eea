"""The `guard repair` commands: a plan by default; --apply changes (backed up, batched, recorded)."""

from __future__ import annotations

import argparse
import json
import sys
from collections import Counter
from pathlib import Path
from typing import TYPE_CHECKING, Any

from guard.cli.bars import terminal_progress
from guard.config.settings import Settings
from guard.db.database import Database
from guard.errors import EXIT_FINDINGS, EXIT_OK, UsageError
from guard.fs.paths import printable
from guard.plural import plural

if TYPE_CHECKING:
    from guard.repair.slugplan import SlugChange

    Subparsers = argparse._SubParsersAction[argparse.ArgumentParser]
FORMATTER = argparse.RawDescriptionHelpFormatter
SHOWN = 20
APP = "guard-repair"
EPILOG = """every repair prints its plan and changes nothing without --apply; with --apply it first
takes a guard backup (BACKUP_DIR, or --no-backup), changes rows in small transactions under
lock_timeout, records each change under the repair id it prints, and `guard repair undo ID` reverts it.

exit codes: 0 nothing to repair or done, 1 a plan with changes (or an undo refused),
2 usage or configuration error, 3 the database or a folder cannot be reached"""


def register(commands: Subparsers) -> None:
    """Add `repair` with slugs, orphans, list and undo."""
    repair = commands.add_parser(
        "repair",
        help="repair broken slugs or quarantine orphan files; list and undo repairs",
        description="One command per kind of damage: `slugs` rewrites slugs that break a rule, "
        "`orphans` moves orphan files into a quarantine folder; `list` shows the runs, `undo ID` "
        "reverts one.",
        epilog="examples:\n  guard repair slugs\n  guard repair slugs --apply --redirects redirects.csv\n"
        "  guard repair orphans --quarantine /srv/quarantine --apply\n"
        "  guard repair orphans --quarantine /srv/quarantine --purge-quarantine --older-than 30d\n"
        "  guard repair list\n  guard repair undo 20261201T130501Z-slugs-1a2b3c\n\n" + EPILOG,
        formatter_class=FORMATTER,
    )
    kinds = repair.add_subparsers(dest="repair", required=True, metavar="KIND")
    slugs = kinds.add_parser(
        "slugs",
        help="give every ad whose slug is NULL, blank, malformed or shared a valid unique one",
        description="Ads whose slug fails the required, format or unique rule get slug_template "
        "('{title}-{id}': the transliterated title, then the id; 'ad-<id>' when the title leaves "
        "nothing). Of ads sharing a valid slug the lowest id keeps it. A valid unique slug is never "
        "rewritten.",
        epilog=EPILOG,
        formatter_class=FORMATTER,
    )
    _apply_flags(slugs)
    slugs.add_argument(
        "--redirects",
        type=Path,
        metavar="FILE",
        help="with --apply: write the old -> new pairs of malformed and duplicate slugs (live links) "
        "to FILE (.csv or .json) for the app's redirect table",
    )
    slugs.set_defaults(handler=handle_slugs)
    orphans = kinds.add_parser(
        "orphans",
        help="move orphan files past ORPHAN_GRACE into a quarantine folder (never deleted)",
        description="Move each orphan file (no row refers to it, older than ORPHAN_GRACE) into "
        "DIR/<repair id>/ with a manifest: renamed on one filesystem, copied, flushed, verified and "
        "then unlinked across filesystems. Right before each move guard asks again whether a row "
        "refers to the file. --purge-quarantine --older-than AGE is the only delete.",
        epilog=EPILOG,
        formatter_class=FORMATTER,
    )
    orphans.add_argument(
        "--quarantine", type=Path, required=True, metavar="DIR", help="outside the uploads root"
    )
    _apply_flags(orphans)
    orphans.add_argument("--orphan-grace", type=int, metavar="SECONDS", help="default ORPHAN_GRACE (600)")
    orphans.add_argument(
        "--purge-quarantine", action="store_true", help="delete quarantined runs older than --older-than"
    )
    orphans.add_argument("--older-than", metavar="AGE", help="with --purge-quarantine: 30d, 12h, 3600s")
    orphans.set_defaults(handler=handle_orphans)
    listing = kinds.add_parser(
        "list", help="the repair runs, newest first", epilog=EPILOG, formatter_class=FORMATTER
    )
    _json_flag(listing)
    listing.set_defaults(handler=handle_list)
    undo = kinds.add_parser(
        "undo",
        help="revert one repair run exactly",
        description="Revert every change of one run, or nothing: a row or file that changed again "
        "since the repair is named and the undo refused.",
        epilog=EPILOG,
        formatter_class=FORMATTER,
    )
    undo.add_argument("id", metavar="ID", help="as `guard repair list` shows it")
    _json_flag(undo)
    undo.set_defaults(handler=handle_undo)


def _json_flag(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true", help="print the plan or the result as one JSON object")


def _apply_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--apply", action="store_true", help="make the changes (default: print the plan only)"
    )
    parser.add_argument("--no-backup", action="store_true", help="with --apply: take no backup first")
    _json_flag(parser)


def emit(document: dict[str, Any], human: str, json_mode: bool) -> None:
    if json_mode:
        sys.stdout.write(json.dumps(document, ensure_ascii=False, default=str) + "\n")
    else:
        sys.stdout.write(human)


def _more(count: int) -> str:
    return f"  ... and {count - SHOWN:,} more\n" if count > SHOWN else ""


def handle_slugs(args: argparse.Namespace, settings: Settings) -> int:
    from guard.repair import journal, slugs
    from guard.repair.rowfile import check_path
    from guard.repair.safeguard import backup_first

    if args.redirects is not None:
        if not args.apply:
            raise UsageError("--redirects goes with --apply (the pairs written are the ones applied)")
        check_path(args.redirects, "--redirects")
    with Database(settings.require_database_url(), application_name=APP) as db:
        planned = slugs.plan(db, settings)
        if not args.apply or not planned:
            return _slug_plan(planned, args.json, args.apply)
        backup_id = backup_first(settings, args.no_backup, terminal_progress())
        run_id = journal.open_run(db, slugs.KIND, backup_id, detail={"planned": len(planned)})
        done = slugs.apply(db, settings, planned, run_id)
    if args.redirects is not None:
        _write_redirects(args.redirects, done)
    document = {
        "ok": True,
        "kind": slugs.KIND,
        "applied": True,
        "repair_id": run_id,
        "backup_id": backup_id,
        "changed": len(done),
        "skipped": len(planned) - len(done),
        "changes": [c.to_json() for c in done],
        "redirects": None if args.redirects is None else str(args.redirects),
    }
    human = _backup_line(backup_id) + (
        f"repair {run_id}: {plural(len(done), 'slug')} rewritten ({_reasons(done)})"
        f"{_skipped(len(planned) - len(done))}; undo with `guard repair undo {run_id}`\n"
    )
    if args.redirects is not None:
        pairs = sum(1 for c in done if c.redirect)
        human += (
            f"redirects: {plural(pairs, 'old -> new pair')} written to {printable(str(args.redirects))}\n"
        )
    emit(document, human, args.json)
    return EXIT_OK


def _slug_plan(planned: list[SlugChange], json_mode: bool, apply: bool) -> int:
    document = {
        "ok": True,
        "kind": "slugs",
        "applied": False,
        "count": len(planned),
        "changes": [c.to_json() for c in planned],
    }
    if not planned:
        emit(document, "repair slugs: nothing to repair (every slug passes its rules)\n", json_mode)
        return EXIT_OK
    human = (
        f"plan: {plural(len(planned), 'slug')} to rewrite ({_reasons(planned)}); "
        "nothing changed without --apply\n"
    )
    for c in planned[:SHOWN]:
        old = "NULL" if c.old is None else repr(c.old)
        human += f"  ads:{c.key:<10} {printable(old)} -> {c.new!r}  ({c.reason})\n"
    human += _more(len(planned))
    emit(document, human, json_mode)
    return EXIT_FINDINGS


def _reasons(changes: list[SlugChange]) -> str:
    counts = Counter(c.reason for c in changes)
    return ", ".join(f"{n:,} {reason}" for reason, n in sorted(counts.items())) or "none"


def _skipped(count: int) -> str:
    return f", {count:,} left alone (the app changed them since the plan)" if count else ""


def _backup_line(backup_id: str | None) -> str:
    return f"backup {backup_id} taken first\n" if backup_id else "no backup taken (--no-backup)\n"


def _write_redirects(path: Path, done: list[SlugChange]) -> None:
    from guard.repair.rowfile import write_rows

    rows = [{"id": c.key, "old": c.old, "new": c.new, "reason": c.reason} for c in done if c.redirect]
    write_rows(path, ("old", "new", "id", "reason"), rows)


def handle_orphans(args: argparse.Namespace, settings: Settings) -> int:
    from guard.fs.root import UploadsRoot
    from guard.repair.quarantine import Quarantine, parse_age

    if args.orphan_grace is not None:
        if args.orphan_grace < 0:
            raise UsageError("--orphan-grace must be 0 or more")
        settings = settings.replace(orphan_grace=args.orphan_grace)
    quarantine = Quarantine(args.quarantine, UploadsRoot(settings.require_uploads_root()))
    if args.purge_quarantine:
        if args.older_than is None:
            raise UsageError("--purge-quarantine needs --older-than AGE (such as 30d)")
        return _purge(quarantine, parse_age(args.older_than), args.json)
    if args.older_than is not None:
        raise UsageError("--older-than goes with --purge-quarantine")
    return _orphans(settings, quarantine, args)


def _purge(quarantine: Any, older_than_s: int, json_mode: bool) -> int:
    purged = quarantine.purge(older_than_s)
    files = sum(n for _, n in purged)
    document = {"ok": True, "purged": [{"run": r, "files": n} for r, n in purged], "files": files}
    human = "".join(f"purged {r} ({plural(n, 'file')})\n" for r, n in purged)
    human += f"{plural(len(purged), 'quarantined run')} deleted, {plural(files, 'file')}\n"
    emit(document, human, json_mode)
    return EXIT_OK


def _orphans(settings: Settings, quarantine: Any, args: argparse.Namespace) -> int:
    from guard.repair import journal, orphans
    from guard.repair.safeguard import backup_first

    planned = orphans.plan(settings)
    if not args.apply or not planned:
        document = {
            "ok": True,
            "kind": orphans.KIND,
            "applied": False,
            "count": len(planned),
            "files": planned,
        }
        if not planned:
            emit(
                document,
                "repair orphans: nothing to repair (no orphan file past the grace period)\n",
                args.json,
            )
            return EXIT_OK
        human = (
            f"plan: {plural(len(planned), 'orphan file')} to move into {quarantine.folder}; "
            "nothing changed without --apply\n"
        )
        human += "".join(f"  {printable(p)}\n" for p in planned[:SHOWN]) + _more(len(planned))
        emit(document, human, args.json)
        return EXIT_FINDINGS
    backup_id = backup_first(settings, args.no_backup, terminal_progress())
    with Database(settings.require_database_url(), application_name=APP) as db:
        detail = {"quarantine": str(quarantine.folder), "planned": len(planned)}
        run_id = journal.open_run(db, orphans.KIND, backup_id, detail=detail)
        moved, skipped = orphans.apply(db, settings, planned, quarantine, run_id)
    copied = sum(1 for e in moved if e.copied)
    document = {
        "ok": True,
        "kind": orphans.KIND,
        "applied": True,
        "repair_id": run_id,
        "backup_id": backup_id,
        "moved": len(moved),
        "copied_across_filesystems": copied,
        "skipped": [s.to_json() for s in skipped],
        "manifest": str(quarantine.run_folder(run_id) / "manifest.json"),
    }
    human = _backup_line(backup_id) + (
        f"repair {run_id}: {plural(len(moved), 'file')} moved into {quarantine.run_folder(run_id)}"
        f"{f' ({copied:,} copied across filesystems)' if copied else ''}, {len(skipped):,} left in place; "
        f"undo with `guard repair undo {run_id}`\n"
    )
    human += "".join(f"  left {printable(s.path)}: {s.reason}\n" for s in skipped[:SHOWN])
    emit(document, human, args.json)
    return EXIT_OK


def handle_list(args: argparse.Namespace, settings: Settings) -> int:
    from guard.repair import journal

    with Database(settings.require_database_url(), application_name=APP) as db:
        runs = journal.list_runs(db)
    human = f"{'ID':<36}{'KIND':<10}{'WHEN':<22}{'CHANGES':>9}  STATE\n"
    for run in runs:
        state = (
            "undone" if run.undone_at else ("applied" if run.undoable else "applied (undo: restore backup)")
        )
        human += f"{run.id:<36}{run.kind:<10}{run.started_at:%Y-%m-%d %H:%M:%S}  {run.changes:>9,}  {state}\n"
    emit(
        {"ok": True, "runs": [r.to_json() for r in runs]}, human if runs else "no repair has run\n", args.json
    )
    return EXIT_OK


def handle_undo(args: argparse.Namespace, settings: Settings) -> int:
    from guard.repair.reversal import undo_run

    undone = undo_run(settings, args.id)
    document = {
        "ok": not undone.failed,
        "repair_id": undone.run.id,
        "kind": undone.run.kind,
        "reverted": undone.reverted,
        "failed": [f.to_json() for f in undone.failed],
    }
    human = f"repair {undone.run.id}: undone, {plural(undone.reverted, 'change')} reverted\n"
    human += "".join(f"  not put back {printable(f.path)}: {f.reason}\n" for f in undone.failed)
    emit(document, human, args.json)
    return EXIT_OK if not undone.failed else EXIT_FINDINGS
