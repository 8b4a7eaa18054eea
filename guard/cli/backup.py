"""The `guard backup` and `guard restore` commands: thin argument handling over guard.backup."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from guard.cli.bars import terminal_progress
from guard.config.settings import Settings
from guard.errors import EXIT_FINDINGS, EXIT_OK, UsageError
from guard.fs.paths import printable
from guard.plural import plural

if TYPE_CHECKING:  # the class is not subscriptable at run time on Python 3.11
    from guard.backup.prune import PruneResult
    from guard.backup.restorer import Replacement
    from guard.backup.source import Wanted

    Subparsers = argparse._SubParsersAction[argparse.ArgumentParser]
FORMATTER = argparse.RawDescriptionHelpFormatter


def register(commands: Subparsers) -> None:
    """Add `backup` (with list, verify, prune) and `restore` (ID, files --missing, drill)."""
    _add_backup(commands)
    _add_restore(commands)


def _json_flag(parser: argparse.ArgumentParser, *, nested: bool = False) -> None:
    # A nested parser must not reset a --json given before its name, hence SUPPRESS.
    parser.add_argument(
        "--json",
        action="store_true",
        default=argparse.SUPPRESS if nested else False,
        help="print exactly one JSON object on stdout",
    )


def _add_backup(commands: Subparsers) -> None:
    backup = commands.add_parser(
        "backup",
        help="take, list, verify or prune consistent backups (BACKUP_DIR)",
        description="Take one backup: a pg_dump of one REPEATABLE READ snapshot, the uploads its rows "
        "refer to (plus every file under SCAN_DIRS), the migration state and a checksummed manifest.",
        epilog="examples:\n  guard backup\n  guard backup list\n  guard backup verify --read-data\n"
        "  guard backup prune --dry-run\n"
        "  guard backup prune --keep-daily 7 --keep-weekly 4 --keep-monthly 6\n"
        "  guard backup copy --to offsite:guard\n  guard backup verify --remote offsite:guard --read-data",
        formatter_class=FORMATTER,
    )
    _json_flag(backup)
    backup.set_defaults(handler=handle_backup, action=None)
    actions = backup.add_subparsers(dest="action", metavar="ACTION")
    listing = actions.add_parser("list", help="the complete backups, oldest first")
    _remote_flag(listing, "list the backups on this rclone remote instead")
    _json_flag(listing, nested=True)
    verify = actions.add_parser("verify", help="check manifests, dumps and objects")
    _remote_flag(verify, "verify the copy on this rclone remote (--read-data: fetch and re-hash it all)")
    verify.add_argument("id", nargs="?", help="one backup (default: all)")
    verify.add_argument("--read-data", action="store_true", help="also re-hash every object")
    _json_flag(verify, nested=True)
    prune = actions.add_parser(
        "prune",
        help="forget old backups with restic's keep-* meaning",
        description="Keep the newest backup of each of the last N days, ISO weeks and months that have "
        "backups (and always each source's newest verified backup and any backup that cannot be read), "
        "remove the rest, then delete the objects no remaining backup names. --dry-run says what it "
        "would keep and remove, and why, and changes nothing.",
        formatter_class=FORMATTER,
    )
    for unit, setting, default in (
        ("daily", "KEEP_DAILY", 7),
        ("weekly", "KEEP_WEEKLY", 4),
        ("monthly", "KEEP_MONTHLY", 6),
    ):
        prune.add_argument(
            f"--keep-{unit}",
            type=int,
            default=None,
            metavar="N",
            help=f"keep the newest backup of each of the last N {unit} periods "
            f"(default: the {setting} setting, {default} unless set)",
        )
    prune.add_argument(
        "--dry-run",
        action="store_true",
        help="print what would be kept and removed, and why; remove nothing",
    )
    sources = prune.add_mutually_exclusive_group()
    _source_flag(sources, "prune that database's backups (default: DATABASE_URL's)")
    sources.add_argument(
        "--all-sources", action="store_true", help="prune every database's backups, each on its own"
    )
    _remote_flag(
        prune, "prune the backups on this rclone remote instead (same keep rules; waits while a copy runs)"
    )
    _json_flag(prune, nested=True)
    from guard.cli.remotes import add_copy

    add_copy(actions, _json_flag)


def _remote_flag(parser: argparse.ArgumentParser, what: str) -> None:
    parser.add_argument("--remote", metavar="REMOTE", help=f"{what}; an rclone path such as offsite:guard")


def _source_flag(parser: argparse.ArgumentParser | argparse._MutuallyExclusiveGroup, what: str) -> None:
    parser.add_argument("--source", metavar="NAME[@SYSID]", help=f"{what}; as `backup list` shows it")


def _add_restore(commands: Subparsers) -> None:
    restore = commands.add_parser(
        "restore",
        help="restore a backup, put back missing files, or run a restore drill",
        description="`guard restore ID` verifies the backup and restores its dump and files together "
        "into a NEW scratch database and folder (or --target-db/--uploads-dir; a non-empty target "
        "needs --force and is backed up first; an existing database is replaced only once confirmed on a "
        "terminal or with --yes), then runs every check on the restored pair.\n"
        "`guard restore files --missing` puts back each missing_file from the newest backup that has "
        "it.\n`guard restore drill` restores the newest backup into scratch, checks it, cleans up.\n"
        "Both use only the configured database's own backups (never a restore's safety backup) "
        "unless --source names another.",
        epilog="examples:\n  guard restore 20250101T020000Z-1a2b3c\n"
        "  guard restore 20250101T020000Z-1a2b3c --target-db shop_copy --uploads-dir /srv/copy\n"
        "  guard restore files --missing\n  guard restore drill --json\n"
        "  guard restore 20250101T020000Z-1a2b3c --from offsite:guard",
        formatter_class=FORMATTER,
    )
    restore.add_argument("what", metavar="ID|files|drill")
    restore.add_argument("--target-db", metavar="NAME", help="database to restore into")
    restore.add_argument("--uploads-dir", type=Path, metavar="DIR", help="folder to restore into")
    restore.add_argument(
        "--force", action="store_true", help="replace a non-empty target (after backing it up)"
    )
    restore.add_argument(
        "--yes",
        action="store_true",
        help="replace an existing --target-db without asking (it is dropped: its sessions end)",
    )
    restore.add_argument("--missing", action="store_true", help="with `files`: the missing files")
    restore.add_argument(
        "--unrecoverable",
        type=Path,
        metavar="FILE",
        help="with `files --missing`: list the rows whose file no backup has in FILE (.csv or .json) "
        "for the app team; those rows are never deleted",
    )
    restore.add_argument(
        "--from",
        dest="from_remote",
        metavar="REMOTE",
        help="fetch the backup from this rclone remote first (only what it needs, into a private cache)",
    )
    _source_flag(restore, "with `files` or `drill`: use that database's backups (default: DATABASE_URL's)")
    _json_flag(restore)
    restore.set_defaults(handler=handle_restore)


def emit(document: dict[str, Any], human: str, json_mode: bool) -> None:
    if json_mode:
        sys.stdout.write(json.dumps(document, ensure_ascii=False) + "\n")
    else:
        sys.stdout.write(human)


def handle_backup(args: argparse.Namespace, settings: Settings) -> int:
    if args.action == "copy" or getattr(args, "remote", None) is not None:
        from guard.cli.remotes import handle_remote

        return handle_remote(args, settings)
    if args.action == "list":
        return _list(settings, args.json)
    if args.action == "verify":
        return _verify(settings, args.id, args.read_data, args.json)
    if args.action == "prune":
        return _prune(settings, args, args.json)
    return _backup(settings, args.json)


def _backup(settings: Settings, json_mode: bool) -> int:
    from guard.backup import run_backup

    result = run_backup(settings, terminal_progress())
    counts = result.manifest.counts
    findings = result.findings()
    document = {
        "ok": result.ok,
        "id": result.id,
        "manifest": str(result.manifest_path),
        "counts": counts,
        "consistent": result.ok,
        "findings": [f.to_json() for f in findings],
        "damage": list(result.damage),
        "walk": result.walk,
    }
    human = (
        f"backup {result.id}: {plural(counts['files'], 'file')} ({plural(counts['bytes'], 'byte')}), "
        f"{plural(counts['new_objects'], 'new object')}, dump {plural(result.manifest.dump.size, 'byte')}\n"
        f"manifest {result.manifest_path}\n"
    )
    human += "".join(f"store damage: {note}\n" for note in result.damage)
    if result.walk != "compiled":
        human += "note: the walk took its pure-Python page stat (guard was installed without a C compiler)\n"
    if findings:
        human += f"NOT CONSISTENT: not in the backup: {plural(len(findings), 'referenced path')}:\n"
        human += "".join(
            f"  {printable(f.subject)}  {printable(f.path or '')}  {f.message}\n" for f in findings[:20]
        )
    emit(document, human, json_mode)
    return EXIT_OK if result.ok else EXIT_FINDINGS


def _list(settings: Settings, json_mode: bool) -> int:
    from guard.backup.builder import require_backup_dir
    from guard.backup.repo.manifest import Manifest
    from guard.backup.repo.repository import Repository

    repo = Repository.open(require_backup_dir(settings), create=False)
    rows: list[dict[str, Any]] = []
    for backup_id, loaded in repo.manifests():
        if isinstance(loaded, Manifest):
            rows.append(
                {
                    "id": backup_id,
                    "complete": True,
                    "started_at": loaded.started_at,
                    "source": None if loaded.source is None else loaded.source.to_json(),
                    "purpose": loaded.purpose,
                    "files": loaded.counts.get("files"),
                    "bytes": loaded.counts.get("bytes"),
                    "dump_bytes": loaded.dump.size,
                    "consistent": loaded.consistent,
                    "missing": len(loaded.missing),
                }
            )
        else:
            rows.append({"id": backup_id, "complete": False, "problem": str(loaded)})
    human = f"{'ID':<25}{'FILES':>10}{'BYTES':>16}{'MISSING':>9}  {'SOURCE':<40}  STATUS\n"
    for row in rows:
        status = "ok" if row["complete"] else f"DAMAGED: {row['problem']}"
        if row.get("purpose", "backup") != "backup":
            status += f" ({row['purpose']})"
        human += (
            f"{row['id']:<25}{row.get('files') or 0:>10,}{row.get('bytes') or 0:>16,}"
            f"{row.get('missing') or 0:>9,}  {printable(_source_text(row)):<40}  {status}\n"
        )
    emit({"ok": all(r["complete"] for r in rows), "backups": rows}, human, json_mode)
    return EXIT_OK if all(r["complete"] for r in rows) else EXIT_FINDINGS


def _source_text(row: dict[str, Any]) -> str:
    """Name a listed backup's source: `name@system_identifier (oid N)`, `?` when unknown."""
    from guard.backup.source import Source

    if not row["complete"] or row["source"] is None:
        return "?"
    source = Source.from_json(row["source"])
    return source.label + (f" (oid {source.oid})" if source.oid is not None else "")


