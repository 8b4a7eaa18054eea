"""A forced restore over a live database keeps what a dump does not hold: settings, owner, grants."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
import pytest
from backup_support import SERVER_URL, World, make_world
from psycopg import sql

from guard.backup import run_backup
from guard.backup.restorer import RestoreResult, restore_backup

# serial: it looks at every guard_* database on the server, so it runs after the parallel pass
pytestmark = [pytest.mark.integration, pytest.mark.serial]

PROPERTIES = {
    "settings": "SELECT coalesce(pg_get_userbyid(nullif(s.setrole, 0)), '*'), s.setconfig"
    " FROM pg_db_role_setting s JOIN pg_database d ON d.oid = s.setdatabase WHERE d.datname = %s"
    " ORDER BY 1",
    "owner": "SELECT pg_get_userbyid(datdba) FROM pg_database WHERE datname = %s",
    "grants": "SELECT coalesce(pg_get_userbyid(nullif(a.grantee, 0)), 'PUBLIC'), a.privilege_type,"
    " a.is_grantable FROM pg_database d, aclexplode(d.datacl) a WHERE d.datname = %s ORDER BY 1, 2",
    "comment": "SELECT shobj_description(oid, 'pg_database') FROM pg_database WHERE datname = %s",
    "connection limit": "SELECT datconnlimit FROM pg_database WHERE datname = %s",
}


@pytest.fixture
def world(tmp_path: Path) -> Iterator[World]:
    """A fresh 30-ad world with nothing planted, and an empty backup folder."""
    yield from make_world(tmp_path, ads=30, bad_rate=0.0)


def made_roles() -> Iterator[tuple[str, str]]:
    """Make two login roles: an owner for the database and a reader granted on it; drop them after."""
    tag = uuid.uuid4().hex[:8]
    made = (f"guard_test_owner_{tag}", f"guard_test_reader_{tag}")
    with psycopg.connect(SERVER_URL, autocommit=True) as conn:
        for role in made:
            conn.execute(sql.SQL("CREATE ROLE {} LOGIN").format(sql.Identifier(role)))
    try:
        yield made
    finally:
        with psycopg.connect(SERVER_URL, autocommit=True) as conn:
            for role in made:
                conn.execute(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = %s", (role,)
                )
                conn.execute(sql.SQL("REASSIGN OWNED BY {} TO CURRENT_USER").format(sql.Identifier(role)))
                conn.execute(sql.SQL("DROP OWNED BY {}").format(sql.Identifier(role)))
                conn.execute(sql.SQL("DROP ROLE {}").format(sql.Identifier(role)))


@pytest.fixture
def roles() -> Iterator[tuple[str, str]]:
    """Two login roles made for this test."""
    yield from made_roles()


def properties(name: str) -> dict[str, list[tuple[Any, ...]]]:
    """Read the database-level properties a dump does not carry, each as sorted rows."""
    with psycopg.connect(SERVER_URL) as conn:
        return {key: conn.execute(query, (name,)).fetchall() for key, query in PROPERTIES.items()}


def dress(name: str, owner: str, reader: str) -> None:
    """Give the database what an operator gives a live one: settings, owner, grants, a comment."""
    db = sql.Identifier(name)
    with psycopg.connect(SERVER_URL, autocommit=True) as conn:
        for statement in (
            sql.SQL("ALTER DATABASE {} SET statement_timeout = '5s'").format(db),
            sql.SQL("""ALTER DATABASE {} SET search_path = "$user", public, 'odd, name'""").format(db),
            sql.SQL("ALTER DATABASE {} SET app.tenant = 'north'").format(db),
            sql.SQL("ALTER ROLE {} IN DATABASE {} SET work_mem = '8MB'").format(sql.Identifier(reader), db),
            sql.SQL("ALTER DATABASE {} OWNER TO {}").format(db, sql.Identifier(owner)),
            sql.SQL("ALTER DATABASE {} CONNECTION LIMIT 40").format(db),
            sql.SQL("REVOKE ALL ON DATABASE {} FROM PUBLIC").format(db),
            sql.SQL("GRANT CONNECT ON DATABASE {} TO {} WITH GRANT OPTION").format(
                db, sql.Identifier(reader)
            ),
            sql.SQL("GRANT TEMPORARY ON DATABASE {} TO {}").format(db, sql.Identifier(reader)),
            sql.SQL("COMMENT ON DATABASE {} IS 'the shop, do not drop'").format(db),
        ):
            conn.execute(statement)


@dataclass(frozen=True)
class Replaced:
    """A database's properties before and after a forced restore over it, and what the restore said."""

    before: dict[str, list[tuple[Any, ...]]]
    after: dict[str, list[tuple[Any, ...]]]
    result: RestoreResult


@pytest.fixture(scope="module")
def replaced(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Replaced]:
    """A dressed-up live database, its properties, a forced restore over it, and its properties after."""
    for roles in made_roles():
        for world in make_world(tmp_path_factory.mktemp("live"), ads=30, bad_rate=0.0):
            backup = run_backup(world.settings)
            dress(world.name, *roles)
            before = properties(world.name)
            result = restore_backup(
                world.settings, backup.id, target_db=world.name, uploads_dir=world.root, force=True
            )
            yield Replaced(before, properties(world.name), result)


@pytest.mark.parametrize("key", list(PROPERTIES))
def test_a_forced_restore_over_a_live_database_keeps_its(replaced: Replaced, key: str) -> None:
    assert replaced.before[key], f"the test set no {key}, so losing it could not show"
    assert replaced.after[key] == replaced.before[key], f"the database's {key} was not carried over"


def test_a_forced_restore_over_a_live_database_says_it_replaced_it_and_its_oid(replaced: Replaced) -> None:
    said = replaced.result.replaced
    assert said is not None and said.oid_changed
    assert said.properties.summary().startswith("owner guard_test_owner_")


def test_the_restored_database_is_built_aside_so_a_failure_leaves_the_live_one_untouched(
    world: World, roles: tuple[str, str], tmp_path: Path
) -> None:
    backup = run_backup(world.settings)
    dress(world.name, *roles)
    with psycopg.connect(SERVER_URL) as conn:
        row = conn.execute("SELECT oid FROM pg_database WHERE datname = %s", (world.name,)).fetchone()
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "uploads").write_text("a file where the backup's uploads/ folder must go")
    with pytest.raises(Exception):  # noqa: B017 - any failure: the point is what it leaves behind
        restore_backup(world.settings, backup.id, target_db=world.name, uploads_dir=elsewhere, force=True)
    with psycopg.connect(SERVER_URL) as conn:
        after = conn.execute("SELECT oid FROM pg_database WHERE datname = %s", (world.name,)).fetchone()
        leftovers = conn.execute(
            "SELECT count(*) FROM pg_database WHERE datname LIKE 'guard\\_incoming\\_%%'"
        ).fetchone()
    assert after == row, "the live database was dropped although the restore failed"
    assert leftovers == (0,)
