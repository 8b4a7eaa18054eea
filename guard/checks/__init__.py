"""The checks guard runs, by name, in the order `check all` and `predeploy` run them."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from guard.finding import CheckResult
from guard.progress import ProgressFactory, no_progress
from guard.settings import Settings


@dataclass(frozen=True)
class CheckContext:
    """What every check gets: the settings, how many examples to keep, and a progress bar maker."""

    settings: Settings
    limit: int | None = 20
    progress: ProgressFactory = no_progress


CheckFn = Callable[[CheckContext], CheckResult]


def registry() -> dict[str, CheckFn]:
    """Return the checks by name, in running order."""
    from guard.checks import drift, files, health, integrity, migrations

    return {
        "health": health.run,
        "integrity": integrity.run,
        "files": files.run,
        "migrations": migrations.run,
        "drift": drift.run,
    }
