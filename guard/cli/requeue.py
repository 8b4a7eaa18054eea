"""`guard outbox requeue`: put changes parked after failing every check back into the outbox."""

from __future__ import annotations

import argparse
import json

from guard.config.settings import Settings
from guard.continuous import outbox
from guard.continuous.capture import installed_version
from guard.db.database import Database
from guard.errors import EXIT_OK, ConfigError, UsageError


def register(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add outbox requeue to the guard command."""
    box = commands.add_parser(
        "outbox",
        help="manage the outbox of captured changes (re-queue parked ones)",
        description="A change whose check failed outbox_max_attempts times is parked as dead, with "
        "a check_failed finding naming its table, key and last error; `guard status` lists them.",
    )
    actions = box.add_subparsers(dest="outbox_command", required=True, metavar="ACTION")
    requeue = actions.add_parser(
        "requeue",
        help="send parked changes to be checked again (after fixing what made them fail)",
        description="Put parked outbox rows back to be claimed, with their attempts reset, and "
        "resolve their check_failed findings (a row that fails again is parked again).",
        epilog="examples:\n  guard outbox requeue --all\n  guard outbox requeue 41 42\n\n"
        "exit codes: 0 done, 2 no ID and no --all, or an ID that is not parked, "
        "3 the database cannot be reached",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    requeue.add_argument("ids", nargs="*", type=int, metavar="ID", help="parked outbox row ids")
    requeue.add_argument("--all", action="store_true", help="every parked row")
    requeue.add_argument("--json", action="store_true", help="print one JSON object")
    requeue.set_defaults(handler=run_requeue)


def run_requeue(args: argparse.Namespace, settings: Settings) -> int:
    """Re-queue the named parked rows, or all of them."""
    if bool(args.ids) == bool(args.all):
        raise UsageError("outbox requeue: give parked row IDs or --all (not both)")
    with Database(settings.require_database_url()) as db:
        if installed_version(db) is None:
            raise ConfigError("guard is not installed in this database: run 'guard install' first")
        back = outbox.requeue(db, None if args.all else args.ids)
    unknown = sorted(set(args.ids) - set(back))
    if args.json:
        print(json.dumps({"ok": not unknown, "requeued": back, "not_parked": unknown}))
    else:
        print(f"guard: re-queued {len(back)} parked change(s)" + (f": {back}" if back else ""))
    if unknown:
        raise UsageError(f"not a parked outbox row: {', '.join(str(i) for i in unknown)}")
    return EXIT_OK
