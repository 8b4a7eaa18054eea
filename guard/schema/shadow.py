"""The shadow database the migrations are replayed into: uniquely named, dropped on every way out."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import psycopg
from psycopg import sql

from guard.db.database import Database
from guard.db.scratch import claim, scratch_database_name
from guard.db.servers import create_database, drop_database, url_with_database
from guard.errors import ConfigError, GuardError
from guard.plural import plural

# One advisory lock key for a SHADOW_DATABASE_URL database, so two drift checks take turns on it.
SHADOW_LOCK_KEY = 0x67756172645F7368  # "guard_sh"
SYSTEM_SCHEMAS = ("pg_catalog", "information_schema", "pg_toast")

USER_SCHEMAS = """
SELECT n.nspname, pg_get_userbyid(n.nspowner), has_schema_privilege('public', n.oid, 'USAGE')
FROM pg_namespace n
WHERE n.nspname <> ALL(%s) AND n.nspname NOT LIKE 'pg\\_temp\\_%%'
  AND n.nspname NOT LIKE 'pg\\_toast\\_temp\\_%%'
"""
USER_OBJECTS = """
SELECT (SELECT count(*) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
        WHERE n.nspname <> ALL(%(system)s) AND n.nspname NOT LIKE 'pg\\_%%')
     + (SELECT count(*) FROM pg_type t JOIN pg_namespace n ON n.oid = t.typnamespace
        WHERE n.nspname <> ALL(%(system)s) AND n.nspname NOT LIKE 'pg\\_%%')
     + (SELECT count(*) FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
        WHERE n.nspname <> ALL(%(system)s) AND n.nspname NOT LIKE 'pg\\_%%')
"""


@contextmanager
def shadow_database(
    live_url: str, shadow_url: str | None = None, prefix: str = "guard_shadow"
) -> Iterator[Database]:
    """Yield an empty database to replay migrations into: a temporary one, or SHADOW_DATABASE_URL's.

    The process's signal handlers are left alone: the `guard` command turns SIGTERM into an
    exception (guard/cli/main.py), so the `finally` below drops the shadow; a run killed outright leaves
    it to the next run's sweep of stale scratch databases (guard/db/scratch.py).
    """
    if shadow_url:
        with _given(shadow_url) as db:
            yield db
    else:
        with _temporary(live_url, prefix) as db:
            yield db


@contextmanager
def _temporary(live_url: str, prefix: str) -> Iterator[Database]:
    """Create `<prefix>_<time>_<random>` (guard_shadow_...) next to the live database; always drop it."""
    name = scratch_database_name(prefix)
    with Database(live_url, application_name="incident-guard shadow") as admin:
        claim(admin, name)
        try:
            admin.execute(create_database(name, utf8=False))
        except psycopg.errors.InsufficientPrivilege:
            raise ConfigError(
                "cannot create the shadow database (no CREATEDB privilege); "
                "set SHADOW_DATABASE_URL to an empty database"
            ) from None
        try:
            with Database(url_with_database(live_url, name)) as shadow:
                yield shadow
        finally:
            _drop(admin, live_url, name)


def create_schema(shadow: Database, name: str) -> None:
    """Create the live database's current schema in the shadow, as Prisma's deploy does for `?schema=`."""
    shadow.execute(sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(sql.Identifier(name)))


def _drop(admin: Database, live_url: str, name: str) -> None:
    """Drop the shadow, retrying once on a fresh connection if the first one was broken by a signal."""
    drop = drop_database(name)
    try:
        admin.execute(drop)
    except (psycopg.Error, GuardError):
        admin.close()
        with Database(live_url, application_name="incident-guard shadow") as fresh:
            fresh.execute(drop)


@contextmanager
def _given(url: str) -> Iterator[Database]:
    """Use an existing empty database, one run at a time, and empty it again afterwards."""
    with Database(url, application_name="incident-guard shadow") as shadow:
        shadow.execute("SELECT pg_advisory_lock(%s)", (SHADOW_LOCK_KEY,))
        try:
            schemas = shadow.fetch_all(USER_SCHEMAS, (list(SYSTEM_SCHEMAS),))
            row = shadow.fetch_one(USER_OBJECTS, {"system": list(SYSTEM_SCHEMAS)})
            if row and row[0]:
                raise ConfigError(
                    f"SHADOW_DATABASE_URL must name an empty database (it holds {plural(row[0], 'object')})"
                )
            try:
                yield shadow
            finally:
                _reset(shadow, schemas)
        finally:
            shadow.execute("SELECT pg_advisory_unlock(%s)", (SHADOW_LOCK_KEY,))


def _reset(shadow: Database, before: list[tuple[object, ...]]) -> None:
    """Drop everything the replay created: new schemas, and the old ones recreated empty."""
    kept = {str(name): (str(owner), bool(usage)) for name, owner, usage in before}
    for (name,) in shadow.fetch_all("SELECT extname FROM pg_extension WHERE extname <> 'plpgsql'"):
        shadow.execute(sql.SQL("DROP EXTENSION IF EXISTS {} CASCADE").format(sql.Identifier(name)))
    for name, _owner, _usage in shadow.fetch_all(USER_SCHEMAS, (list(SYSTEM_SCHEMAS),)):
        shadow.execute(sql.SQL("DROP SCHEMA {} CASCADE").format(sql.Identifier(name)))
    for name, (owner, usage) in kept.items():
        shadow.execute(
            sql.SQL("CREATE SCHEMA {} AUTHORIZATION {}").format(sql.Identifier(name), sql.Identifier(owner))
        )
        if usage:
            shadow.execute(sql.SQL("GRANT USAGE ON SCHEMA {} TO PUBLIC").format(sql.Identifier(name)))
