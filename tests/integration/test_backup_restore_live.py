"""A forced restore over a live database keeps what a dump does not hold: settings, owner, grants."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from backup_support import SERVER_URL, World, make_world
from psycopg import sql

from guard.backup import run_backup
from guard.backup.restore import restore_backup

pytestmark = pytest.mark.integration

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


@pytest.fixture
def roles() -> Iterator[tuple[str, str]]:
    """Two login roles made for this test: an owner for the database and a reader granted on it."""
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


def test_a_forced_restore_over_a_live_database_keeps_each_database_level_property(
    world: World, roles: tuple[str, str]
) -> None:
    backup = run_backup(world.settings)
    dress(world.name, *roles)
    before = properties(world.name)
    assert all(before.values()), before  # each property is really set, so losing it shows

    result = restore_backup(
        world.settings, backup.id, target_db=world.name, uploads_dir=world.root, force=True
    )

    after = properties(world.name)
    for key in PROPERTIES:
        assert after[key] == before[key], f"the database's {key} was not carried over"
    assert result.replaced is not None and result.replaced.oid_changed


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
