"""One database moment: a REPEATABLE READ snapshot, exported to pg_dump and read for paths and migrations."""

from __future__ import annotations

import hashlib
import secrets
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from psycopg import sql

from guard.backup import pgtools
from guard.backup.faults import crash_point
from guard.config.settings import Settings
from guard.db.catalog import primary_key, require_column
from guard.db.database import Database, load_query
from guard.errors import GuardError

IMPORT_WAIT_S = 60.0


@dataclass(frozen=True)
class SnapshotFacts:
    """What the snapshot says besides the dump: referenced paths, migration state, schema hash."""

    server_version: str
    refs: list[tuple[str | None, str | None]]  # (primary key as text, stored path) per row
    migrations: list[dict[str, Any]] | None
    schema_sha256: str
    table: str = ""

    def subject(self, row_id: str | None) -> str:
        """Name one row the way findings do: `table:primary key`."""
        return f"{self.table}:{row_id}"


class Snapshot:
    """An open REPEATABLE READ transaction whose snapshot pg_dump and our own reads share."""

    def __init__(self, db: Database, snapshot_id: str) -> None:
        self.db = db
        self.snapshot_id = snapshot_id
        self._dump_app = f"guard-backup-dump-{secrets.token_hex(4)}"

    def start_dump(self, out: Path) -> subprocess.Popen[bytes]:
        """Start pg_dump on this very snapshot; keep the transaction open until wait_for_dump()."""
        return pgtools.start_dump(self.db.url, self.snapshot_id, out, self._dump_app)

    def wait_for_dump(self, dump: subprocess.Popen[bytes]) -> None:
        """Return once pg_dump holds the snapshot in its own transaction, so ours may end.

        An exported snapshot can be imported only while its exporting transaction is open; once
        imported, the importer keeps it. Misjudging the moment cannot give an inconsistent dump:
        pg_dump would fail with "invalid snapshot identifier" and so would the backup.
        """
        deadline = time.monotonic() + IMPORT_WAIT_S
        while True:
            if dump.poll() is not None:
                pgtools.finish_dump(dump)  # it ended already: raises unless it dumped everything
                return
            self.db.execute(
                "SELECT pg_stat_clear_snapshot()"
            )  # activity is otherwise read once per transaction
            row = self.db.fetch_one(load_query("backup_snapshot_imported"), (self._dump_app,))
            if row and row[0]:
                return
            if time.monotonic() > deadline:
                raise GuardError(f"pg_dump did not take the backup's snapshot within {IMPORT_WAIT_S:.0f} s")
            time.sleep(0.01)

    def facts(self, settings: Settings, *, allow_missing_table: bool = False) -> SnapshotFacts:
        table, column = settings.file_table, settings.file_column
        skip = allow_missing_table and not self._has_table(table)
        return SnapshotFacts(
            server_version=self._server_version(),
            refs=[] if skip else self._refs(table, column),
            migrations=self._migrations(),
            schema_sha256=self._schema_hash(),
            table=table,
        )

    def _has_table(self, table: str) -> bool:
        row = self.db.fetch_one("SELECT to_regclass(quote_ident(%s)) IS NOT NULL", (table,))
        return bool(row and row[0])

    def _server_version(self) -> str:
        row = self.db.fetch_one("SELECT current_setting('server_version')")
        return str(row[0]) if row else "?"

    def _refs(self, table: str, column: str) -> list[tuple[str | None, str | None]]:
        """Read every row's (primary key, stored path) in batches; blank paths are skipped later."""
        require_column(self.db, table, column, owner="file_table/file_column")
        pk = primary_key(self.db, table, owner="file_table").column
        query = sql.SQL("SELECT {pk}::text, {col}::text FROM {table} WHERE {col} IS NOT NULL").format(
            pk=sql.Identifier(pk), col=sql.Identifier(column), table=sql.Identifier(table)
        )
        refs: list[tuple[str | None, str | None]] = []
        for batch in self.db.stream_batches(query):
            refs.extend(batch)  # psycopg rows are tuples already: no object per row
        return refs

    def _migrations(self) -> list[dict[str, Any]] | None:
        row = self.db.fetch_one("SELECT to_regclass('_prisma_migrations') IS NOT NULL")
        if not row or not row[0]:
            return None
        names = (
            "migration_name",
            "checksum",
            "started_at",
            "finished_at",
            "rolled_back_at",
            "applied_steps_count",
        )
        return [dict(zip(names, r, strict=True)) for r in self.db.fetch_all(load_query("backup_migrations"))]

    def _schema_hash(self) -> str:
        digest = hashlib.sha256()
        for (line,) in self.db.fetch_all(load_query("backup_schema")):
            digest.update(str(line).encode("utf-8") + b"\n")
        return digest.hexdigest()


@contextmanager
def open_snapshot(url: str) -> Iterator[Snapshot]:
    """Hold a read-only REPEATABLE READ transaction and export its snapshot for pg_dump."""
    with Database(url, application_name="guard-backup") as db, db.transaction():
        db.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
        row = db.fetch_one("SELECT pg_export_snapshot()")
        assert row is not None
        crash_point("snapshot")
        yield Snapshot(db, str(row[0]))
