"""The pre-deploy gate's own step: run an operator's command and judge it by its exit code."""

from __future__ import annotations

import subprocess
import sys
import time

from guard.findings.finding import CheckResult, Finding


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
