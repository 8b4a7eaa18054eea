"""`guard install`, `guard uninstall` and `guard findings`: the continuous-sync commands."""

from __future__ import annotations

import argparse
import json
import sys

from guard.cli.tables import console_for, new_table, print_rstripped
from guard.config.settings import Settings
from guard.continuous.capture import VERSION, install, installed_version, uninstall
from guard.db.database import Database
from guard.errors import EXIT_FINDINGS, EXIT_OK, ConfigError
from guard.findings import ledger as store
from guard.fs.paths import printable


def register(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add install, uninstall and findings to the guard command."""
    inst = commands.add_parser(
        "install",
        help="create guard's schema, outbox and capture triggers (idempotent)",
        description="Create the 'guard' schema (capture log, outbox, findings, notifications) and "
        "row-level capture triggers on every table the rules name and on the file table. Safe to "
        "run again; upgrades an older install in place.",
        epilog="example:\n  guard install",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    inst.add_argument("--json", action="store_true", help="print one JSON object")
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


def run_install(args: argparse.Namespace, settings: Settings) -> int:
    with Database(settings.require_database_url()) as db:
        tables = install(db, settings)
    names = [t.name for t in tables]
    if args.json:
        print(json.dumps({"ok": True, "version": VERSION, "tables": names}))
    else:
        print(f"guard: installed version {VERSION}; capturing changes to {', '.join(names)}")
    return EXIT_OK


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
    still_open = sum(1 for f in rows if f.is_open)
    if args.json:
        print(
            json.dumps(
                {"ok": still_open == 0, "open": still_open, "findings": [f.to_json() for f in rows]},
                ensure_ascii=False,
            )
        )
    else:
        write_table(rows, open_only=args.open)
    return EXIT_FINDINGS if still_open else EXIT_OK


def write_table(rows: list[store.StoredFinding], *, open_only: bool) -> None:
    """Print one row per finding, whole, then the counts of what the listing shows."""
    table = new_table(
        "STATE", "CHECK", "KIND", "SUBJECT", "SEEN", "FIRST SEEN", "LAST SEEN", "RESOLVED", right=("SEEN",)
    )
    for f in rows:
        table.add_row(
            "open" if f.is_open else "resolved",
            f.check,
            f.kind,
            printable(f.subject),
            f"{f.occurrences:,}",
            f"{f.first_seen:%Y-%m-%d %H:%M:%S}",
            f"{f.last_seen:%Y-%m-%d %H:%M:%S}",
            f"{f.resolved_at:%Y-%m-%d %H:%M:%S}" if f.resolved_at else "",
        )
    print_rstripped(console_for(sys.stdout), table)
    still_open = sum(1 for f in rows if f.is_open)
    if open_only:  # the resolved ones were not read, so say nothing about them
        sys.stdout.write(f"{still_open:,} open (resolved ones not listed)\n")
    else:
        sys.stdout.write(f"{still_open:,} open, {len(rows) - still_open:,} resolved\n")