def _wanted(text: str | None) -> Wanted | None:
    """Read --source into a guard.backup.source.Wanted, or None for the configured database."""
    from guard.backup.source import Wanted

    return None if text is None else Wanted.parse(text)


def _verify(settings: Settings, backup_id: str | None, read_data: bool, json_mode: bool) -> int:
    from guard.backup.builder import require_backup_dir
    from guard.backup.repo.repository import LOCK_WAIT_S, Repository, check_backup_id
    from guard.backup.verify import exposure, verify_all, verify_backup

    repo = Repository.open(require_backup_dir(settings), create=False)
    with repo.lock(exclusive=False, wait_s=LOCK_WAIT_S):
        if backup_id is not None:
            results = [
                verify_backup(
                    repo, check_backup_id(backup_id), read_data=read_data, progress=terminal_progress()
                )
            ]
        else:
            results = verify_all(repo, read_data=read_data, progress=terminal_progress())
    ok = all(r.ok for r in results)
    warning = exposure(repo)
    if warning is not None:  # a warning, not a finding: every backup may still be whole
        sys.stderr.write(f"guard: warning: {warning}\n")
    human = "".join(
        f"{r.backup_id}  {'ok' if r.ok else 'FAILED'}  {plural(r.objects, 'object')}"
        f"{' re-hashed' if read_data else ''}\n" + "".join(f"  {e}\n" for e in r.examples)
        for r in results
    )
    emit(
        {
            "ok": ok,
            "read_data": read_data,
            "backups": [r.to_json() for r in results],
            "warnings": [] if warning is None else [warning],
        },
        human or "no backups\n",
        json_mode,
    )
    return EXIT_OK if ok else EXIT_FINDINGS


