"""`guard status`: is the continuous checking keeping up? Outbox, broker queues and open findings."""

from __future__ import annotations

import argparse
import json
from typing import Any

from guard.config.settings import Settings
from guard.continuous import outbox
from guard.continuous.capture import installed_version, missing_capture
from guard.db.database import Database
from guard.errors import EXIT_FINDINGS, EXIT_OK, EXIT_UNREACHABLE, ConfigError, UnreachableError
from guard.findings import acks as known
from guard.fs.paths import printable

OPEN = "SELECT id, check_name, kind, subject FROM guard.findings WHERE resolved_at IS NULL ORDER BY id"


def register(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add status to the guard command."""
    status = commands.add_parser(
        "status",
        help="how much change waits to be checked, and what is open",
        description="Show the continuous checks' state: database changes captured but not yet "
        "checked (the outbox), tasks waiting in each broker queue and tasks a worker holds, and the "
        "open findings per check, and the changes parked after failing every check (re-queue them "
        "with 'guard outbox requeue'). A waiting count that keeps growing means: run more workers "
        "(Procfile: worker) or more listeners.",
        epilog="examples:\n  guard status\n  guard status --json\n\n"
        "exit codes: 0 nothing open, 1 findings open, 2 guard not installed, "
        "3 the database or Redis cannot be reached",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    status.add_argument("--json", action="store_true", help="print one JSON object")
    status.set_defaults(handler=run_status)


def run_status(args: argparse.Namespace, settings: Settings) -> int:
    # Imported here: redis costs every other guard command ~45 ms of start-up it never uses.
    from guard.continuous import queues

    with Database(settings.require_database_url()) as db:
        version = installed_version(db)
        if version is None:
            raise ConfigError("guard is not installed in this database: run 'guard install' first")
        backlog = outbox.backlog(db)
        dead = outbox.dead_rows(db)
        opened = db.fetch_all(OPEN)
        acks = known.active(db)
        blind = [f.subject for f in missing_capture(db, settings)]
    open_by_check: dict[str, int] = {}
    acked_by_check: dict[str, int] = {}
    for _, check, kind, subject in opened:
        open_by_check[str(check)] = open_by_check.get(str(check), 0) + 1
        if known.covering(acks, str(check), str(kind), str(subject)) is not None:
            acked_by_check[str(check)] = acked_by_check.get(str(check), 0) + 1
    broker: dict[str, Any]
    try:
        depths = queues.depths(queues.connect(settings.redis_url), settings.broker_prefix)
        broker = {"reachable": True, **depths.to_json()}
    except UnreachableError as exc:
        broker = {"reachable": False, "error": str(exc)}
    report = {
        "installed_version": version,
        "outbox_waiting": backlog,
        "outbox_dead": [d.to_json() for d in dead],
        "broker": broker,
        "open_findings": open_by_check,
        "acknowledged_findings": acked_by_check,
        "capture_missing": blind,
    }
    if args.json:
        print(json.dumps(report))
    else:
        print(render(report))
    if not broker["reachable"]:
        return EXIT_UNREACHABLE
    blocking = sum(open_by_check.values()) - sum(acked_by_check.values())
    return EXIT_FINDINGS if blocking else EXIT_OK


def render(report: dict[str, Any]) -> str:
    broker = report["broker"]
    if broker["reachable"]:
        waiting = ", ".join(f"{q} {n}" for q, n in broker["waiting"].items())
        queue_line = f"{waiting} waiting; {broker['unacknowledged']} held by workers"
    else:
        queue_line = f"unknown ({broker['error']})"
    found = report["open_findings"]
    findings_line = (
        f"{sum(found.values())} open (" + ", ".join(f"{c} {n}" for c, n in found.items()) + ")"
        if found
        else "none open"
    )
    acked = report["acknowledged_findings"]
    if acked:
        findings_line += (
            f"; {sum(acked.values())} of them acknowledged (guard findings shows who, why, until)"
        )
    blind = report["capture_missing"]
    capture_line = (
        f"MISSING on {', '.join(blind)}: their changes are not checked until 'guard install'"
        if blind
        else "triggers in place"
    )
    return "\n".join(
        [
            f"installed  guard schema version {report['installed_version']}",
            f"capture    {capture_line}",
            f"outbox     {report['outbox_waiting']} captured changes not yet checked",
            *_dead_lines(report["outbox_dead"]),
            f"queues     {queue_line}",
            f"findings   {findings_line}",
        ]
    )


def _dead_lines(dead: list[dict[str, Any]]) -> list[str]:
    """One line per parked change, and how to put them back."""
    if not dead:
        return []
    lines = [f"dead       {len(dead)} parked after failing every check (guard outbox requeue ID|--all):"]
    for row in dead:
        why = printable(str(row["last_error"] or "no error recorded"))[:120]
        lines.append(f"  {row['id']:>8}  {row['table']} {printable(row['key'])}  {row['attempts']}x: {why}")
    return lines
