"""Scratch databases guard makes for itself: named with their birth, claimed while used, swept when stale.

A shadow or a drill's scratch copy is dropped by the run that made it, but a run killed with -9
cannot: every drift check and drill sweeps the ones a killed run left behind, by their prefixes
(SHADOW_DATABASE_PREFIX, DRILL_DATABASE_PREFIX; PREFIXES by default). Not a restore's
(`guard_restore_*`, RESTORE_DATABASE_PREFIX): it is kept for the operator to look at.
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta

import psycopg
from psycopg import sql

from guard.db.database import Database
from guard.errors import GuardError

PREFIXES = ("guard_shadow", "guard_drill")
MAX_AGE = timedelta(hours=1)
# pg_advisory_lock(CLAIM_SPACE, hashtext(name)) is held by the run using a scratch database.
CLAIM_SPACE = 0x67736372  # "gscr"
_NAME = re.compile(r"(?P<prefix>[a-z][a-z0-9_]*)_(?P<created>\d{14})_[0-9a-f]{6,32}")

CLAIM = "SELECT pg_advisory_lock(%s, hashtext(%s))"
# Advisory locks are per database but pg_locks shows every database's, so a claim taken on any
# connection to the server protects the name. A hash collision only keeps one more database.
UNCLAIMED = """
SELECT d.datname, now() FROM pg_database d
WHERE d.datname LIKE ANY(%(patterns)s)
  AND NOT EXISTS (SELECT 1 FROM pg_locks l
                  WHERE l.locktype = 'advisory' AND l.objsubid = 2
                    AND l.classid = %(space)s::oid AND l.objid = hashtext(d.datname)::oid)
ORDER BY d.datname
"""


def scratch_database_name(prefix: str) -> str:
    """Name a scratch database so its creation time can be read back from the name alone."""
    return f"{prefix}_{datetime.now(UTC):%Y%m%d%H%M%S}_{secrets.token_hex(3)}"


def created_at(name: str, prefixes: Sequence[str] = PREFIXES) -> datetime | None:
    """Return when a scratch database of ours was created, or None for any other database."""
    match = _NAME.fullmatch(name)
    if match is None or match["prefix"] not in prefixes:
        return None
    try:
        return datetime.strptime(match["created"], "%Y%m%d%H%M%S").replace(tzinfo=UTC)
    except ValueError:
        return None


def stale(
    names: list[str], now: datetime, max_age: timedelta = MAX_AGE, prefixes: Sequence[str] = PREFIXES
) -> list[str]:
    """Return the names that are our scratch databases and older than max_age."""
    return [n for n in names if (created := created_at(n, prefixes)) is not None and now - created > max_age]


def claim(admin: Database, name: str) -> None:
    """Mark name as in use for as long as this connection stays open, before it is even created."""
    admin.execute(CLAIM, (CLAIM_SPACE, name))


def drop_stale(admin: Database, prefixes: Sequence[str] = PREFIXES) -> list[str]:
    """Drop scratch databases a killed run left behind; return their names. Never raises.

    Only names of our own format, older than an hour by the server's clock, claimed by no run, and
    without FORCE: a database someone is still connected to stays for a later sweep.
    """
    patterns = [prefix.replace("_", "\\_") + "\\_%" for prefix in prefixes]
    try:
        rows = admin.fetch_all(UNCLAIMED, {"patterns": patterns, "space": CLAIM_SPACE})
    except (GuardError, psycopg.Error):
        return []
    if not rows:
        return []
    dropped = []
    for name in stale([str(r[0]) for r in rows], rows[0][1], prefixes=prefixes):
        try:
            admin.execute(sql.SQL("DROP DATABASE IF EXISTS {}").format(sql.Identifier(name)))
        except (GuardError, psycopg.Error):
            continue  # in use, not ours to drop, or gone: the next sweep sees it again
        dropped.append(name)
    return dropped


class ScratchClaim:
    """Sweep stale scratch databases, then claim one name until closed; a failure here is not fatal."""

    def __init__(self, url: str | None, name: str, prefixes: Sequence[str] = PREFIXES) -> None:
        self._admin = Database(url, application_name="incident-guard scratch") if url else None
        self.swept: list[str] = []
        if self._admin is None:
            return
        try:
            self.swept = drop_stale(self._admin, prefixes)
            claim(self._admin, name)
        except (GuardError, psycopg.Error):
            self.close()  # the run itself will say what is unreachable

    def close(self) -> None:
        if self._admin is not None:
            self._admin.close()
            self._admin = None
