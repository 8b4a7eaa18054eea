"""`guard install`, `guard uninstall`, `guard findings` and `guard findings ack`: continuous sync."""

from __future__ import annotations

import argparse
import getpass
import json
import re
import sys
from datetime import UTC, datetime, time, timedelta
from typing import Any

from guard.cli.tables import console_for, new_table, print_rstripped
from guard.config.settings import Settings
from guard.continuous.capture import (
    VERSION,
    install,
    installed_version,
    unindexed_file_column,
    unindexed_unique,
    uninstall,
)
from guard.db.database import Database
from guard.errors import EXIT_FINDINGS, EXIT_OK, EXIT_USAGE, ConfigError, GuardError
from guard.findings import acks as known
from guard.findings import ledger as store
from guard.fs.paths import printable
from guard.plural import plural


def register(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add install, uninstall and findings to the guard command."""
    inst = commands.add_parser(
        "install",
        help="create guard's schema, outbox and capture triggers (idempotent)",
        description="Create the 'guard' schema (capture log, outbox, findings, notifications, "
        "heartbeats, canary) and row-level capture triggers on every table the rules name and on the "
        "file table. Safe to run again; upgrades an older install in place. Then run a first full "
        "sweep in this process (integrity, files when UPLOADS_ROOT is set, migrations and drift when "
        "MIGRATIONS_DIR is set), so the problems already in the data are open findings at once "
        "instead of at the first hourly sweep; --no-sweep skips it. A unique rule's column, and the "
        "file column, with no index is named in a note: each continuous check of its table then reads "
        "the whole table, so an index in the app's schema (Prisma: @@index on the column) keeps the "
        "checks' cost flat.",
        epilog="examples:\n  guard install\n  guard install --no-sweep\n\n"
        "exit codes: 0 installed (whatever the first sweep found: see 'guard status'), 2 usage or "
        "configuration, 3 the database cannot be reached",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    inst.add_argument("--json", action="store_true", help="print one JSON object")
    inst.add_argument(
        "--no-sweep", action="store_true", help="install only; leave the first sweep to beat's schedule"
    )
    inst.set_defaults(handler=run_install)
    uninst = commands.add_parser(
        "uninstall",
        help="drop the capture triggers and guard's schema (findings included)",
        description="Remove every guard trigger and the 'guard' schema.",
    )
    uninst.add_argument("--json", action="store_true", help="print one JSON object")
    uninst.set_defaults(handler=run_uninstall)
    found = commands.add_parser(
        "findings",
        help="list the findings the continuous checks keep",
        description="List guard.findings: open ones first, then resolved ones.",
        epilog="examples:\n  guard findings --open\n  guard findings --json",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    found.add_argument("--open", action="store_true", help="only findings that are still open")
    found.add_argument("--json", action="store_true", help="print one JSON object")
    found.set_defaults(handler=run_findings)
    _add_ack(found.add_subparsers(dest="findings_command", metavar="ack"))


def _add_ack(actions: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    ack = actions.add_parser(
        "ack",
        help="acknowledge known findings (who, why, until when)",
        description="Acknowledge one open finding (by its id in 'guard findings') or every finding of a "
        "kind, now and later. An acknowledged finding stays open and listed (with who, why and until "
        "when), but 'guard predeploy' passes on it and 'guard findings' / 'guard status' exit 0 when "
        "only acknowledged findings are open. It expires by itself at --until.",
        epilog="examples:\n  guard findings ack 42 --reason 'hotfix index, see #311' --until 2026-12-15\n"
        "  guard findings ack --kind orphan_file --reason 'old uploads, purge planned' --until 7d",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    which = ack.add_mutually_exclusive_group(required=True)
    which.add_argument("id", nargs="?", type=int, help="the open finding's id (guard findings)")
    which.add_argument(
        "--kind", metavar="K", help="every finding of this kind (column_missing, orphan_file, ...)"
    )
    ack.add_argument(
        "--reason", required=True, metavar="TEXT", help="why it may stay open (shown everywhere)"
    )
    ack.add_argument(
        "--until",
        type=_until,
        metavar="DATE",
        help="when it expires: YYYY-MM-DD (through that day, UTC), an ISO time, or 12h / 7d from now",
    )
    ack.add_argument("--by", default=None, metavar="WHO", help="who acknowledges (default: the OS user)")
    ack.add_argument("--json", action="store_true", help="print one JSON object")
    ack.set_defaults(handler=run_ack)


DURATION = re.compile(r"^(\d+)([hd])$")


def _until(text: str) -> datetime:
    """Parse --until: a date (through that day, UTC), an ISO time (UTC unless it says), or 12h / 7d."""
    now = datetime.now(UTC)
    match = DURATION.match(text)
    if match:
        amount, unit = int(match.group(1)), match.group(2)
        moment = now + (timedelta(hours=amount) if unit == "h" else timedelta(days=amount))
    else:
        try:
            moment = datetime.fromisoformat(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not a date, an ISO time or 12h / 7d: {text!r}") from None
        if len(text) == 10:  # a bare date: acknowledged through that day
            moment = datetime.combine(moment.date() + timedelta(days=1), time(), UTC)
        elif moment.tzinfo is None:
            moment = moment.replace(tzinfo=UTC)
    if moment <= now:
        raise argparse.ArgumentTypeError(f"already past: {text!r}")
    return moment


def run_ack(args: argparse.Namespace, settings: Settings) -> int:
    """Record the acknowledgement; exit 2 when the id names no open finding."""
    reason = args.reason.strip()
    if not reason:
        raise ConfigError("--reason must say why")
    by = args.by or getpass.getuser()
    with Database(settings.require_database_url()) as db:
        if installed_version(db) is None:
            raise ConfigError("guard is not installed in this database: run 'guard install' first")
        if args.kind is None:
            ack = known.acknowledge_finding(db, args.id, reason, by, args.until)
            if ack is None:
                sys.stderr.write(f"guard: no open finding has id {args.id} (see 'guard findings --open')\n")
                return EXIT_USAGE
            covered = 1
        else:
            ack, covered = known.acknowledge_kind(db, args.kind, reason, by, args.until)
    if args.json:
        print(json.dumps({"ok": True, "ack": ack.to_json(), "open_covered": covered}, ensure_ascii=False))
    else:
        what = f"{ack.kind} {printable(ack.subject)}" if ack.subject else f"every {ack.kind} finding"
        print(f"guard: acknowledged {what} ({covered} open now) {ack.describe()}")
    return EXIT_OK


def run_install(args: argparse.Namespace, settings: Settings) -> int:
    with Database(settings.require_database_url()) as db:
        tables = install(db, settings)
        unindexed = unindexed_unique(db, settings)
        names = [t.name for t in tables]
        file_unindexed = settings.file_table in names and unindexed_file_column(db, settings)
    if not args.json:
        print(f"guard: installed version {VERSION}; capturing changes to {', '.join(names)}")
        for rule in unindexed:
            print(
                f"guard: note: {rule.table}.{rule.column} has no index, so every continuous check of "
                f"{rule.table} reads the whole table for rule '{rule.id}' and costs more as it grows; "
                "an index on it in the app's schema (in Prisma, an @@index on its field) makes it a "
                "lookup; guard creates none on the app's tables (that would be drift)"
            )
        if file_unindexed:
            column = f"{settings.file_table}.{settings.file_column}"
            print(
                f"guard: note: {column} has no index, so every continuous check of a change to "
                f"{settings.file_table} reads the whole table to see whether its files are still named, "
                "and costs more as it grows; an index on it in the app's schema makes it a lookup"
            )
    swept = None if args.no_sweep else first_sweep(settings, quiet=args.json)
    if args.json:
        notes = [{"rule": r.id, "table": r.table, "column": r.column} for r in unindexed]
        print(
            json.dumps(
                {
                    "ok": True,
                    "version": VERSION,
                    "tables": names,
                    "first_sweep": swept,
                    "unindexed_unique": notes,
                    "unindexed_file_column": (
                        {"table": settings.file_table, "column": settings.file_column}
                        if file_unindexed
                        else None
                    ),
                }
            )
        )
    return EXIT_OK


def first_sweep(settings: Settings, *, quiet: bool) -> dict[str, Any]:
    """Run every available sweep now, in this process; a sweep that cannot run is said, not fatal."""
    from guard.cli.sweep import chosen
    from guard.continuous.process import run_sweep

    names, skipped = chosen("all", settings)
    if settings.uploads_root is None and "files" in names:
        names.remove("files")
        skipped.append("files")
    done: dict[str, Any] = {}
    for name in names:
        if not quiet:
            sys.stdout.write(f"guard: first sweep: {name} ...")
            sys.stdout.flush()
        try:
            changes = run_sweep(settings, name)
        except GuardError as exc:
            done[name] = {"error": str(exc)}
            if not quiet:
                sys.stdout.write(" could not run\n")
            sys.stderr.write(f"guard: first sweep {name} could not run: {exc}\n")
            continue
        done[name] = {"opened": changes.opened, "resolved": changes.resolved}
        if not quiet:
            sys.stdout.write(f" opened {changes.opened}, resolved {changes.resolved}\n")
    with Database(settings.require_database_url()) as db:
        still_open = len(store.list_findings(db, open_only=True))
    if not quiet:
        left = f" (skipped {', '.join(skipped)}: not configured)" if skipped else ""
        print(
            f"guard: {plural(still_open, 'finding')} open after the first sweep{left};"
            " 'guard status' shows them"
        )
    return {"sweeps": done, "skipped": skipped, "open": still_open}


def run_uninstall(args: argparse.Namespace, settings: Settings) -> int:
    with Database(settings.require_database_url()) as db:
        names = uninstall(db)
    if args.json:
        print(json.dumps({"ok": True, "tables": names}))
    else:
        print(f"guard: uninstalled; triggers removed from {', '.join(names) or 'no table'}")
    return EXIT_OK


def run_findings(args: argparse.Namespace, settings: Settings) -> int:
    """Print the stored findings; exit 1 when any is open."""
    with Database(settings.require_database_url()) as db:
        if installed_version(db) is None:
            raise ConfigError("guard is not installed in this database: run 'guard install' first")
        rows = store.list_findings(db, open_only=args.open)
        ackd = acknowledgements(rows, known.active(db))
    still_open = sum(1 for f in rows if f.is_open)
    blocking = still_open - len(ackd)
    if args.json:
        listed = [{**f.to_json(), "ack": ackd[f.id].to_json() if f.id in ackd else None} for f in rows]
        document = {"ok": blocking == 0, "open": still_open, "acknowledged": len(ackd), "findings": listed}
        print(json.dumps(document, ensure_ascii=False))
    else:
        write_table(rows, ackd, open_only=args.open)
    return EXIT_FINDINGS if blocking else EXIT_OK


def acknowledgements(rows: list[store.StoredFinding], acks: list[known.Ack]) -> dict[int, known.Ack]:
    """Return the acknowledgement covering each open finding, by finding id."""
    found = {f.id: known.covering(acks, f.check, f.kind, f.subject) for f in rows if f.is_open}
    return {i: a for i, a in found.items() if a is not None}


def write_table(rows: list[store.StoredFinding], ackd: dict[int, known.Ack], *, open_only: bool) -> None:
    """Print one row per finding, whole, then the counts of what the listing shows."""
    table = new_table(
        "ID",
        "STATE",
        "CHECK",
        "KIND",
        "SUBJECT",
        "SEEN",
        "FIRST SEEN",
        "LAST SEEN",
        "RESOLVED",
        right=("ID", "SEEN"),
    )
    for f in rows:
        ack = ackd.get(f.id)
        table.add_row(
            str(f.id),
            ("acked" if ack else "open") if f.is_open else "resolved",
            f.check,
            f.kind,
            printable(f.subject),
            f"{f.occurrences:,}",
            f"{f.first_seen:%Y-%m-%d %H:%M:%S}",
            f"{f.last_seen:%Y-%m-%d %H:%M:%S}",
            f"{f.resolved_at:%Y-%m-%d %H:%M:%S}" if f.resolved_at else "",
        )
    print_rstripped(console_for(sys.stdout), table)
    for f in rows:
        if f.id in ackd:
            sys.stdout.write(f"acked {f.id}: {printable(ackd[f.id].describe())}\n")
    still_open = sum(1 for f in rows if f.is_open)
    acked = f" ({len(ackd):,} acknowledged)" if ackd else ""
    if open_only:  # the resolved ones were not read, so say nothing about them
        sys.stdout.write(f"{still_open:,} open{acked} (resolved ones not listed)\n")
    else:
        sys.stdout.write(f"{still_open:,} open{acked}, {len(rows) - still_open:,} resolved\n")
