"""Which database a backup came from: the server's system identifier, the database's name and oid.

A backup belongs to the database it was taken of, and drill, `restore files --missing`, prune and the
nightly maintenance look only at the configured database's backups unless told otherwise. Two
backups are of the same source when their database names match and so do their servers' system
identifiers (where both are known). The oid is recorded to tell incarnations apart (a database dropped
and created again under its name, as a restore in place does, gets a new one) but does not split a
source. A manifest written before sources were recorded names its database only in `database.target`
(`database 'shop' on host:5432`): its source is that name on an unknown server.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from guard.db.database import Database
from guard.errors import UsageError

BACKUP = "backup"  # the configured database's own backups, taken by `guard backup` or the nightly job
SAFETY = "pre-restore-safety"  # what a forced restore found in its target, backed up before replacing it
LEGACY_TARGET = re.compile(r"database '(.*)' on [^ ]*")
# pg_control_system() is callable by every role on a stock server; a managed one may revoke it.
IDENTITY = (
    "SELECT CASE WHEN has_function_privilege('pg_control_system()', 'EXECUTE')"
    " THEN (SELECT system_identifier FROM pg_control_system())::text END,"
    " current_database(), (SELECT oid FROM pg_database WHERE datname = current_database())::bigint"
)


@dataclass(frozen=True)
class Source:
    """One database: its server's system identifier (None when unknown), its name and oid."""

    database: str
    system_identifier: str | None = None
    oid: int | None = None

    @property
    def label(self) -> str:
        """Name the source as `--source` accepts it: `name@system_identifier`, or the name alone."""
        return f"{self.database}@{self.system_identifier}" if self.system_identifier else self.database

    def to_json(self) -> dict[str, Any]:
        return {"system_identifier": self.system_identifier, "database": self.database, "oid": self.oid}

    @classmethod
    def from_json(cls, body: dict[str, Any]) -> Source:
        sysid, oid = body["system_identifier"], body["oid"]
        return cls(str(body["database"]), _text(sysid), None if oid is None else int(oid))

    @classmethod
    def from_target(cls, target: str) -> Source | None:
        """Read the source of a manifest that predates sources from its `database.target` text."""
        match = LEGACY_TARGET.fullmatch(target)
        return cls(match.group(1)) if match else None


@dataclass(frozen=True)
class Wanted:
    """Which source's backups to use: a database name, on one server or (no identifier) on any."""

    database: str
    system_identifier: str | None = None

    def matches(self, source: Source | None) -> bool:
        if source is None or source.database != self.database:
            return False
        known = self.system_identifier is not None and source.system_identifier is not None
        return not known or source.system_identifier == self.system_identifier

    @property
    def label(self) -> str:
        return Source(self.database, self.system_identifier).label

    @classmethod
    def of(cls, source: Source) -> Wanted:
        return cls(source.database, source.system_identifier)

    @classmethod
    def parse(cls, text: str) -> Wanted:
        """Read `--source NAME` (that database on any server) or `NAME@SYSTEM_IDENTIFIER`."""
        name, _, sysid = text.rpartition("@") if "@" in text else (text, "", "")
        if not name or (sysid and not sysid.isdigit()):
            raise UsageError(f"--source {text!r}: expected a database name, or NAME@SYSTEM_IDENTIFIER")
        return cls(name, sysid or None)


def read_source(db: Database) -> Source:
    """Return the source a connection is on."""
    row = db.fetch_one(IDENTITY)
    assert row is not None
    sysid, name, oid = row
    return Source(str(name), _text(sysid), None if oid is None else int(oid))


def _text(value: Any) -> str | None:
    return None if value is None else str(value)


def configured_source(url: str) -> Wanted:
    """Return the configured database's source, read from the database itself."""
    with Database(url, application_name="guard-backup") as db:
        return Wanted.of(read_source(db))
