"""Restore one backup's dump and files together into a database and folder, then check the pair."""

from __future__ import annotations

import re
import secrets
import shutil
import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from psycopg import sql

from guard.backup import pgtools, restoreplan
from guard.backup.builder import require_backup_dir, run_backup
from guard.backup.dbproperties import DatabaseProperties, apply_properties, count_sessions, read_properties
from guard.backup.placement import PLACED, Placer
from guard.backup.repo import dumps
from guard.backup.repo.repository import LOCK_WAIT_S, Repository, check_backup_id
from guard.backup.restorefolder import hand_over, make_uploads_folder
from guard.backup.source import SAFETY
from guard.backup.verify import verify_backup
from guard.checks import CheckContext, registry, run_checks
from guard.config.redact import redact
from guard.config.settings import Settings
from guard.db.database import Database
from guard.db.servers import create_database, drop_database, url_with_database
from guard.errors import ConfigError, GuardError, UsageError
from guard.findings.finding import CheckResult
from guard.progress import ProgressFactory, no_progress

DB_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,62}")
USER_TABLES = (
    "SELECT count(*) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace"
    " WHERE c.relkind IN ('r', 'p') AND n.nspname NOT IN ('pg_catalog', 'information_schema')"
    " AND n.nspname NOT LIKE 'pg_toast%'"
)


@dataclass(frozen=True)
class Replacement:
    """A live database a restore replaced: what was carried over, the sessions ended, the new oid."""

    database: str
    properties: DatabaseProperties
    sessions_ended: int
    new_oid: int

    @property
    def oid_changed(self) -> bool:
        return self.new_oid != self.properties.oid

    def to_json(self) -> dict[str, Any]:
        return {
            "database": self.database,
            "sessions_ended": self.sessions_ended,
            "carried_over": self.properties.summary(),
            "old_oid": self.properties.oid,
            "new_oid": self.new_oid,
        }


class _Stranded(GuardError):
    """The live database was dropped but the restored one could not take its name: keep it."""


@dataclass(frozen=True)
class RestoreResult:
    """Where a backup went, what was written, and every check's verdict on the restored pair."""

    backup_id: str
    target_db: str
    uploads_dir: Path
    files: int
    bytes: int
    duration_s: float
    checks: list[CheckResult]
    skipped: list[str] = field(default_factory=list)
    safety_backup: str | None = None
    notes: list[str] = field(default_factory=list)
    replaced: Replacement | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "backup": self.backup_id,
            "target_db": self.target_db,
            "uploads_dir": str(self.uploads_dir),
            "files": self.files,
            "bytes": self.bytes,
            "restore_s": round(self.duration_s, 3),
            "skipped_checks": self.skipped,
            "safety_backup": self.safety_backup,
            "notes": self.notes,
            "replaced": None if self.replaced is None else self.replaced.to_json(),
        }


def scratch_name(prefix: str) -> str:
    return f"{prefix}_{datetime.now(UTC):%Y%m%d%H%M%S}_{secrets.token_hex(3)}"


def failure_text(exc: BaseException) -> str:
    """Return an exception as one redacted line; the kind is named when it is not a GuardError."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    text = "; ".join(lines) or "no detail"
    if not isinstance(exc, GuardError):
        text = f"{type(exc).__name__}: {text}"
    return redact(text)


def discard_scratch(settings: Settings, db_name: str | None, folder: Path | None) -> str | None:
    """Drop a scratch database and folder guard created; return what may have been left behind."""
    left: list[str] = []
    if db_name is not None and settings.database_url:
        try:
            with Database(maintenance_url(settings)) as server:
                server.execute(drop_database(db_name))
        except Exception as exc:  # report it; never hide the failure that brought us here
            left.append(f"could not make sure scratch database {db_name} is gone ({failure_text(exc)})")
    if folder is not None:
        try:
            shutil.rmtree(folder)
        except FileNotFoundError:
            pass
        except OSError as exc:
            left.append(f"scratch folder {folder} was left behind ({failure_text(exc)})")
    return "; ".join(left) or None


def target_url(settings: Settings, db_name: str) -> str:
    """Return the live server's URL pointed at another database."""
    if not DB_NAME.fullmatch(db_name):
        raise UsageError(f"--target-db {db_name!r}: use a letter or _ then letters, digits or _")
    return url_with_database(settings.require_database_url(), db_name)


def maintenance_url(settings: Settings) -> str:
    """Return the live server's URL on its `postgres` database, from which any other can be dropped."""
    return url_with_database(settings.require_database_url(), "postgres")


