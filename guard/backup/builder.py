"""Take one backup: a database snapshot, the uploads it refers to, a manifest, published atomically."""

from __future__ import annotations

import errno
import os
import shutil
import stat
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path

from guard import __version__
from guard.backup import pgtools
from guard.backup.db_snapshot import SnapshotFacts, open_snapshot
from guard.backup.faults import crash_point, pause_point
from guard.backup.repo import inventory, permissions
from guard.backup.repo.dumps import store_dump
from guard.backup.repo.manifest import (
    ABSENT,
    ESCAPES,
    UNSAFE,
    FileEntry,
    Manifest,
    MissingRef,
    parse,
)
from guard.backup.repo.objects import ObjectStore, StatKey
from guard.backup.repo.repository import DUMP, MANIFEST, Repository, new_backup_id, unwritable
from guard.backup.selection import ANY_PURPOSE, newest_first, readable
from guard.backup.source import BACKUP, Source, Wanted, read_source
from guard.backup.walk import statpage
from guard.backup.walk.walk import Previous, Walked, walk
from guard.config.settings import Settings
from guard.db.database import Database, describe_target
from guard.errors import ConfigError
from guard.findings.finding import Finding
from guard.fs import paths
from guard.fs.beneath import open_beneath, open_root, unreadable
from guard.fs.gcpause import no_cyclic_gc
from guard.fs.root import UploadsRoot
from guard.history import events
from guard.progress import ProgressFactory, no_progress

GONE = ("no regular file at the stored path at backup time", ABSENT)
SCOPE = "every file the snapshot's rows refer to, plus every regular file under scan_dirs"


MISSING_AT_BACKUP = "missing_at_backup"


@dataclass(frozen=True)
class BackupResult:
    """A published backup: its id and manifest, and the referenced paths it could not include."""

    id: str
    manifest_path: Path
    missing: list[tuple[str, str]]
    manifest: Manifest = field(repr=False)
    damage: tuple[str, ...] = ()  # what the store had lost or held damaged, and what was stored again
    # the page stat the walk called: "compiled" (_statpage.c) or "python" (its slower twin)
    walk: str = field(default_factory=statpage.implementation)

    @property
    def ok(self) -> bool:
        return not self.missing

    def findings(self) -> list[Finding]:
        """One `missing_at_backup` finding per referenced path the snapshot could not include."""
        return [
            Finding("backup", MISSING_AT_BACKUP, m.subject, m.reason, path=m.path)
            for m in self.manifest.missing
        ]


def require_backup_dir(settings: Settings) -> Path:
    if settings.backup_dir is None:
        raise ConfigError("BACKUP_DIR is not set (environment or 'backup_dir' in GUARD_CONFIG)")
    return settings.backup_dir


def _judged(result: BackupResult) -> tuple[str, dict[str, object]]:
    """A published backup is a success; the referenced files it could not include are counted."""
    counts = result.manifest.counts
    return events.OK, {
        "id": result.id,
        "purpose": result.manifest.purpose,
        "files": counts.get("files", 0),
        "bytes": counts.get("bytes", 0),
        "missing": len(result.missing),
    }


@events.recorded(events.BACKUP, _judged)
def run_backup(
    settings: Settings,
    progress: ProgressFactory = no_progress,
    *,
    allow_missing_table: bool = False,
    purpose: str = BACKUP,
) -> BackupResult:
    """Take one consistent backup of the database and its uploads into BACKUP_DIR.

    allow_missing_table: back up a database without the file table (the safety copy taken before
    a forced restore overwrites an arbitrary database) instead of failing on it. purpose: recorded
    in the manifest; only BACKUP ones are ever picked as a database's newest.
    """
    url = settings.require_database_url()
    root = UploadsRoot(settings.require_uploads_root())
    with Database(url, application_name="guard-backup") as db:
        source = read_source(db)
    repo = Repository.open(require_backup_dir(settings), create=True)
    with repo.lock(exclusive=True), no_cyclic_gc():
        try:
            repo.clear_tmp()
            with repo.writing_objects() as removed:
                # Objects a crash left damaged were removed: a page of the previous backup may name
                # one, and a reused page is not looked into, so every file is read again this once.
                trust_previous = removed == 0
                origin = (source, purpose)
                health = inventory.heal(repo.store)  # what was lost since: reused pages are checked
                result = _take(
                    repo, settings, url, root, progress, allow_missing_table, origin, trust_previous
                )
                inventory.record(repo.store)
                return replace(result, damage=tuple(health.outcome(repo.store)))
        except OSError as exc:
            raise unwritable(repo.root, exc) from None