def _prune(settings: Settings, args: argparse.Namespace, json_mode: bool) -> int:
    from guard.backup import run_prune

    result = run_prune(
        settings,
        args.keep_daily,
        args.keep_weekly,
        args.keep_monthly,
        source=_wanted(args.source),
        all_sources=args.all_sources,
        dry_run=args.dry_run,
    )
    emit(result.to_json(), _prune_text(result), json_mode)
    return EXIT_OK if result.ok else EXIT_FINDINGS


def _prune_text(result: PruneResult) -> str:
    """Each backup kept (with its reasons) or removed, oldest first, then what was (or would be) freed."""
    from guard.backup.prune import NO_RULE

    policy = result.policy
    rules = f"--keep-daily {policy.daily} --keep-weekly {policy.weekly} --keep-monthly {policy.monthly}"
    human = f"dry run ({rules}): nothing is removed\n" if result.dry_run else ""
    verdicts = {i: f"keep    {i}  ({', '.join(r)})" for i, r in result.kept.items()}
    removing = "remove " if result.dry_run else "removed"
    verdicts.update({i: f"{removing} {i}  ({NO_RULE})" for i in result.removed})
    human += "".join(f"{verdicts[i]}\n" for i in sorted(verdicts))
    objects, size = plural(result.objects_removed, "object"), plural(result.bytes_freed, "byte")
    if result.dry_run:
        human += f"would delete {objects}, freeing {size}\n"
    else:
        human += f"{objects} deleted, {size} freed\n"
    human += "".join(f"PROBLEM: {printable(p)}\n" for p in result.problems)
    human += "".join(f"note: {n}\n" for n in result.notes)
    return human


