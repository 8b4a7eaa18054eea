"""What guard did, kept for the weekly numbers: each predeploy, backup, prune, drill, copy and sweep.

Recording never fails the work it records: a history row that cannot be written (the database went
away, guard is older than the tables) is one warning on stderr (the Python logger's last resort when
nothing configured logging, a worker's log otherwise), and the work still counts as it finished.
"""

from __future__ import annotations

import functools
import logging
import time
from collections.abc import Callable, Sequence
from typing import Any, Concatenate, ParamSpec, TypeVar

import psycopg
from psycopg.types.json import Jsonb

from guard.config.redact import redact
from guard.config.settings import Settings
from guard.db.database import Database
from guard.errors import GuardError
from guard.findings.finding import CheckResult

log = logging.getLogger("guard.history")

PREDEPLOY, BACKUP, PRUNE, DRILL, COPY, SWEEP = "predeploy", "backup", "prune", "drill", "copy", "sweep"
KINDS = (PREDEPLOY, BACKUP, PRUNE, DRILL, COPY, SWEEP)
PASS, WARN, FAIL = "pass", "warn", "fail"  # a predeploy run's verdict
OK, FAILED = "ok", "failed"  # everything else
COMMAND_PREFIX = "run: "  # a predeploy --run command's result (guard/cli/predeploy.py)
RECORD = "INSERT INTO guard.history_events (kind, outcome, details) VALUES (%s, %s, %s)"
GUARD_SCHEMA = "SELECT to_regclass('guard.version') IS NOT NULL"
# The deleted events are added to guard.history_forgotten in the same statement (counters never fall).
FORGET_EVENTS = """
WITH gone AS (
    DELETE FROM guard.history_events WHERE at < now() - make_interval(days => %s) RETURNING kind, outcome
), counted AS (
    INSERT INTO guard.history_forgotten AS f (kind, outcome, events)
    SELECT kind, outcome, count(*) FROM gone GROUP BY kind, outcome
    ON CONFLICT (kind, outcome) DO UPDATE SET events = f.events + excluded.events
)
SELECT count(*) FROM gone
"""
FORGET_DAYS = "DELETE FROM guard.history_daily WHERE day < (now() AT TIME ZONE 'UTC')::date - %s::integer"

P = ParamSpec("P")
R = TypeVar("R")
Judge = Callable[[R], tuple[str | None, dict[str, Any]]]  # outcome None: not recorded


def record(settings: Settings, kind: str, outcome: str, details: dict[str, Any] | None = None) -> bool:
    """Add one event to guard.history_events; say why on stderr (never raise) when it cannot be added.

    Returns whether it was recorded. Nothing is said where guard was never installed (a CI database):
    there is no history to keep there.
    """
    if settings.database_url is None:
        return False
    try:
        with Database(settings.require_database_url(), application_name="guard-history") as db:
            try:
                db.execute(RECORD, (kind, outcome, Jsonb(details or {})))
            except psycopg.errors.UndefinedTable:
                if _installed(db):
                    log.warning("guard: history: %s not recorded: run 'guard install' to upgrade", kind)
                return False
        return True
    except (GuardError, psycopg.Error) as exc:
        why = redact(str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__)
        log.warning("guard: history: %s %s not recorded: %s", kind, outcome, why)
        return False


def _installed(db: Database) -> bool:
    row = db.fetch_one(GUARD_SCHEMA)
    return bool(row and row[0])


def recorded(
    kind: str, judge: Judge[R]
) -> Callable[[Callable[Concatenate[Settings, P], R]], Callable[Concatenate[Settings, P], R]]:
    """Record each call of a `run_*(settings, ...)` as one event: judged by its result, or failed.

    Every exception is a failure (an unreachable database, a missing BACKUP_DIR on a scheduled job:
    the backup did not happen); an interrupt (Ctrl-C, the command's SIGTERM) is not recorded.
    """

    def wrap(run: Callable[Concatenate[Settings, P], R]) -> Callable[Concatenate[Settings, P], R]:
        @functools.wraps(run)
        def recording(settings: Settings, /, *args: P.args, **kwargs: P.kwargs) -> R:
            started = time.monotonic()
            try:
                result = run(settings, *args, **kwargs)
            except Exception as exc:
                why = failure(exc, settings)
                record(settings, kind, FAILED, {"error": why, "seconds": _since(started)})
                raise
            outcome, details = judge(result)
            if outcome is not None:  # None: nothing happened worth a history row (a dry run)
                record(settings, kind, outcome, {**details, "seconds": _since(started)})
            return result

        return recording

    return wrap


def failure(exc: BaseException, settings: Settings) -> str:
    """Say why a run failed in one line, without a password, DSN or webhook, short enough to keep."""
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    line = redact(f"{type(exc).__name__}: {text}" if text else type(exc).__name__)
    for secret in settings.secret_values():
        line = line.replace(secret, "***")
    return line[:500]


def _since(started: float) -> float:
    return round(time.monotonic() - started, 3)


def forget(db: Database, days: int) -> tuple[int, int]:
    """Delete events and daily snapshots older than `days` days; return how many of each."""
    row = db.fetch_one(FORGET_EVENTS, (days,))
    return int(row[0]) if row else 0, db.execute(FORGET_DAYS, (days,))


def record_predeploy(
    settings: Settings, results: Sequence[CheckResult], checks: Sequence[str], code: int
) -> bool:
    """Record one predeploy run: pass, warn (passed with warnings) or fail, and what failed.

    The operator's --run commands are counted, never stored: a command line may hold a secret.
    """
    warnings = sum(r.warnings for r in results)
    verdict = FAIL if code != 0 else WARN if warnings else PASS
    commands = [r for r in results if r.name.startswith(COMMAND_PREFIX)]
    details = {
        "checks": list(checks),
        "failed": [r.name for r in results if not r.ok and not r.name.startswith(COMMAND_PREFIX)],
        "commands": len(commands),
        "commands_failed": sum(1 for r in commands if not r.ok),
        "warnings": warnings,
        "exit_code": code,
    }
    return record(settings, PREDEPLOY, verdict, details)
