"""The `guard constraints plan` and `guard constraints migrate` subcommands."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from guard.cli.tables import console_for, new_table, print_rstripped
from guard.config.settings import Settings
from guard.constraints import enforcement as e
from guard.constraints.plan import RulePlan, read_plan
from guard.constraints.rollout import Rollout, plan_rollout, read_written, write_rollout
from guard.errors import EXIT_FINDINGS, EXIT_OK
from guard.plural import plural

if TYPE_CHECKING:
    Commands = argparse._SubParsersAction[argparse.ArgumentParser]

EXIT_CODES = (
    "exit codes: 0 nothing in the way, 1 rules with findings, 2 usage or configuration, 3 unreachable"
)


def register(commands: Commands) -> None:
    """Add `constraints plan` and `constraints migrate` to the guard command."""
    constraints = commands.add_parser(
        "constraints",
        help="turn the row rules into database constraints",
        description="Show, then write as Prisma migrations, the constraints that make PostgreSQL "
        "itself refuse what the rules find (required, format, unique, references).",
        epilog="examples:\n  guard constraints plan --json\n"
        "  guard constraints migrate --migrations-dir prisma/migrations && npx prisma migrate deploy\n\n"
        + EXIT_CODES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    actions = constraints.add_subparsers(dest="constraints_command", required=True, metavar="ACTION")
    plan = actions.add_parser(
        "plan",
        help="each rule's constraint and whether today's rows already satisfy it",
        description="For every enabled rule: the constraint that enforces it, its state in the "
        "database (missing, not_valid, valid, invalid: an index a failed concurrent build left) and "
        "the rule's count of findings today. Writes nothing.",
        epilog="example:\n  guard constraints plan --json\n\n" + EXIT_CODES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    plan.add_argument("--json", action="store_true", help="print exactly one JSON object on stdout")
    plan.set_defaults(handler=run_plan)
    migrate = actions.add_parser(
        "migrate",
        help="write the Prisma migrations that add the constraints without blocking the app",
        description="Write <timestamp>_guard_constraints_not_valid (CHECK and FOREIGN KEY ... NOT "
        "VALID), one <timestamp>_guard_unique_<table>_<column> per unique rule (CREATE UNIQUE INDEX "
        "CONCURRENTLY, alone) and <timestamp>_guard_constraints_validate (VALIDATE CONSTRAINT, then "
        "SET NOT NULL). A unique index and the validate step are written only once their rules have "
        "no findings; until then the command lists them and exits 1. What the folder already holds "
        "is not written again. Apply them with `prisma migrate deploy`.",
        epilog="example:\n  guard constraints migrate --migrations-dir prisma/migrations\n\n" + EXIT_CODES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    migrate.add_argument(
        "--migrations-dir",
        type=Path,
        metavar="DIR",
        help="Prisma's migrations folder to write into (default: MIGRATIONS_DIR)",
    )
    migrate.set_defaults(handler=run_migrate)


def run_plan(args: argparse.Namespace, settings: Settings) -> int:
    """Print every rule's constraints and count; exit 1 while any rule has findings."""
    plans = read_plan(settings)
    ok = all(p.satisfied for p in plans)
    if args.json:
        sys.stdout.write(json.dumps({"ok": ok, "rules": [p.to_json() for p in plans]}) + "\n")
    else:
        _write_plan(plans)
    return EXIT_OK if ok else EXIT_FINDINGS


def run_migrate(args: argparse.Namespace, settings: Settings) -> int:
    """Write the folders still missing; exit 1 when findings hold a step back."""
    folder = args.migrations_dir or settings.require_migrations_dir()
    written = read_written(folder)  # a missing folder fails before the rules' scan
    plans = read_plan(settings)
    rollout = plan_rollout(plans, written)
    for path in write_rollout(folder, rollout):
        sys.stdout.write(f"wrote {path.parent.name}/{path.name}\n")
    if not rollout.migrations:
        sys.stdout.write(f"nothing new to write: {folder} already has every constraint it can\n")
    _write_not_null_hint(plans, rollout)
    if not rollout.blocked:
        return EXIT_OK
    for blocked in rollout.blocked:
        sys.stdout.write(
            f"  {blocked.rule:<30} {plural(blocked.findings, 'finding'):>12}  holds back {blocked.step}\n"
        )
    rules = sorted({b.rule for b in rollout.blocked})
    sys.stderr.write(
        f"guard: not written while {plural(len(rules), 'rule')} still {'has' if len(rules) == 1 else 'have'} "
        "findings (fix the rows, then run it again): " + ", ".join(rules) + "\n"
    )
    return EXIT_FINDINGS


def _write_plan(plans: list[RulePlan]) -> None:
    table = new_table("RULE", "FINDINGS", "CONSTRAINT", "STATE", right=("FINDINGS",))
    for plan in plans:
        rows = [(x.label + _whose(x), x.state) for x in plan.enforcers]
        rows = rows or [(plan.note or "", "-")]
        for n, (label, state) in enumerate(rows):
            table.add_row(
                plan.rule.id if n == 0 else "", f"{plan.findings:,}" if n == 0 else "", label, state
            )
    console = console_for(sys.stdout)
    print_rstripped(console, table)
    held = [p for p in plans if not p.satisfied]
    if held:
        console.print(
            f"\n{plural(len(held), 'rule')} with findings: their constraints can be added NOT VALID "
            "now, and validated once the rows are fixed"
        )
    else:
        console.print("\nevery rule holds on today's rows: every constraint can be validated")


def _whose(enforcer: e.Enforcer) -> str:
    if enforcer.ours or enforcer.kind == e.NOT_NULL:
        return " (non-blank values)" if " WHERE " in enforcer.definition else ""
    return " (the app's own)"


def _write_not_null_hint(plans: list[RulePlan], rollout: Rollout) -> None:
    """Say which Prisma fields become required, so `prisma migrate dev` does not undo SET NOT NULL."""
    scripts = "".join(m.script for m in rollout.migrations)
    for plan in plans:
        for x in plan.ours:
            if x.kind == e.NOT_NULL and e.set_not_null_statement(x) in scripts:
                sys.stdout.write(
                    f"note: {x.table}.{x.column} becomes NOT NULL: make its field required in "
                    "schema.prisma (drop the `?`), or `prisma migrate dev` will write DROP NOT NULL\n"
                )
