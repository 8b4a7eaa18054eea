"""`guard --help` and `guard check` load no broker, watcher or Redis library (`python -X importtime`)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.acceptance.cli import MIGRATIONS_DIR, guard
from tests.conftest import url_for

pytestmark = pytest.mark.acceptance

HEAVY = ("celery", "kombu", "watchdog", "redis")


def loaded(importtime: str) -> set[str]:
    """Return the modules one `-X importtime` report names (its stderr)."""
    modules = set()
    for line in importtime.splitlines():
        if line.startswith("import time:") and "|" in line:
            modules.add(line.rsplit("|", 1)[1].strip())
    return modules


def heavy(modules: set[str]) -> list[str]:
    return sorted(m for m in modules if m.split(".")[0] in HEAVY)


# PYTHONPROFILEIMPORTTIME=1 is `python -X importtime`: each import's time and name on stderr
IMPORTTIME = {"PYTHONPROFILEIMPORTTIME": "1"}


def test_the_report_is_read_as_python_writes_it() -> None:
    report = (
        "import time: self [us] | cumulative | imported package\nimport time:  10 |  20 |   redis.client\n"
    )
    assert heavy(loaded(report)) == ["redis.client"]


def test_guard_help_loads_neither_celery_watchdog_nor_redis() -> None:
    done = guard("--help", env=IMPORTTIME)
    assert done.returncode == 0, done.stderr
    assert "guard.cli.main" in loaded(done.stderr)
    assert heavy(loaded(done.stderr)) == []


@pytest.mark.parametrize("check", ["health", "all"])
def test_guard_check_loads_neither_celery_watchdog_nor_redis(
    check: str, template_db: str, tmp_path: Path
) -> None:
    (tmp_path / "uploads" / "ads").mkdir(parents=True)
    env = {
        "DATABASE_URL": url_for(template_db),
        "UPLOADS_ROOT": str(tmp_path),
        "MIGRATIONS_DIR": MIGRATIONS_DIR,
    }
    done = guard("check", check, env={**env, **IMPORTTIME})
    assert done.returncode == 0, done.stderr[-2000:]
    assert "guard.checks.health" in loaded(done.stderr)
    assert heavy(loaded(done.stderr)) == []


def test_guard_check_files_loads_no_other_commands_modules(template_db: str, tmp_path: Path) -> None:
    # the other commands' parsers pull in the backup store, tenacity and pglast: a third of the start
    (tmp_path / "uploads" / "ads").mkdir(parents=True)
    env = {"DATABASE_URL": url_for(template_db), "UPLOADS_ROOT": str(tmp_path)}
    done = guard("check", "files", "--json", env={**env, **IMPORTTIME})
    assert done.returncode == 0, done.stderr[-2000:]
    modules = loaded(done.stderr)
    assert "guard.checks.files" in modules
    assert not [m for m in modules if m.startswith(("guard.cli.backup", "guard.backup", "pglast", "rich"))]
