"""The checks guard runs, by name, in the order `check all` and `predeploy` run them."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from guard.config.settings import Settings
from guard.errors import UnreachableError
from guard.findings.finding import CheckResult
from guard.progress import ProgressFactory, no_progress


@dataclass(frozen=True)
class CheckContext:
    """What every check gets: the settings, how many examples to keep, and a progress bar maker.

    `deploying` is set by `predeploy`: the pending migrations are what the deploy is about to apply,
    so each is a warning there (the migration lint judges whether applying it is safe).
    """

    settings: Settings
    limit: int | None = 20
    progress: ProgressFactory = no_progress
    deploying: bool = False


CheckFn = Callable[[CheckContext], CheckResult]


CHECK_NAMES = ("health", "integrity", "files", "migrations", "drift")


def registry() -> dict[str, CheckFn]:
    """Return the checks by name, in running order; each module is imported when its check runs."""
    return {name: _imported_when_run(name) for name in CHECK_NAMES}


def _imported_when_run(name: str) -> CheckFn:
    # Listing the checks (every command line is parsed with their names) must not import them all:
    # the migrations check alone pulls in pglast, a tenth of a second of every command's start.
    def run(context: CheckContext) -> CheckResult:
        # __import__, not importlib.import_module: the import statement's path, so `-X importtime`
        # (and the test that reads it) sees the module.
        module = __import__(f"guard.checks.{name}", fromlist=["run"])
        result: CheckResult = module.run(context)
        return result

    run.__name__ = run.__qualname__ = f"{name}_run"
    return run


def run_checks(context: CheckContext, names: Sequence[str]) -> list[CheckResult]:
    """Run checks in order; a check that cannot reach what it needs becomes an errored result."""
    checks = registry()
    results = []
    for name in names:
        try:
            results.append(checks[name](context))
        except UnreachableError as exc:
            results.append(CheckResult(name=name, counts={}, findings=(), error=str(exc)))
    return results
