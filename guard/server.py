"""The PostgreSQL server behind a connection string: its other databases, named, created and dropped.

Shadow databases, restore targets, drill scratch copies, demo worlds and test databases all need the
same three things; they are spelled once here, with names always quoted as identifiers.
"""

from __future__ import annotations

import re
import secrets
from datetime import UTC, datetime, timedelta

import psycopg
from psycopg import sql

from guard.database import Database
from guard.errors import GuardError


def url_with_database(url: str, dbname: str) -> str:
    """Return the same connection string pointing at another database on the same server."""
    return psycopg.conninfo.make_conninfo(url, dbname=dbname)


def create_database(name: str, template: str = "template0", *, utf8: bool = True) -> sql.Composed:
    """CREATE DATABASE name, from template (template0: empty), in UTF-8 so any file name fits."""
    statement = sql.SQL("CREATE DATABASE {} TEMPLATE {}").format(
        sql.Identifier(name), sql.Identifier(template)
    )
    return sql.SQL("{} ENCODING 'UTF8'").format(statement) if utf8 else statement


def drop_database(name: str) -> sql.Composed:
    """DROP DATABASE IF EXISTS name, ending its sessions first (PostgreSQL 13+)."""
    return sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))


# Databases guard creates for itself and drops when done: `<prefix>_<UTC YYYYmmddHHMMSS>_<hex>`.
# A run killed with -9 cannot drop its own, so every drift check and drill sweeps stale ones.
# Not `guard_restore_*`: a restore into a scratch database is kept for the operator to look at.
SCRATCH_PREFIXES = ("guard_shadow", "guard_drill")
SCRATCH_MAX_AGE = timedelta(hours=1)
_SCRATCH_NAME = re.compile(r"(?P<prefix>[a-z_]+)_(?P<created>\d{14})_[0-9a-f]{6,32}")
SCRATCH_CANDIDATES = "SELECT datname FROM pg_database WHERE datname LIKE ANY(%s) ORDER BY datname"
SERVER_NOW = "SELECT now()"


def scratch_database_name(prefix: str) -> str:
    """Name a scratch database so its creation time can be read back from the name alone."""
    return f"{prefix}_{datetime.now(UTC):%Y%m%d%H%M%S}_{secrets.token_hex(3)}"


def scratch_created(name: str, prefixes: tuple[str, ...] = SCRATCH_PREFIXES) -> datetime | None:
    """Return when a scratch database of ours was created, or None for any other database."""
    match = _SCRATCH_NAME.fullmatch(name)
    if match is None or match["prefix"] not in prefixes:
        return None
    try:
        return datetime.strptime(match["created"], "%Y%m%d%H%M%S").replace(tzinfo=UTC)
    except ValueError:
        return None


def stale_scratch(names: list[str], now: datetime, max_age: timedelta = SCRATCH_MAX_AGE) -> list[str]:
    """Return the names that are our scratch databases and older than max_age."""
    return [n for n in names if (created := scratch_created(n)) is not None and now - created > max_age]


def drop_stale_scratch(admin: Database) -> list[str]:
    """Drop scratch databases a killed run left behind; return their names. Never raises.

    Only names of our own format older than an hour, judged by the server's clock, and without
    FORCE: a database someone is still connected to is in use and stays for a later sweep.
    """
    try:
        names = [
            str(r[0]) for r in admin.fetch_all(SCRATCH_CANDIDATES, ([f"{p}\\_%" for p in SCRATCH_PREFIXES],))
        ]
        now_row = admin.fetch_one(SERVER_NOW)
    except (GuardError, psycopg.Error):
        return []
    if now_row is None:
        return []
    dropped = []
    for name in stale_scratch(names, now_row[0]):
        try:
            admin.execute(sql.SQL("DROP DATABASE IF EXISTS {}").format(sql.Identifier(name)))
        except (GuardError, psycopg.Error):
            continue  # in use, not ours to drop, or gone: the next sweep sees it again
        dropped.append(name)
    return dropped


def sweep_stale_scratch(url: str | None) -> list[str]:
    """Drop stale scratch databases on the server behind url, if there is one; never raises."""
    if not url:
        return []
    try:
        with Database(url, application_name="incident-guard sweep") as admin:
            return drop_stale_scratch(admin)
    except (GuardError, psycopg.Error):
        return []