def handle_restore(args: argparse.Namespace, settings: Settings) -> int:
    if args.from_remote is not None and args.what in ("files", "drill"):
        raise UsageError("--from goes with `guard restore ID`")
    if args.what == "files":
        if not args.missing:
            raise UsageError("`guard restore files` needs --missing")
        return _restore_missing(settings, args.json, args.source, args.unrecoverable)
    if args.missing:
        raise UsageError("--missing goes with `guard restore files`")
    if args.unrecoverable is not None:
        raise UsageError("--unrecoverable goes with `guard restore files --missing`")
    if args.what == "drill":
        return _drill(settings, args.json, args.source)
    if args.source is not None:
        raise UsageError("--source goes with `guard restore files --missing` or `guard restore drill`")
    return _restore(settings, args)


def _restore_call(settings: Settings, args: argparse.Namespace) -> Any:
    """Restore from BACKUP_DIR, or (--from) from a remote through the local cache."""
    if args.from_remote is None:
        from guard.backup.restorer import restore_backup

        return restore_backup(
            settings,
            args.what,
            target_db=args.target_db,
            uploads_dir=args.uploads_dir,
            force=args.force,
            progress=terminal_progress(),
        )
    from guard.backup.remote.offsite import restore_from_remote

    return restore_from_remote(
        settings,
        args.from_remote,
        args.what,
        target_db=args.target_db,
        uploads_dir=args.uploads_dir,
        force=args.force,
        progress=terminal_progress(),
    )


