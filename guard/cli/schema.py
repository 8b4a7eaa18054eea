"""The `guard drift sql|repair|adopt` and `guard migrations baseline` subcommands."""

from __future__ import annotations

import argparse
import json
import re
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, TextIO

from guard.cli.bars import terminal_progress
from guard.config.settings import Settings
from guard.db.database import Database
from guard.errors import EXIT_FINDINGS, EXIT_OK
from guard.findings.finding import Finding
from guard.plural import plural
from guard.schema.applier import LockPolicy
from guard.schema.history import baseline, folders_without_script, read_migrations
from guard.schema.remedy import DEFAULT_LOCK_TIMEOUT, script
from guard.schema.steps import Step

# The drift detector, the migrations reader (pglast) and the repairs (the backup's snapshot) are
# imported by the handlers that use them: every other command line registers these subcommands too.
if TYPE_CHECKING:
    from guard.schema.adoption import AdoptionPlan
    from guard.schema.rescue import RepairPlan, RepairRefused, RepairResult

    Commands = argparse._SubParsersAction[argparse.ArgumentParser]


def register(commands: Commands) -> None:
    """Add `drift sql|repair|adopt` and `migrations baseline` to the guard command."""
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
        "SQL that brings the live database back in line, in its online form (indexes CONCURRENTLY, "
        "constraints NOT VALID then VALIDATE, no BEGIN/COMMIT around them). Nothing is applied. "
        "Exit 0 when there is no drift, 1 when the script has statements.",
        epilog="examples:\n  guard drift sql > repair.sql\n"
        "  guard drift repair --script repair.sql --apply     # back up, lock_timeout, retries\n"
        '  psql "$DATABASE_URL" -v ON_ERROR_STOP=1 -f repair.sql   # autocommit; never -1',
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sql.set_defaults(handler=print_repair_script)
    _add_repair(actions)
    _add_adopt(actions)


