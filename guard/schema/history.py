"""Prisma Migrate's folders and its `_prisma_migrations` table, read and written exactly as Prisma does."""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psycopg

from guard.db.database import Database
from guard.errors import ConfigError, UsageError
from guard.plural import plural

SCRIPT = "migration.sql"
CHECKSUM_LENGTH = 64  # a SHA-256 in zero-padded lower-case hex, as Prisma renders it today

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
        """Tell whether Prisma takes the stored checksum for this file (its `script_matches_checksum`)."""
        if len(stored_checksum) == CHECKSUM_LENGTH:
            return stored_checksum in {d.hex() for d in _digests(self.content)}
        # An old schema engine rendered each byte without zero padding; its rows are still accepted.
        return stored_checksum in {_unpadded_hex(d) for d in _digests(self.content)}


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _digests(content: bytes) -> list[bytes]:
    """Return the SHA-256 of the file as it is, with CRLF made LF, and with LF made CRLF (on the raw text)."""
    variants = (content, content.replace(b"\r\n", b"\n"), content.replace(b"\n", b"\r\n"))
    return [hashlib.sha256(v).digest() for v in variants]


def _unpadded_hex(digest: bytes) -> str:
    return "".join(f"{byte:x}" for byte in digest)


def read_migrations(folder: Path) -> list[MigrationFile]:
    """Return the migration folders under `folder` that hold a migration.sql, in Prisma's (lexical) order."""
    found = []
    for entry in _folders(folder):
        script = entry / SCRIPT
        if script.is_file():
            found.append(MigrationFile(entry.name, script, script.read_bytes()))
    return found


def folders_without_script(folder: Path) -> list[Path]:
    """Return the folders with no migration.sql: Prisma counts each as a migration, deploy stops (P3015)."""
    return [entry for entry in _folders(folder) if not (entry / SCRIPT).is_file()]


def _folders(folder: Path) -> list[Path]:
    """Return every sub-folder, dot-folders included, sorted by name as Prisma lists migrations."""
    if not folder.is_dir():
        raise ConfigError(f"migrations folder not found: {folder}")
    return [entry for entry in sorted(folder.iterdir(), key=lambda p: p.name) if entry.is_dir()]


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


def record_applied(db: Database, migration: MigrationFile, at: datetime) -> None:
    """Record a migration as applied without running it, the row `migrate resolve --applied` writes."""
    db.execute(
        "INSERT INTO _prisma_migrations"
        " (id, checksum, migration_name, logs, started_at, finished_at, applied_steps_count)"
        " VALUES (%s, %s, %s, '', %s, %s, 0)",
        (str(uuid.uuid4()), migration.checksum, migration.name, at, at),
    )


def prisma_clock(after: datetime | None = None) -> datetime:
    """Return now in whole milliseconds, as Prisma writes it, and after `after` so rows keep their order."""
    now = datetime.now(UTC)
    now = now.replace(microsecond=now.microsecond // 1000 * 1000)
    if after is not None and now <= after:
        return after + timedelta(milliseconds=1)
    return now


HISTORY_TABLE = "SELECT to_regclass('_prisma_migrations') IS NOT NULL"
HISTORY_ROWS = """
SELECT id, checksum, migration_name, finished_at IS NOT NULL, rolled_back_at IS NOT NULL, logs
FROM _prisma_migrations
ORDER BY started_at, migration_name
"""


@dataclass(frozen=True)
class MigrationRecord:
    """One row of `_prisma_migrations`."""

    id: str
    checksum: str
    name: str
    finished: bool
    rolled_back: bool
    logs: str | None = None

    @property
    def applied(self) -> bool:
        return self.finished and not self.rolled_back

    @property
    def failed(self) -> bool:
        return not self.finished and not self.rolled_back


@dataclass(frozen=True)
class ReplayFailure:
    """A migration the shadow database refused, with the database's own error."""

    migration: str
    error: str


def read_history(db: Database) -> list[MigrationRecord] | None:
    """Return the rows of `_prisma_migrations`, or None when the table does not exist."""
    row = db.fetch_one(HISTORY_TABLE)
    if not row or not row[0]:
        return None
    return [
        MigrationRecord(str(row_id), str(checksum), str(name), bool(done), bool(undone), logs)
        for row_id, checksum, name, done, undone, logs in db.fetch_all(HISTORY_ROWS)
    ]


def applied_migrations(
    files: list[MigrationFile], history: list[MigrationRecord] | None
) -> list[MigrationFile]:
    """Return the folders the live database has applied, in order; every folder when there is no history."""
    if history is None:
        return list(files)
    done = {r.name for r in history if r.applied}
    return [f for f in files if f.name in done]


def pending_migrations(
    files: list[MigrationFile], history: list[MigrationRecord] | None
) -> list[MigrationFile]:
    """Return what `migrate deploy` would run, in order: folders with no row but rolled-back ones.

    Every folder when there is no history. A failed folder is not pending: deploy refuses (P3009) until
    it is resolved.
    """
    done = {r.name for r in history or () if not r.rolled_back}
    return [f for f in files if f.name not in done]


def replay(
    db: Database, files: list[MigrationFile], on_step: Callable[[], None] | None = None
) -> ReplayFailure | None:
    """Run each migration's script as Prisma does (one multi-statement query); stop at the first error."""
    for migration in files:
        try:
            db.execute(migration.content)  # type: ignore[arg-type]
        except psycopg.Error as exc:
            text = str(exc).strip()
            return ReplayFailure(migration.name, text.splitlines()[0] if text else type(exc).__name__)
        if on_step is not None:
            on_step()
    return None


def baseline(db: Database, files: list[MigrationFile]) -> int:
    """Create `_prisma_migrations` and record every folder as one `migrate resolve --applied` each would."""
    history = read_history(db)
    if history:
        raise UsageError(
            f"_prisma_migrations already holds {plural(len(history), 'row')}; "
            "baseline is only for a database with no migration history"
        )
    with db.transaction():
        ensure_migrations_table(db)
        at: datetime | None = None
        for migration in files:
            at = prisma_clock(after=at)
            record_applied(db, migration, at)
    return len(files)