def _take(
    repo: Repository,
    settings: Settings,
    url: str,
    root: UploadsRoot,
    progress: ProgressFactory,
    allow_missing_table: bool,
    origin: tuple[Source, str],
    trust_previous: bool = True,
) -> BackupResult:
    started = _after_newest(repo)
    backup_id = new_backup_id(started)
    staging = repo.staging(backup_id)
    try:
        manifest = _capture(
            repo,
            settings,
            url,
            root,
            staging,
            backup_id,
            started,
            progress,
            allow_missing_table,
            trust_previous,
            origin,
        )
        data = manifest.to_file()
        parse(data, f"backup {backup_id}")  # read back first: a manifest guard cannot read is no backup
        permissions.write_file(staging / MANIFEST, data, permissions.FROZEN)
        crash_point("manifest")
        final = repo.publish(staging, backup_id)
    except BaseException:
        repo.store.abandon()
        shutil.rmtree(staging, ignore_errors=True)
        raise
    crash_point("published")
    missing = [(m.subject, m.path) for m in manifest.missing]
    return BackupResult(backup_id, final / MANIFEST, missing, manifest)


def _after_newest(repo: Repository) -> datetime:
    """Return now, waiting out the second of the newest backup so ids sort in the order taken."""
    newest = repo.ids()[-1:]
    while True:
        now = datetime.now(UTC)
        if not newest or new_backup_id(now)[:16] != newest[0][:16]:
            return now
        time.sleep(0.05)


def _capture(
    repo: Repository,
    settings: Settings,
    url: str,
    root: UploadsRoot,
    staging: Path,
    backup_id: str,
    started: datetime,
    progress: ProgressFactory,
    allow_missing_table: bool,
    trust_previous: bool,
    origin: tuple[Source, str],
) -> Manifest:
    store = repo.store
    previous = _previous(repo, Wanted.of(origin[0])) if trust_previous else Previous()
    dump_path = staging / DUMP
    dump = _dump_and_facts(url, dump_path, settings, allow_missing_table)
    try:
        # The snapshot's transaction has ended: a walk of any length holds back no vacuum and
        # outlives any idle_in_transaction_session_timeout; pg_dump keeps the snapshot it imported.
        pause_point("walk")
        walked, extra, missing, facts = collect_uploads(
            root,
            settings.scan_dirs,
            lambda: dump.facts,
            store,
            previous,
            progress,
            absent_ok=allow_missing_table,  # the safety copy of a target with no such folder
        )
    except BaseException:
        dump.process.kill()
        dump.process.wait()
        raise
    pgtools.finish_dump(dump.process)
    dump_info = store_dump(store, dump_path)  # as chunks in packs: an unchanged one costs nothing
    store.flush()  # the last pack's objects re-hashed on disk and named, before any manifest
    dump_path.unlink()
    crash_point("dump")
    return Manifest(
        id=backup_id,
        started_at=started.isoformat(),
        finished_at=datetime.now(UTC).isoformat(),
        versions={
            "guard": __version__,
            "server": facts.server_version,
            "pg_dump": pgtools.tool_version("pg_dump"),
        },
        database={"target": describe_target(url)},
        dump=dump_info,
        inline_files=tuple(extra),
        missing=tuple(missing),
        migrations=facts.migrations,
        schema_sha256=facts.schema_sha256,
        app_commit=app_commit(settings),
        scope={
            "uploads": SCOPE,
            "scan_dirs": list(settings.scan_dirs),
            "file_table": settings.file_table,
            "file_column": settings.file_column,
        },
        counts=_counts(walked, extra, missing, facts, store),
        folders=tuple(walked.folders),
        source=origin[0],
        purpose=origin[1],
        read_object=store.read_list,
    )


@dataclass(frozen=True)
class _Dumping:
    """A pg_dump running on the snapshot, and what the snapshot said besides."""

    process: subprocess.Popen[bytes]
    facts: SnapshotFacts