def _add_repair(actions: Commands) -> None:
    repair = actions.add_parser(
        "repair",
        help="back up, apply the repair script online, check drift again (plan only without --apply)",
        description="The emergency procedure as one command: take a guard backup, apply the repair "
        "script one statement at a time with lock_timeout (a statement that times out waiting for a "
        "lock is tried again), then run the drift check and print the result. Without --apply it "
        "prints the plan and changes nothing. Statements that drop data (DROP TABLE, DROP COLUMN, a "
        "type change that may not keep every value, TRUNCATE, DELETE, DROP ... CASCADE) are refused "
        "unless --allow-destructive. Exit 0 when the database is clean afterwards (or, for a plan, "
        "has nothing to repair), 1 when work or drift remains or the plan is refused, 2 for usage "
        "errors (no BACKUP_DIR without --no-backup, a script that does not parse).",
        epilog="examples:\n  guard drift repair\n  guard drift repair --apply\n"
        "  guard drift sql > repair.sql && $EDITOR repair.sql\n"
        "  guard drift repair --script repair.sql --apply",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    repair.add_argument("--apply", action="store_true", help="make the changes (default: print the plan)")
    repair.add_argument("--script", type=Path, metavar="FILE", help="apply this (edited) script instead")
    repair.add_argument("--no-backup", action="store_true", help="apply without taking a guard backup first")
    repair.add_argument("--allow-destructive", action="store_true", help="run statements that drop data too")
    repair.add_argument(
        "--lock-timeout",
        type=_lock_timeout,
        default=DEFAULT_LOCK_TIMEOUT,
        metavar="TIME",
        help=f"longest wait for a lock per statement, e.g. 500ms or 2s (default {DEFAULT_LOCK_TIMEOUT})",
    )
    repair.add_argument(
        "--attempts",
        type=_positive,
        default=LockPolicy().attempts,
        metavar="N",
        help=f"tries per statement that times out on a lock (default {LockPolicy().attempts})",
    )
    repair.add_argument("--json", action="store_true", help="print exactly one JSON object on stdout")
    repair.set_defaults(handler=run_drift_repair)


def _add_adopt(actions: Commands) -> None:
    adopt_parser = actions.add_parser(
        "adopt",
        help="record a deliberate live change (a hotfix) as a new applied Prisma migration",
        description="Write the difference between the migrations and the live schema (the SQL that "
        "turns the migrations' schema into the live one) as a new migration folder, named as "
        "`prisma migrate dev --create-only` names one (<timestamp>_guard_adopt_<what>), and record "
        "it in _prisma_migrations as `prisma migrate resolve --applied` does, so the change is history "
        "instead of drift. Without --apply it prints the migration and changes nothing. Update "
        "schema.prisma to match, or `prisma migrate dev` will want to undo it. Exit 0 when adopted "
        "(or nothing to adopt), 1 when a plan has work or is refused.",
        epilog="examples:\n  guard drift adopt\n  guard drift adopt --name ads_title_search --apply",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    adopt_parser.add_argument("--apply", action="store_true", help="write the folder and record it")
    adopt_parser.add_argument("--name", help="the folder's <what> (default: named after the difference)")
    adopt_parser.add_argument(
        "--allow-destructive",
        action="store_true",
        help="adopt a live schema that lacks something (the migration would drop it elsewhere)",
    )
    adopt_parser.add_argument("--json", action="store_true", help="print exactly one JSON object on stdout")
    adopt_parser.set_defaults(handler=run_drift_adopt)


_LOCK_TIMEOUT = re.compile(r"^[1-9][0-9]*(ms|s|min)?$")


def _lock_timeout(text: str) -> str:
    if not _LOCK_TIMEOUT.match(text.strip()):
        raise argparse.ArgumentTypeError(f"not a lock timeout: {text!r} (for example 500ms, 2s, 1min)")
    return text.strip()


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"not a positive whole number: {text!r}")
    return value


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
    from guard.checks.drift import detect

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
    from guard.checks.drift import detect
    from guard.checks.migrations import missing_scripts

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


def run_drift_repair(args: argparse.Namespace, settings: Settings) -> int:
    """Print the repair plan, or with --apply back up, apply it online and check drift again."""
    from guard.schema.rescue import RepairRefused, plan_repair, run_repair

    try:
        plan = plan_repair(
            settings, script_file=args.script, backup=not args.no_backup, progress=terminal_progress()
        )
        if not args.apply:
            return _print_plan(plan, args)
        result = run_repair(
            settings,
            plan,
            policy=LockPolicy(timeout=args.lock_timeout, attempts=args.attempts),
            allow_destructive=args.allow_destructive,
            on_retry=_say_retry(args.attempts),
            progress=terminal_progress(),
        )
    except RepairRefused as refused:
        return _print_refusal(refused, args.json)
    return _print_result(result, args.json)


def _say_retry(attempts: int) -> Callable[[Step, int, str], None]:
    def say(step: Step, attempt: int, why: str) -> None:
        sys.stderr.write(f"guard: step {step.number} {why} (try {attempt} of {attempts}); trying again\n")
        sys.stderr.flush()

    return say


def _print_plan(plan: RepairPlan, args: argparse.Namespace) -> int:
    code = EXIT_FINDINGS if plan.statements or plan.findings else EXIT_OK
    if args.json:
        sys.stdout.write(json.dumps(plan.to_json()) + "\n")
        return code
    if not plan.statements:
        left = len(plan.findings)
        why = (
            f"no statement repairs the {plural(left, 'finding')} (see guard drift sql)"
            if left
            else "no drift"
        )
        sys.stdout.write(f"nothing to repair: {why}\n")
        return code
    origin = "guard's repair script" if plan.source == "drift" else plan.source
    backup = "a guard backup first (BACKUP_DIR)" if plan.backup else "no backup (--no-backup)"
    sys.stdout.write(f"repair plan from {origin}: {plural(len(plan.statements), 'statement')}, {backup}\n")
    for step in plan.statements:
        sys.stdout.write(_numbered(step.number, step.sql))
        if step.destructive:
            sys.stdout.write(
                f"      ^ drops data: {step.destructive} (refused without --allow-destructive)\n"
            )
        if step.blocking:
            sys.stdout.write(f"      ^ blocks the app: {step.blocking}\n")
    sys.stdout.write("nothing applied: run again with --apply\n")
    return code


def _numbered(number: int, text: str) -> str:
    first, *rest = text.splitlines() or [""]
    return "".join([f"  {number:>3}  {first}\n", *(f"       {line}\n" for line in rest)])


def _print_refusal(refused: RepairRefused, json_mode: bool) -> int:
    if json_mode:
        document = {"ok": False, "error": str(refused), "refused": [s.to_json() for s in refused.steps]}
        sys.stdout.write(json.dumps(document) + "\n")
    else:
        for step in refused.steps:
            sys.stdout.write(_numbered(step.number, step.sql))
            sys.stdout.write(f"      ^ {step.destructive}\n")
    sys.stderr.write(f"guard: {refused}\n")
    return refused.exit_code


def _print_result(result: RepairResult, json_mode: bool) -> int:
    code = EXIT_OK if result.ok else EXIT_FINDINGS
    if json_mode:
        sys.stdout.write(json.dumps(result.to_json()) + "\n")
        return code
    out = sys.stdout
    out.write(f"backup {result.backup_id} taken first\n" if result.backup_id else "no backup taken\n")
    applied = result.application.applied
    total = sum(s.seconds for s in applied)
    said = f"repair {result.run_id}: " if result.run_id else ""
    out.write(f"{said}applied {plural(len(applied), 'statement')} in {total:.2f}s\n")
    for step in applied:
        tries = f" ({step.attempts} tries)" if step.attempts > 1 else ""
        out.write(f"  {step.number:>3}  {step.seconds:7.3f}s  {step.sql.splitlines()[0]}{tries}\n")
    failure = result.application.failure
    if failure is not None:
        out.write(f"step {failure.number} failed: {failure.error}; later steps did not run\n")
        out.write(_numbered(failure.number, failure.sql))
    remaining = result.remaining
    if not remaining:
        out.write("drift check after the repair: clean\n")
        _print_aftercare(result, out)
    else:
        out.write(f"drift check after the repair: {plural(len(remaining), 'finding')} remain\n")
        for finding in remaining:
            out.write(f"  {finding.kind:<22} {finding.subject}\n  {'':<22} {finding.message}\n")
    return code


def _print_aftercare(result: RepairResult, out: TextIO) -> None:
    care = result.aftercare
    if care is None:
        return
    if care.baselined:
        out.write(
            f"history: {plural(care.baselined, 'migration')} recorded as applied (no _prisma_migrations)\n"
        )
    if care.note:
        out.write(f"{care.note}\n")
    if care.reinstalled:
        out.write(f"capture: triggers installed again on {', '.join(care.reinstalled)}\n")


def run_drift_adopt(args: argparse.Namespace, settings: Settings) -> int:
    """Print the migration adopt would write, or with --apply write it and record it as applied."""
    from guard.schema.adoption import adopt, plan_adoption
    from guard.schema.rescue import RepairRefused

    try:
        plan = plan_adoption(settings, name=args.name)
        if not plan.differences:
            return _say_nothing_to_adopt(args.json)
        if not args.apply:
            return _print_adoption(plan, args.json, applied=False)
        adopt(settings, plan, allow_destructive=args.allow_destructive)
    except RepairRefused as refused:
        return _print_refusal(refused, args.json)
    return _print_adoption(plan, args.json, applied=True)


def _say_nothing_to_adopt(json_mode: bool) -> int:
    if json_mode:
        sys.stdout.write(json.dumps({"ok": True, "applied": False, "migration": None, "adopts": []}) + "\n")
    else:
        sys.stdout.write("nothing to adopt: the live schema matches the migrations\n")
    return EXIT_OK


def _print_adoption(plan: AdoptionPlan, json_mode: bool, *, applied: bool) -> int:
    code = EXIT_OK if applied else EXIT_FINDINGS
    if json_mode:
        sys.stdout.write(json.dumps({"ok": applied, "applied": applied, **plan.to_json()}) + "\n")
        return code
    out = sys.stdout
    verb = "wrote" if applied else "would write"
    out.write(
        f"{verb} {plan.folder / 'migration.sql'} adopting {plural(len(plan.differences), 'difference')}:\n"
    )
    for diff in plan.differences:
        out.write(f"  {diff.kind:<22} {diff.subject}\n")
    out.write("\n" + plan.sql + "\n")
    for step in plan.destructive:
        out.write(f"  ^ statement {step.number} drops data where deployed next: {step.destructive}\n")
    if applied:
        out.write(
            f"recorded {plan.name} as applied in _prisma_migrations (as `prisma migrate resolve --applied`)\n"
        )
    else:
        out.write("nothing written: run again with --apply (and update schema.prisma to match)\n")
    return code
