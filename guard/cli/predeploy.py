"""The pre-deploy gate's own step: run an operator's command and judge it by its exit code."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Sequence
from typing import TextIO

import psycopg

from guard.config.settings import Settings
from guard.continuous.capture import installed_version
from guard.db.database import Database
from guard.errors import GuardError
from guard.findings.acks import Ack, Acknowledged, active
from guard.findings.finding import CheckResult, Finding
from guard.fs.paths import printable


def run_command(command: str) -> CheckResult:
    """Run a shell command with its output sent to stderr, so stdout stays ours."""
    started = time.perf_counter()
    completed = subprocess.run(command, shell=True, stdout=sys.stderr, stderr=sys.stderr, check=False)
    elapsed = time.perf_counter() - started
    name = f"run: {command}"
    if completed.returncode == 0:
        return CheckResult(name, {"command_failed": 0}, (), elapsed, {"exit_code": 0})
    finding = Finding(name, "command_failed", command, f"exited with {completed.returncode}")
    return CheckResult(name, {"command_failed": 1}, (finding,), elapsed, {"exit_code": completed.returncode})


def acknowledgements(settings: Settings) -> list[Ack]:
    """Return the live acknowledgements, or none where guard is not installed or not reachable.

    An unreachable database is the checks' to report (exit 3); it must not fail here first.
    """
    if settings.database_url is None:
        return []
    try:
        with Database(settings.require_database_url()) as db:
            return active(db) if installed_version(db) is not None else []
    except (GuardError, psycopg.Error):
        return []


def write_acknowledged(known: Sequence[Acknowledged], skipped: Sequence[str], out: TextIO) -> None:
    """List what did not count against the verdict: acknowledged findings and skipped checks."""
    if known:
        out.write(f"\nacknowledged ({len(known)}, not failing the deploy):\n")
        for k in known:
            f = k.finding
            out.write(
                f"  {f.check} {f.kind} {printable(f.subject)}  ack {k.ack.id} {printable(k.ack.describe())}\n"
            )
    if skipped:
        out.write(f"\nskipped: {', '.join(skipped)}\n")