def _dump_and_facts(url: str, dump_path: Path, settings: Settings, allow_missing_table: bool) -> _Dumping:
    """Start pg_dump on a snapshot, read the snapshot's facts meanwhile, end it once pg_dump holds it."""
    process: subprocess.Popen[bytes] | None = None
    permissions.write_file(dump_path, b"")  # pg_dump keeps the mode of the file it truncates: private
    try:
        with open_snapshot(url) as snapshot:
            process = snapshot.start_dump(dump_path)
            facts = snapshot.facts(settings, allow_missing_table=allow_missing_table)
            snapshot.wait_for_dump(process)
    except BaseException:
        if process is not None:
            process.kill()
            process.wait()
        raise
    return _Dumping(process, facts)


def collect_uploads(
    root: UploadsRoot,
    scan_dirs: tuple[str, ...],
    read_facts: Callable[[], SnapshotFacts],
    store: ObjectStore,
    previous: Previous,
    progress: ProgressFactory = no_progress,
    *,
    absent_ok: bool = False,
) -> tuple[Walked, list[FileEntry], list[MissingRef], SnapshotFacts]:
    """Back up the scanned folders, then every referenced path the walk did not cover.

    read_facts() gives the snapshot's facts (the referenced paths among them, read while pg_dump
    started); a big folder's walk narrows the paths by its listing while its worker is statting.
    Returns the walk (folder lists), the referenced files outside it, what could not be included, and
    the facts.
    """
    # A walked path is already in normal form when every scan dir is: a ref spelled exactly as a walked
    # path and free of what makes a path unsafe (backslash, `..`) needs nothing more. Set work only,
    # and for a big folder done while its walk worker is still statting.
    exact = all(paths.unsafe_reason(d) is None and paths.normalize(d) == d for d in scan_dirs)
    narrowed = _Narrowed(read_facts)
    meanwhile = narrowed.narrow if exact else None
    walked = walk(root, scan_dirs, store, previous, progress, meanwhile, absent_ok=absent_ok)
    facts = narrowed.load()
    refs = narrowed.refs
    if exact:
        refs = narrowed.finish(walked)
    extra: dict[str, FileEntry] = {}
    missing: list[MissingRef] = []
    absent = _Absent(root)
    for row_id, stored in refs:
        if row_id is None or stored is None or not stored.strip():
            continue
        reason = paths.unsafe_reason(stored)
        if reason is not None:
            missing.append(
                MissingRef(facts.subject(row_id), paths.json_safe(stored), f"stored path {reason}", UNSAFE)
            )
            continue
        key = paths.normalize(stored)
        if key in extra or walked.contains(key):
            continue
        if absent.certain(key):
            missing.append(MissingRef(facts.subject(row_id), key, *GONE))
            continue
        found = _referenced(root, store, key, previous.flat)
        if isinstance(found, FileEntry):
            extra[key] = found
        else:
            missing.append(MissingRef(facts.subject(row_id), key, *found))
    missing.sort(key=lambda m: (m.path, m.subject))  # not the order rows came in: the same however walked
    return walked, sorted(extra.values()), missing, facts


class _Narrowed:
    """The referenced paths still to check, narrowed by each set of walked paths as it comes."""

    def __init__(self, read_facts: Callable[[], SnapshotFacts]) -> None:
        self._read_facts = read_facts
        self._facts: SnapshotFacts | None = None
        self.all: list[tuple[str | None, str | None]] = []
        self.refs: list[tuple[str | None, str | None]] = []

    def load(self) -> SnapshotFacts:
        """Read the facts the first time they are needed."""
        if self._facts is None:
            self._facts = self._read_facts()
            self.all = self.refs = self._facts.refs
        return self._facts

    def narrow(self, folder: str, names: set[str], odd: set[str]) -> None:
        """Drop the refs spelled exactly as folder/<one of names>, unless odd (checked fully)."""
        self.load()
        prefix = f"{folder}/"
        cut = len(prefix)
        self.refs = [
            r
            for r in self.refs
            if r[0] is None
            or (p := r[1]) is None
            or not (p.startswith(prefix) and p[cut:] in names)  # a name holds no "/": exact
            or p in odd
        ]

    def finish(self, walked: Walked) -> list[tuple[str | None, str | None]]:
        """Narrow by everything walked; a ref to a path narrowed away but then dropped is kept."""
        odd, dropped = walked.odd, walked.dropped
        self.refs = [
            r for r in self.refs if r[0] is None or r[1] is None or not walked.contains(r[1]) or r[1] in odd
        ]
        if dropped:  # exactly those narrow() took away: the odd ones it kept are still here
            self.refs += [r for r in self.all if r[1] in dropped and r[0] is not None and r[1] not in odd]
        return self.refs