def restore_backup(
    settings: Settings,
    backup_id: str,
    *,
    target_db: str | None = None,
    uploads_dir: Path | None = None,
    force: bool = False,
    progress: ProgressFactory = no_progress,
    repository: Path | None = None,
) -> RestoreResult:
    """Verify a backup, restore it into a new (or, with force, replaced) database and folder, check it.

    repository: read the backup from there (a remote's local cache) instead of BACKUP_DIR; a safety
    backup still goes to BACKUP_DIR.
    """
    check_backup_id(backup_id)
    repo = Repository.open(repository or require_backup_dir(settings), create=False)
    db_name = target_db or scratch_name(settings.restore_database_prefix)
    url = target_url(settings, db_name)
    folder = uploads_dir or repo.restores / db_name
    scratch_db = None if target_db else db_name
    made = not folder.exists()  # a folder the restore creates is made like the live one
    scratch_folder = None if uploads_dir or not made else folder
    exists, occupied = _database_state(settings, db_name)
    safety = _make_room(settings, url, folder, occupied, force)
    started = time.perf_counter()
    with repo.lock(exclusive=False, wait_s=LOCK_WAIT_S):
        verdict = verify_backup(repo, backup_id, read_data=False, whole_dump=False)
        if not verdict.ok:
            raise GuardError(f"backup {backup_id} failed verification: {verdict.examples[0]}")
        if made:
            make_uploads_folder(settings.uploads_root, repo.restores, folder)
        # An existing database is replaced only once its successor is whole: built aside under a
        # scratch name, given the old one's properties, then swapped in.
        build = scratch_name("guard_incoming") if exists else db_name
        _recreate(settings, build, drop=False)
        # The dump goes in (put together, pg_restore and the server's work) while the files are
        # written here.
        database = _Background(_restore_dump, repo, backup_id, target_url(settings, build))
        try:
            try:
                files, size = _place_all(repo, backup_id, folder, progress, fresh=made)
            except BaseException:
                database.wait()  # then dropped whole with the folder; the placing error is the one told
                raise
            notes = database.result()
            if made:
                hand_over(settings.uploads_root, folder)
            replaced = _swap(settings, build, db_name) if exists else None
        except _Stranded:
            raise
        except BaseException as exc:
            _abandon(settings, build if exists else scratch_db, scratch_folder, exc)
            raise
    duration = time.perf_counter() - started
    checks, skipped = check_pair(settings, url, folder)
    return RestoreResult(
        backup_id, db_name, folder, files, size, duration, checks, skipped, safety, notes, replaced
    )


def live_target(settings: Settings, db_name: str) -> tuple[DatabaseProperties, int, bool] | None:
    """Return an existing target's properties, open sessions and whether it holds tables; None if absent."""
    exists, occupied = _database_state(settings, db_name)
    if not exists:
        return None
    with Database(maintenance_url(settings)) as server:
        props = read_properties(server, db_name)
        sessions = count_sessions(server, db_name)
    return (props, sessions, occupied) if props is not None else None


def _swap(settings: Settings, build: str, live: str) -> Replacement:
    """Give the built database the live one's properties, drop the live one, take its name."""
    with Database(maintenance_url(settings)) as server:
        props = read_properties(server, live)
        if props is None:
            raise GuardError(f"database {live} vanished during the restore; the restored copy was dropped")
        apply_properties(server, build, props)
        sessions = count_sessions(server, live)
        server.execute(drop_database(live))
        try:
            server.execute(
                sql.SQL("ALTER DATABASE {} RENAME TO {}").format(sql.Identifier(build), sql.Identifier(live))
            )
        except Exception as exc:  # the restored data is in `build` now: say so, never drop it
            raise _Stranded(
                f"database {live} was replaced but the restored copy could not take its name "
                f"({failure_text(exc)}); it is database {build}: ALTER DATABASE {build} RENAME TO {live}"
            ) from None
        renamed = read_properties(server, live)
    return Replacement(live, props, sessions, renamed.oid if renamed else 0)


def _abandon(settings: Settings, db_name: str | None, folder: Path | None, exc: BaseException) -> None:
    """Remove the half-restored scratch guard made (never a target the user named); say what stayed."""
    left = discard_scratch(settings, db_name, folder)
    if left is None:
        return
    if isinstance(exc, GuardError):
        exc.args = (f"{exc}; {left}",)
    else:
        exc.add_note(left)


