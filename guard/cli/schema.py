"""The `guard drift sql` and `guard migrations baseline` subcommands."""

from __future__ import annotations

import argparse
import json
import sys
from typing import TYPE_CHECKING

from guard.checks.drift import detect
from guard.checks.migrations import missing_scripts
from guard.cli.bars import terminal_progress
from guard.config.settings import Settings
from guard.db.database import Database
from guard.errors import EXIT_FINDINGS, EXIT_OK
from guard.findings.finding import Finding
from guard.plural import plural
from guard.schema.history import baseline, folders_without_script, read_migrations
from guard.schema.repair import script

if TYPE_CHECKING:
    Commands = argparse._SubParsersAction[argparse.ArgumentParser]


def register(commands: Commands) -> None:
    """Add `drift sql` and `migrations baseline` to the guard command."""
    _add_drift(commands)
    _add_migrations(commands)


def _add_drift(commands: Commands) -> None:
    drift = commands.add_parser(
        "drift",
        help="schema drift tools (the check itself is `guard check drift`)",
        description="Work with the differences between the live schema and the migrations.",
    )
    actions = drift.add_subparsers(dest="drift_command", required=True, metavar="ACTION")
    sql = actions.add_parser(
        "sql",
        help="print the repair script for every drift, in dependency order",
        description="Replay the applied migrations into a shadow database, compare, and print the "
        "SQL that brings the live database back in line. Nothing is applied. Exit 0 when there is "
        "no drift, 1 when the script has statements.",
        epilog="example:\n  guard drift sql > repair.sql",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sql.set_defaults(handler=print_repair_script)


def _add_migrations(commands: Commands) -> None:
    migrations = commands.add_parser(
        "migrations",
        help="migration history tools (the check itself is `guard check migrations`)",
        description="Work with Prisma's _prisma_migrations table.",
    )
    actions = migrations.add_subparsers(dest="migrations_command", required=True, metavar="ACTION")
    base = actions.add_parser(
        "baseline",
        help="record every migration folder as applied, for a database with no history",
        description="Create _prisma_migrations exactly as Prisma does and record every folder as "
        "applied (what `prisma migrate resolve --applied` writes), so `prisma migrate status` and "
        "`migrate deploy` accept the database. Refuses when the schema drifts from the migrations.",
        epilog="example:\n  guard migrations baseline\n  guard migrations baseline --force",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    base.add_argument("--force", action="store_true", help="record the history even when drift is found")
    base.add_argument("--json", action="store_true", help="print exactly one JSON object on stdout")
    base.set_defaults(handler=run_baseline)


def print_repair_script(args: argparse.Namespace, settings: Settings) -> int:
    """Print the whole repair script; exit 1 when there is drift to repair."""
    report = detect(settings, progress=terminal_progress())
    if report.failure is not None:
        sys.stdout.write(
            f"-- migration {report.failure.migration} fails to replay: "
            f"{report.failure.error}\n-- no repair script: the schemas were not compared\n"
        )
        return EXIT_FINDINGS
    sys.stdout.write(script(d.statements for d in report.differences))
    return EXIT_FINDINGS if report.differences else EXIT_OK


def run_baseline(args: argparse.Namespace, settings: Settings) -> int:
    """Record every folder as applied unless the live schema drifts from what they build."""
    folder = settings.require_migrations_dir()
    incomplete = missing_scripts(folders_without_script(folder))
    if incomplete:  # not even --force: Prisma itself would stop at these folders (P3015)
        return _refuse(
            incomplete, args.json, f"{plural(len(incomplete), 'migration folder')} without migration.sql"
        )
    files = read_migrations(folder)
    report = detect(settings, replay_all=True, progress=terminal_progress())
    findings = report.findings()
    if findings and not args.force:
        return _refuse(
            findings, args.json, f"the schema differs from the migrations in {plural(len(findings), 'way')}"
        )
    with Database(settings.require_database_url()) as db:
        recorded = baseline(db, files)
    if args.json:
        sys.stdout.write(
            json.dumps(
                {
                    "ok": True,
                    "recorded": recorded,
                    "forced_over": len(findings),
                    "migrations": [f.name for f in files],
                }
            )
            + "\n"
        )
    else:
        note = f" (over {plural(len(findings), 'drift finding')}, --force)" if findings else ""
        sys.stdout.write(f"recorded {plural(recorded, 'migration')} as applied in _prisma_migrations{note}\n")
    return EXIT_OK


def _refuse(shown: list[Finding], json_mode: bool, why: str) -> int:
    missing = shown[0].kind == "migration_file_missing"
    fix = "restore the files or delete the folders" if missing else "fix them, or use --force"
    message = f"refusing to baseline: {why} ({fix})"
    if json_mode:
        sys.stdout.write(
            json.dumps({"ok": False, "error": message, "findings": [f.to_json() for f in shown]}) + "\n"
        )
    else:
        for finding in shown:
            sys.stdout.write(f"  {finding.kind:<22} {finding.subject}\n  {'':<22} {finding.message}\n")
    sys.stderr.write(f"guard: {message}\n")
    return EXIT_FINDINGS
