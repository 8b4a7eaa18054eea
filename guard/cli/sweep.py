"""`guard sweep`: run whole checks now, through the workers as beat does, or in this process."""

from __future__ import annotations

import argparse
import json
import time
import uuid
from collections.abc import Sequence
from typing import Any

from guard.config.settings import Settings
from guard.continuous import runs
from guard.continuous.capture import installed_version
from guard.db.database import Database
from guard.errors import EXIT_FINDINGS, EXIT_OK, ConfigError, UnreachableError
from guard.findings import acks as known

SWEEPS = ("integrity", "files", "migrations", "drift")
NEED_MIGRATIONS = ("migrations", "drift")
POLL_S = 0.3
OPEN = (
    "SELECT check_name, kind, subject FROM guard.findings WHERE resolved_at IS NULL AND check_name = ANY(%s)"
)


def register(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add sweep to the guard command."""
    sweep = commands.add_parser(
        "sweep",
        help="run a full sweep now (through the workers, or --here)",
        description="Send the same Celery tasks beat sends (guard.sweep on the sweeps queue) and wait "
        "for the workers to finish them, then print each check's open findings; with --here, run the "
        "sweeps in this process instead (no broker, no worker). 'all' is integrity and files, plus "
        "migrations and drift when MIGRATIONS_DIR is set. Needs 'guard install' (the findings ledger).",
        epilog="examples:\n  guard sweep drift\n  guard sweep all --timeout 900\n"
        "  guard sweep files --here\n\n"
        "exit codes: 0 nothing open, 1 findings open (not acknowledged), 2 usage or configuration, "
        "3 the database or broker cannot be reached, or the workers did not finish within --timeout",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sweep.add_argument("name", nargs="?", default="all", choices=[*SWEEPS, "all"], help="default: all")
    sweep.add_argument("--here", action="store_true", help="run in this process, not through the workers")
    sweep.add_argument(
        "--timeout",
        type=float,
        default=600.0,
        metavar="S",
        help="seconds to wait for the workers (default 600)",
    )
    sweep.add_argument("--json", action="store_true", help="print one JSON object")
    sweep.set_defaults(handler=run_sweep_command)


def chosen(name: str, settings: Settings) -> tuple[list[str], list[str]]:
    """Return the sweeps to run and those left out because MIGRATIONS_DIR is not set."""
    if name != "all":
        if name in NEED_MIGRATIONS:
            settings.require_migrations_dir()
        return [name], []
    if settings.migrations_dir is None:
        return [n for n in SWEEPS if n not in NEED_MIGRATIONS], list(NEED_MIGRATIONS)
    return list(SWEEPS), []


def run_sweep_command(args: argparse.Namespace, settings: Settings) -> int:
    names, skipped = chosen(args.name, settings)
    url = settings.require_database_url()
    with Database(url) as db:
        if installed_version(db) is None:
            raise ConfigError("guard is not installed in this database: run 'guard install' first")
    started = time.monotonic()
    changes = here(settings, names) if args.here else through_workers(settings, names, args.timeout)
    with Database(url) as db:
        opened = db.fetch_all(OPEN, (names,))
        acks = known.active(db)
    summary = _summary(names, changes, opened, acks)
    blocking = sum(s["open"] - s["acknowledged"] for s in summary)
    where = "here" if args.here else "workers"
    said = "in this process" if args.here else "by the workers"
    if args.json:
        document: dict[str, Any] = {"ok": blocking == 0, "ran": where, "skipped": skipped, "sweeps": summary}
        document["duration_s"] = round(time.monotonic() - started, 3)
        print(json.dumps(document))
    else:
        for s in summary:
            moved = f"; opened {s['opened']}, resolved {s['resolved']}" if "opened" in s else ""
            acked = f" ({s['acknowledged']} acknowledged)" if s["acknowledged"] else ""
            print(f"sweep {s['check']}: done {said}{moved}; {s['open']} open{acked}")
        if skipped:
            print(f"skipped: {', '.join(skipped)} (MIGRATIONS_DIR is not set)")
    return EXIT_FINDINGS if blocking else EXIT_OK


def here(settings: Settings, names: Sequence[str]) -> dict[str, dict[str, int]]:
    """Run each sweep in this process and return what it opened and resolved."""
    from guard.continuous.process import run_sweep

    done = {}
    for name in names:
        changes = run_sweep(settings, name)
        done[name] = {"opened": changes.opened, "resolved": changes.resolved}
    return done


def through_workers(settings: Settings, names: Sequence[str], timeout: float) -> dict[str, dict[str, int]]:
    """Send beat's sweep tasks and wait until a worker has recorded each run finished."""
    # Imported here: Celery costs every other guard command its start-up, and the core never imports it.
    # watchers/publish.py is the producer-only app, so the worker's own configuration is not needed.
    from watchers.publish import Publisher, producer
    from watchers.transient import TRANSIENT

    publisher = Publisher(producer(settings))
    keys = {name: f"guard-sweep-{name}-{uuid.uuid4().hex}" for name in names}
    try:
        for name, key in keys.items():
            publisher.sweep(name, key)
    except TRANSIENT as exc:
        raise UnreachableError(f"cannot reach the broker: {exc}") from None
    deadline = time.monotonic() + timeout
    with Database(settings.require_database_url()) as db:
        while True:
            waiting = sorted(set(keys.values()) - runs.finished(db, list(keys.values())))
            if not waiting:
                return {}
            if time.monotonic() >= deadline:
                left = [n for n, k in keys.items() if k in waiting]
                raise UnreachableError(
                    f"the workers did not finish sweep {', '.join(left)} within {timeout:.0f} s "
                    "(is a worker consuming the 'sweeps' queue?); the tasks stay queued"
                )
            time.sleep(POLL_S)


def _summary(
    names: Sequence[str], changes: dict[str, dict[str, int]], opened: Sequence[Any], acks: list[known.Ack]
) -> list[dict[str, Any]]:
    out = []
    for name in names:
        rows = [r for r in opened if r[0] == name]
        acked = sum(1 for r in rows if known.covering(acks, str(r[0]), str(r[1]), str(r[2])) is not None)
        out.append({"check": name, **changes.get(name, {}), "open": len(rows), "acknowledged": acked})
    return out