def _database_state(settings: Settings, db_name: str) -> tuple[bool, bool]:
    """Return whether the database exists and whether it holds any table."""
    with Database(maintenance_url(settings)) as server:
        row = server.fetch_one("SELECT 1 FROM pg_database WHERE datname = %s", (db_name,))
    if row is None:
        return False, False
    with Database(target_url(settings, db_name)) as target:
        count = target.fetch_one(USER_TABLES)
    return True, bool(count and count[0])


def _make_room(settings: Settings, url: str, folder: Path, occupied: bool, force: bool) -> str | None:
    """Refuse to overwrite without force; with force, back up what is there first."""
    folder_used = folder.exists() and any(folder.iterdir())
    if not (occupied or folder_used):
        return None
    what = "database" if occupied else "folder"
    if not force:
        raise UsageError(
            f"the target {what} is not empty; pass --force to replace it "
            "(a backup of what is there is taken first)"
        )
    folder.mkdir(parents=True, exist_ok=True)
    safety = settings.replace(database_url=url, uploads_root=folder)
    return run_backup(safety, allow_missing_table=True, purpose=SAFETY).id


def _recreate(settings: Settings, db_name: str, *, drop: bool) -> None:
    with Database(maintenance_url(settings)) as server:
        if drop:
            server.execute(drop_database(db_name))
        server.execute(create_database(db_name))


def _restore_dump(repo: Repository, backup_id: str, url: str) -> list[str]:
    """Put the backup's dump together (every chunk and the whole checked), then pg_restore it."""
    with dumps.assembled(repo, repo.load(backup_id)) as dump:
        return pgtools.restore_archive(dump, url)


class _Background:
    """A call run in a thread (a subprocess's wait, mostly): result() joins it and raises its error."""

    def __init__(self, fn: Any, *args: Any) -> None:
        self._value: Any = None
        self._error: BaseException | None = None
        self._thread = threading.Thread(
            target=self._run, args=(fn, *args), name="restore-database", daemon=True
        )
        self._thread.start()

    def _run(self, fn: Any, *args: Any) -> None:
        try:
            self._value = fn(*args)
        except BaseException as exc:  # raised again in the caller's thread
            self._error = exc

    def wait(self) -> None:
        self._thread.join()

    def result(self) -> Any:
        self._thread.join()
        if self._error is not None:
            raise self._error
        return self._value


def _place_all(
    repo: Repository, backup_id: str, folder: Path, progress: ProgressFactory, *, fresh: bool = False
) -> tuple[int, int]:
    """Write every file of a backup under folder, pack by pack (restoreplan); fresh: folder is new.

    Each object is read once and checked against its hash before any file is written from it; a
    big upload kept in its own file is streamed and checked per file, as before.
    """
    manifest = repo.load(backup_id)
    entries = manifest.files
    folder.mkdir(parents=True, exist_ok=True)
    placer = Placer(repo.store, folder)
    plan = restoreplan.make_plan(repo.store, entries)
    bar = progress("restore", len(entries))
    try:
        for objects in restoreplan.fetch(plan.spans):
            for sha, data in objects:
                users = plan.users[sha]
                if data is None:
                    raise GuardError(
                        f"cannot restore {users[0].path!r}: object {sha} is corrupt "
                        "(its content does not match its hash)"
                    )
                for entry in users:
                    outcome = placer.put(entry, data, fresh=fresh)
                    if outcome != PLACED:
                        raise GuardError(f"cannot restore {entry.path!r}: {outcome}")
                bar.advance(len(users))
        for sha in plan.loose:
            for entry in plan.users[sha]:
                outcome = placer.place(entry, overwrite=True)
                if outcome != PLACED:
                    raise GuardError(f"cannot restore {entry.path!r}: {outcome}")
                bar.advance()
    finally:
        placer.close()
    bar.close()
    return len(entries), sum(f.size for f in entries)


def check_pair(settings: Settings, url: str, folder: Path) -> tuple[list[CheckResult], list[str]]:
    """Run every registered check on a restored pair; skip those needing settings that are not set."""
    context = CheckContext(settings.replace(database_url=url, uploads_root=folder), limit=20)
    results: list[CheckResult] = []
    skipped: list[str] = []
    for name in registry():
        try:
            results.extend(run_checks(context, [name]))
        except ConfigError as exc:
            if settings.migrations_dir is not None:
                raise
            skipped.append(f"{name}: {exc}")
    return results, skipped