def _restore(settings: Settings, args: argparse.Namespace) -> int:
    from guard.cli.tables import write_human
    from guard.findings.report import as_json, exit_code

    if args.target_db is not None and not args.yes:
        _confirm_replacement(settings, args.target_db, args.force)
    result = _restore_call(settings, args)
    if args.json:
        sys.stdout.write(as_json(result.checks, {"restore": result.to_json()}) + "\n")
    else:
        sys.stdout.write(
            f"restored {result.backup_id} into database {result.target_db} and "
            f"{result.uploads_dir} ({plural(result.files, 'file')}) in "
            f"{result.duration_s:.1f}s\n"
        )
        if result.replaced is not None:
            sys.stdout.write(_replaced_text(result.replaced))
        if result.safety_backup:
            sys.stdout.write(f"the previous content was backed up first as {result.safety_backup}\n")
        for note in result.notes:
            sys.stdout.write(f"note: {note}\n")
        for skipped in result.skipped:
            sys.stdout.write(f"skipped check {skipped}\n")
        write_human(result.checks, sys.stdout)
    return exit_code(result.checks)


def _sessions(count: int) -> str:
    return plural(count, "open session")


def _confirm_replacement(settings: Settings, db_name: str, force: bool) -> None:
    """Ask on a terminal before an existing database is dropped; refuse without one (use --yes)."""
    from guard.backup.restorer import live_target

    found = live_target(settings, db_name)
    if found is None:
        return
    props, sessions, occupied = found
    if occupied and not force:
        return  # the restore itself refuses, naming --force
    what = (
        f"database {db_name} exists: the restore drops and replaces it, ending its {_sessions(sessions)}; "
        f"carried over: {props.summary()}; not kept: its oid"
    )
    if not sys.stdin.isatty():
        raise UsageError(f"{what}; pass --yes to go on (no terminal to ask on)")
    sys.stderr.write(f"{what}.\nType the database name to go on: ")
    sys.stderr.flush()
    if sys.stdin.readline().strip() != db_name:
        raise UsageError(f"not confirmed; database {db_name} was left as it was")


def _replaced_text(replaced: Replacement) -> str:
    return (
        f"replaced database {replaced.database}: dropped, ended {_sessions(replaced.sessions_ended)}, "
        f"recreated from the backup; carried over {replaced.properties.summary()}; "
        f"oid {replaced.properties.oid} is now {replaced.new_oid}\n"
    )


def _restore_missing(
    settings: Settings, json_mode: bool, source: str | None, unrecoverable: Path | None
) -> int:
    from guard.backup.recovery import restore_missing
    from guard.repair.rowfile import check_path, write_rows

    if unrecoverable is not None:
        check_path(unrecoverable, "--unrecoverable")
    outcomes = restore_missing(settings, _wanted(source))
    lost = [o for o in outcomes if o.outcome not in ("restored", "already present")]
    if unrecoverable is not None:
        write_rows(unrecoverable, ("subject", "path", "outcome"), [o.to_json() for o in lost])
    human = "".join(
        f"{o.outcome:<16} {printable(o.subject)}  {printable(o.path)}"
        f"{'  from ' + o.backup_id if o.backup_id else ''}\n"
        for o in outcomes
    )
    human += (
        f"{len(outcomes) - len(lost):,} of {plural(len(outcomes), 'missing file')} restored; "
        f"{len(lost):,} in no backup\n"
    )
    if unrecoverable is not None:
        human += f"{plural(len(lost), 'unrecoverable row')} listed in {printable(str(unrecoverable))}\n"
    document = {"ok": not lost, "files": [o.to_json() for o in outcomes]}
    if unrecoverable is not None:
        document["unrecoverable"] = str(unrecoverable)
    emit(document, human, json_mode)
    return EXIT_OK if not lost else EXIT_FINDINGS


def _drill(settings: Settings, json_mode: bool, source: str | None) -> int:
    from guard.backup import run_drill

    result = run_drill(settings, _wanted(source))
    emit(result.to_json(), f"drill {'PASSED' if result.ok else 'FAILED'}: {result.detail}\n", json_mode)
    return EXIT_OK if result.ok else EXIT_FINDINGS
