"""Prisma Migrate's folders and its `_prisma_migrations` table, read and written exactly as Prisma does."""

from __future__ import annotations

import hashlib
import uuid
from dataclasses import dataclass
from pathlib import Path

from guard.database import Database
from guard.errors import ConfigError

# The table as Prisma's schema engine creates it on PostgreSQL.
PRISMA_MIGRATIONS_DDL = """
CREATE TABLE IF NOT EXISTS "_prisma_migrations" (
    "id"                    VARCHAR(36) PRIMARY KEY NOT NULL,
    "checksum"              VARCHAR(64) NOT NULL,
    "finished_at"           TIMESTAMPTZ,
    "migration_name"        VARCHAR(255) NOT NULL,
    "logs"                  TEXT,
    "rolled_back_at"        TIMESTAMPTZ,
    "started_at"            TIMESTAMPTZ NOT NULL DEFAULT now(),
    "applied_steps_count"   INTEGER NOT NULL DEFAULT 0
)
"""


@dataclass(frozen=True)
class MigrationFile:
    """One `<name>/migration.sql` folder of a Prisma migrations directory."""

    name: str
    path: Path
    content: bytes

    @property
    def checksum(self) -> str:
        return sha256_hex(self.content)

    @property
    def script(self) -> str:
        return self.content.decode("utf-8")

    def matches(self, stored_checksum: str) -> bool:
        """Tell whether the stored checksum is of this file, allowing either line-ending style."""
        return stored_checksum.lower() in _checksum_variants(self.content)


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _checksum_variants(content: bytes) -> set[str]:
    as_lf = content.replace(b"\r\n", b"\n")
    as_crlf = as_lf.replace(b"\n", b"\r\n")
    return {sha256_hex(content), sha256_hex(as_lf), sha256_hex(as_crlf)}


def read_migrations(folder: Path) -> list[MigrationFile]:
    """Return the migration folders under `folder` in Prisma's (lexical) order."""
    if not folder.is_dir():
        raise ConfigError(f"migrations folder not found: {folder}")
    found = []
    for entry in sorted(folder.iterdir(), key=lambda p: p.name):
        script = entry / "migration.sql"
        if entry.is_dir() and script.is_file():
            found.append(MigrationFile(entry.name, script, script.read_bytes()))
    return found


def ensure_migrations_table(db: Database) -> None:
    db.execute(PRISMA_MIGRATIONS_DDL)


def apply_and_record(db: Database, migration: MigrationFile) -> None:
    """Run one migration and record it the way `prisma migrate deploy` does."""
    row_id = str(uuid.uuid4())
    db.execute(
        "INSERT INTO _prisma_migrations (id, checksum, migration_name, started_at, applied_steps_count)"
        " VALUES (%s, %s, %s, now(), 0)",
        (row_id, migration.checksum, migration.name),
    )
    db.execute(migration.script.encode("utf-8"))  # type: ignore[arg-type]
    db.execute(
        "UPDATE _prisma_migrations SET finished_at = now(), applied_steps_count = 1 WHERE id = %s",
        (row_id,),
    )


def record_applied(db: Database, migration: MigrationFile) -> None:
    """Record a migration as applied without running it (what `migrate resolve --applied` writes)."""
    db.execute(
        "INSERT INTO _prisma_migrations"
        " (id, checksum, migration_name, started_at, finished_at, applied_steps_count)"
        " VALUES (%s, %s, %s, now(), now(), 0)",
        (str(uuid.uuid4()), migration.checksum, migration.name),
    )
