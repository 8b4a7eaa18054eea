"""Prisma's real CLI accepts the history guard writes: `guard demo` worlds and `guard migrations baseline`."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from guard.schema.history import read_migrations
from tests.acceptance.cli import guard
from tests.conftest import MIGRATIONS, create_database, drop_database, unique_name
from tests.prisma_cli import database_url, prisma, project

pytestmark = pytest.mark.acceptance

INIT = "20240101000000_init"
DEV = ("migrate", "dev", "--skip-generate", "--skip-seed")
# What Prisma's four commands print for a database whose history is complete and unchanged.
ACCEPTED = [
    (("migrate", "status"), 0, "Database schema is up to date!"),
    (("migrate", "deploy"), 0, "No pending migrations to apply."),
    (DEV, 0, "Already in sync, no schema change or pending migration was found."),
    (("migrate", "resolve", "--applied", INIT), 1, f"P3008\nThe migration `{INIT}` is already recorded"),
]
ROW_SHAPE = """
SELECT logs, applied_steps_count, rolled_back_at IS NULL, finished_at = started_at,
       extract(microseconds FROM started_at)::bigint % 1000 = 0
FROM _prisma_migrations ORDER BY started_at
"""
ORDER = "SELECT migration_name FROM _prisma_migrations ORDER BY started_at"
DISTINCT_STARTS = "SELECT count(DISTINCT started_at) FROM _prisma_migrations"
COLUMNS = """
SELECT column_name, data_type, character_maximum_length, is_nullable, column_default
FROM information_schema.columns WHERE table_name = '_prisma_migrations' ORDER BY ordinal_position
"""


def unrecorded() -> str:
    """Create a database with the thulobazaar schema built by its migrations and no history."""
    name = unique_name("guard_prisma_nohist")
    create_database(name)
    with psycopg.connect(database_url(name), autocommit=True) as conn:
        for migration in read_migrations(MIGRATIONS):
            conn.execute(migration.content)
    return name


def baseline(name: str, migrations: Path = MIGRATIONS) -> None:
    env = {"DATABASE_URL": database_url(name), "MIGRATIONS_DIR": str(migrations)}
    done = guard("migrations", "baseline", env=env)
    assert done.returncode == 0, done.stdout + done.stderr


@pytest.fixture
def demo_world(tmp_path: Path) -> Iterator[str]:
    """A world built by the real `guard demo`."""
    name = unique_name("guard_prisma_demo")
    try:
        done = guard("demo", "--ads", "40", "--bad", "0", "--db", name, "--uploads", str(tmp_path / "up"))
        assert done.returncode == 0, done.stderr
        yield name
    finally:
        drop_database(name)


@pytest.fixture
def baselined() -> Iterator[str]:
    """A database whose history was written by the real `guard migrations baseline`."""
    name = unrecorded()
    try:
        baseline(name)
        yield name
    finally:
        drop_database(name)


@pytest.mark.parametrize("world", ["demo_world", "baselined"])
def test_prisma_accepts_the_history_guard_wrote(
    request: pytest.FixtureRequest, tmp_path: Path, world: str
) -> None:
    url = database_url(request.getfixturevalue(world))
    migrations = project(tmp_path)
    for command, code, says in ACCEPTED:
        verdict = prisma(migrations, url, *command)
        assert verdict.code == code and says in verdict.text, verdict


def test_baseline_writes_the_rows_and_table_migrate_resolve_applied_writes(tmp_path: Path) -> None:
    by_prisma, by_guard = unrecorded(), unrecorded()
    try:
        resolved = prisma(project(tmp_path), database_url(by_prisma), "migrate", "resolve", "--applied", INIT)
        assert resolved.code == 0, resolved
        baseline(by_guard)
        with psycopg.connect(database_url(by_prisma)) as conn:
            (prisma_row,) = conn.execute(ROW_SHAPE).fetchall()
            prisma_columns = conn.execute(COLUMNS).fetchall()
        with psycopg.connect(database_url(by_guard)) as conn:
            guard_rows = conn.execute(ROW_SHAPE).fetchall()
            guard_columns = conn.execute(COLUMNS).fetchall()
            order = conn.execute(ORDER).fetchall()
            (distinct,) = conn.execute(DISTINCT_STARTS).fetchone()  # type: ignore[misc]
    finally:
        drop_database(by_prisma)
        drop_database(by_guard)
    assert prisma_row == ("", 0, True, True, True)
    assert guard_rows == [prisma_row] * len(read_migrations(MIGRATIONS))
    assert guard_columns == prisma_columns
    assert [n for (n,) in order] == [m.name for m in read_migrations(MIGRATIONS)]
    assert distinct == len(order), "each row has its own started_at, as one resolve per migration writes"