class _Absent:
    """Tell cheaply that a referenced path names nothing, resolving each parent folder only once."""

    def __init__(self, root: UploadsRoot) -> None:
        self.root = root
        self.parents: dict[str, str | None] = {}

    def certain(self, key: str) -> bool:
        """True when nothing is at key and its real parent is inside the root (so: absent)."""
        parent, _, name = key.rpartition("/")
        if parent not in self.parents:
            real = os.path.realpath(self.root.real / parent)
            inside = real == str(self.root.real) or real.startswith(f"{self.root.real}/")
            self.parents[parent] = real if inside else None
        real_parent = self.parents[parent]
        if real_parent is None:
            return False
        try:
            os.lstat(os.path.join(real_parent, name))
        except FileNotFoundError:
            return True
        except OSError:
            return False
        return False


def _referenced(
    root: UploadsRoot, store: ObjectStore, key: str, previous: dict[str, FileEntry]
) -> FileEntry | tuple[str, str]:
    """Back up one referenced file outside the walk, or say why not as (reason, kind)."""
    verdict, real = root.resolve(key)
    if verdict == "escapes":
        return "stored path resolves outside the uploads root; not opened", ESCAPES
    if real is None:
        _unless_gone(root.real / key)
        return GONE
    # Resolved, so no symlink is left in it; opened one level at a time, so none swapped in since is
    # followed out of the root either.
    folder, _, name = root.relative(real).rpartition("/")
    try:
        fd = _open_folder(root, folder)
    except (FileNotFoundError, NotADirectoryError):
        return GONE
    except OSError as exc:
        if exc.errno != errno.ELOOP:
            raise unreadable(str(real.parent), exc) from None
        return "a folder on its path was swapped for a symlink during the backup; not followed", ESCAPES
    try:
        st = os.stat(name, dir_fd=fd, follow_symlinks=False)
        if not stat.S_ISREG(st.st_mode):
            return GONE
        return _entry(store, name, key, StatKey.of(st), previous, fd)
    except FileNotFoundError:
        return GONE
    finally:
        os.close(fd)


def _open_folder(root: UploadsRoot, folder: str) -> int:
    root_fd = open_root(root)
    try:
        return open_beneath(root_fd, folder)
    finally:
        os.close(root_fd)


def _unless_gone(path: Path) -> None:
    """Raise when a path resolve() found no file at is there but unreadable: that is not absent."""
    try:
        os.stat(path)
    except (FileNotFoundError, NotADirectoryError):
        return
    except OSError as exc:
        if exc.errno != errno.ELOOP:
            raise unreadable(str(path), exc) from None


def _entry(
    store: ObjectStore,
    source: str | Path,
    relpath: str,
    key: StatKey,
    previous: dict[str, FileEntry],
    dir_fd: int | None = None,
) -> FileEntry:
    return store.reuse(previous.get(relpath), relpath, key) or store.add_file(source, relpath, dir_fd=dir_fd)


def _previous(repo: Repository, wanted: Wanted) -> Previous:
    """Return the newest readable backup of the same source: the stat cache for this one."""
    return Previous.of(next(readable(newest_first(repo, wanted, ANY_PURPOSE)), None))


def _counts(
    walked: Walked,
    extra: list[FileEntry],
    missing: list[MissingRef],
    facts: SnapshotFacts,
    store: ObjectStore,
) -> dict[str, int]:
    return {
        "files": walked.files + len(extra),
        "bytes": walked.bytes + sum(f.size for f in extra),
        "rows_with_paths": len(facts.refs),
        "missing": len(missing),
        "files_read": store.files_read,
        "new_objects": store.new_objects,
        "new_bytes": store.new_bytes,
        "folder_lists": sum(len(f.pages) for f in walked.folders),
        "folder_lists_written": store.lists_written,
        "dump_chunks_written": store.chunks_written,
    }


def app_commit(settings: Settings) -> str | None:
    """Return the app's git commit when its migrations or uploads folder sits in a git checkout."""
    for folder in (settings.migrations_dir, settings.uploads_root):
        if folder is None or not folder.is_dir():
            continue
        try:
            done = subprocess.run(
                ["git", "-C", str(folder), "rev-parse", "HEAD"],
                capture_output=True,
                text=True,
                timeout=10,
                check=False,
            )
        except (OSError, subprocess.TimeoutExpired):
            continue
        if done.returncode == 0 and done.stdout.strip():
            return done.stdout.strip()
    return None
