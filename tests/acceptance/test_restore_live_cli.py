"""`guard restore ID --target-db LIVE --force`: asks first, says how many sessions it ends, or refuses."""

from __future__ import annotations

import os
import pty
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from guard.demo.world import build_world, drop_world
from tests.acceptance.cli import _SETTINGS_VARS, GUARD, ROOT, guard

pytestmark = pytest.mark.acceptance

SERVER_URL = os.environ.get("GUARD_TEST_SERVER_URL", "postgresql://postgres@127.0.0.1:5432/postgres")


@pytest.fixture
def env(tmp_path: Path) -> Iterator[dict[str, str]]:
    """A small demo world, one backup of it, and the settings to restore over it."""
    name = f"guard_test_live_{uuid.uuid4().hex[:12]}"
    truth = build_world(SERVER_URL, name, tmp_path / "uploads", 30, 0.0)
    settings = {
        "DATABASE_URL": str(truth["database_url"]),
        "UPLOADS_ROOT": str(tmp_path / "uploads"),
        "BACKUP_DIR": str(tmp_path / "backups"),
    }
    try:
        done = guard("backup", env=settings)
        assert done.returncode == 0, done.stderr
        yield {**settings, "NAME": name}
    finally:
        drop_world(SERVER_URL, name, tmp_path / "uploads")


def restore_over_live(
    env: dict[str, str], *extra: str, stdin: int | None = None
) -> subprocess.CompletedProcess[str]:
    """Run `guard restore <newest> --target-db <live> --uploads-dir <live> --force` with no terminal."""
    newest = sorted(p.name for p in (Path(env["BACKUP_DIR"]) / "backups").iterdir())[-1]
    base = {k: v for k, v in os.environ.items() if k not in _SETTINGS_VARS}
    args = ["restore", newest, "--target-db", env["NAME"], "--uploads-dir", env["UPLOADS_ROOT"], "--force"]
    return subprocess.run(
        [*GUARD, *args, *extra],
        env={**base, **{k: v for k, v in env.items() if k != "NAME"}},
        stdin=subprocess.DEVNULL if stdin is None else stdin,
        capture_output=True,
        text=True,
        timeout=300,
        cwd=ROOT,
        check=False,
    )


def open_sessions(env: dict[str, str], count: int) -> list[psycopg.Connection[tuple[object, ...]]]:
    """Open sessions on the live database, as an operator's psql would be.

    First wait for the fixture's `guard backup` sessions to leave: a closed connection's backend stays
    in pg_stat_activity for a moment, and the count the restore reports would include it.
    """
    deadline = time.monotonic() + 30
    with psycopg.connect(SERVER_URL, autocommit=True) as conn:
        query = "SELECT count(*) FROM pg_stat_activity WHERE datname = %s"
        while conn.execute(query, (env["NAME"],)).fetchone() != (0,) and time.monotonic() < deadline:
            time.sleep(0.02)
    return [psycopg.connect(env["DATABASE_URL"], autocommit=True) for _ in range(count)]


def alive(conn: psycopg.Connection[tuple[object, ...]]) -> bool:
    try:
        conn.execute("SELECT 1")
    except psycopg.OperationalError:
        return False
    return True


def database_oid(name: str) -> object:
    with psycopg.connect(SERVER_URL) as conn:
        row = conn.execute("SELECT oid FROM pg_database WHERE datname = %s", (name,)).fetchone()
    return row[0] if row else None


def test_without_a_terminal_or_yes_it_refuses_in_one_line_and_changes_nothing(env: dict[str, str]) -> None:
    sessions = open_sessions(env, 2)
    oid = database_oid(env["NAME"])
    done = restore_over_live(env)
    assert done.returncode == 2, done.stderr
    assert len(done.stderr.strip().splitlines()) == 1, done.stderr
    assert "2 open sessions" in done.stderr and "--yes" in done.stderr
    assert all(alive(c) for c in sessions)
    assert database_oid(env["NAME"]) == oid


def test_with_yes_it_replaces_the_database_and_says_how_many_sessions_it_ended(env: dict[str, str]) -> None:
    sessions = open_sessions(env, 3)
    done = restore_over_live(env, "--yes")
    assert done.returncode in (0, 1), done.stderr
    assert "ended 3 open sessions" in done.stdout
    assert "carried over" in done.stdout and "oid" in done.stdout
    assert not any(alive(c) for c in sessions)


@pytest.mark.parametrize(("answer", "replaced"), [("no", False), ("NAME", True)])
def test_on_a_terminal_it_asks_and_only_the_database_name_goes_on(
    env: dict[str, str], answer: str, replaced: bool
) -> None:
    sessions = open_sessions(env, 1)
    oid = database_oid(env["NAME"])
    controller, terminal = pty.openpty()
    try:
        os.write(controller, f"{env['NAME'] if answer == 'NAME' else answer}\n".encode())
        done = restore_over_live(env, stdin=terminal)
    finally:
        os.close(terminal)
        os.close(controller)
    assert "1 open session" in done.stderr, done.stderr
    if replaced:
        assert done.returncode in (0, 1), done.stderr
        assert database_oid(env["NAME"]) != oid
        assert not alive(sessions[0])
    else:
        assert done.returncode == 2, done.stderr
        assert database_oid(env["NAME"]) == oid
        assert alive(sessions[0])
