"""`guard backup copy` and the `--remote` forms of list, verify and prune: thin over guard.backup.remote."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from guard.cli.bars import terminal_progress
from guard.config.settings import Settings
from guard.errors import EXIT_FINDINGS, EXIT_OK, UsageError
from guard.plural import plural

if TYPE_CHECKING:
    Subparsers = argparse._SubParsersAction[argparse.ArgumentParser]


def add_copy(actions: Subparsers, json_flag: Callable[..., None]) -> None:
    copy = actions.add_parser(
        "copy",
        help="copy backups to an rclone remote (off-site), content first, manifest last",
        description="Send backups to an rclone remote: only the files the remote lacks, verified against "
        "its listing (sizes, and hashes where it offers them) before each backup's manifest goes last. "
        "A copy killed at any moment leaves no backup that looks complete there; run it again to finish. "
        "A prune of the same remote waits while a copy runs, and a copy waits for one (up to 10 minutes: "
        "a lock file under locks/ on the remote). "
        "Credentials live in rclone's own config (rclone config), never in guard's.",
        epilog="examples:\n  guard backup copy --to offsite:guard\n"
        "  guard backup copy --to secret:guard 20250101T020000Z-1a2b3c --json",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    copy.add_argument("--to", required=True, metavar="REMOTE", help="rclone remote path, e.g. offsite:guard")
    copy.add_argument("ids", nargs="*", metavar="ID", help="the backups to copy (default: every one)")
    json_flag(copy, nested=True)


def emit(document: dict[str, Any], human: str, json_mode: bool) -> None:
    from guard.cli.backup import emit as shared

    shared(document, human, json_mode)


def handle_remote(args: argparse.Namespace, settings: Settings) -> int:
    if args.action == "copy":
        return _copy(settings, args.to, args.ids, args.json)
    if args.action == "list":
        return _list(args.remote, args.json)
    if args.action == "verify":
        if args.id is not None:
            raise UsageError("`guard backup verify --remote` checks every backup there; drop the ID")
        return _verify(args.remote, args.read_data, args.json)
    if args.action == "prune":
        if args.source is not None or args.all_sources:
            raise UsageError("`prune --remote` prunes every source's backups there, each on its own")
        return _prune(settings, args.remote, args, args.json)
    raise UsageError("--remote goes with `guard backup list`, `verify` or `prune`")


def _copy(settings: Settings, remote: str, ids: list[str], json_mode: bool) -> int:
    from guard.backup.remote.offsite import copy_one

    result = copy_one(settings, remote, ids or None, terminal_progress())
    human = (
        f"copied {plural(len(result.copied), 'backup')} to {result.remote} "
        f"({plural(len(result.sent_files), 'file')}, {plural(result.sent_bytes, 'byte')} sent; "
        f"{plural(result.hashed, 'file')} hash-checked there); "
        f"{len(result.already):,} already there\n"
    )
    emit({"ok": True, **result.to_json()}, human, json_mode)
    return EXIT_OK


def _list(remote: str, json_mode: bool) -> int:
    from guard.backup.remote.mirror import Mirror

    mirror = Mirror(remote)
    rows: list[dict[str, Any]] = []
    for b in mirror.backups():
        row: dict[str, Any] = {"id": b.backup_id, "complete": b.complete}
        if b.manifest is not None:
            row.update(
                started_at=b.manifest.started_at,
                source=None if b.manifest.source is None else b.manifest.source.to_json(),
                purpose=b.manifest.purpose,
                files=b.manifest.counts.get("files"),
                bytes=b.manifest.counts.get("bytes"),
                dump_bytes=b.manifest.dump.size,
            )
        if b.problems:
            row["problem"] = b.problems[0]
        rows.append(row)
    unfinished = mirror.incomplete()
    human = f"{'ID':<25}{'FILES':>10}{'BYTES':>16}  STATUS   ({mirror.label})\n"
    for row in rows:
        status = "ok" if row["complete"] else f"DAMAGED: {row['problem']}"
        human += f"{row['id']:<25}{row.get('files') or 0:>10,}{row.get('bytes') or 0:>16,}  {status}\n"
    human += "".join(f"{i:<25}{'':>26}  unfinished copy (no manifest)\n" for i in unfinished)
    ok = all(r["complete"] for r in rows)
    emit({"ok": ok, "remote": mirror.label, "backups": rows, "unfinished": unfinished}, human, json_mode)
    return EXIT_OK if ok else EXIT_FINDINGS


def _verify(remote: str, read_data: bool, json_mode: bool) -> int:
    from guard.backup.remote.offsite import verify_remote
    from guard.backup.remote.rclone import display

    results = verify_remote(remote, read_data=read_data, progress=terminal_progress())
    ok = all(r.ok for r in results)
    human = "".join(
        f"{r.backup_id}  {'ok' if r.ok else 'FAILED'}  {plural(r.objects, 'object' if read_data else 'file')}"
        f"{' re-hashed' if read_data else ' present'}\n" + "".join(f"  {e}\n" for e in r.examples)
        for r in results
    )
    document = {
        "ok": ok,
        "remote": display(remote),
        "read_data": read_data,
        "backups": [r.to_json() for r in results],
    }
    emit(document, human or "no backups\n", json_mode)
    return EXIT_OK if ok else EXIT_FINDINGS


def _prune(settings: Settings, remote: str, args: argparse.Namespace, json_mode: bool) -> int:
    from guard.backup.policy import Policy
    from guard.backup.remote.expiry import prune_remote

    counts = (args.keep_daily, args.keep_weekly, args.keep_monthly)
    kept = (settings.keep_daily, settings.keep_weekly, settings.keep_monthly)  # a flag wins over its setting
    dry_run = bool(getattr(args, "dry_run", False))
    policy = Policy(*(k if k is not None else s for k, s in zip(counts, kept, strict=True)))
    result = prune_remote(remote, policy, dry_run=dry_run)
    human = f"dry run on {result.remote}: nothing is removed\n" if dry_run else ""
    human += "".join(f"keep    {i}  ({', '.join(r)})\n" for i, r in sorted(result.kept.items()))
    human += "".join(f"{'remove ' if dry_run else 'removed'} {i}\n" for i in result.removed)
    verb = "would be deleted" if dry_run else "deleted"
    human += f"{plural(result.files_deleted, 'file')} {verb} on {result.remote}, "
    human += f"{plural(result.bytes_freed, 'byte')} {'would be freed' if dry_run else 'freed'}\n"
    human += "".join(f"PROBLEM: {p}\n" for p in result.problems)
    human += "".join(f"note: {n}\n" for n in result.notes)
    emit({**result.to_json(), "dry_run": dry_run}, human, json_mode)
    return EXIT_OK if result.ok else EXIT_FINDINGS
