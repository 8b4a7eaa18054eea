"""The backup repository on disk: its layout, the one-writer lock, and atomic publication."""

from __future__ import annotations

import errno
import fcntl
import json
import os
import re
import secrets
import shutil
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path

from guard.backup.repo import packs, permissions
from guard.backup.repo.manifest import Manifest, ManifestError, parse
from guard.backup.repo.objects import ObjectStore, fsync_path
from guard.errors import GuardError, UnreachableError, UsageError

# The marker says which repository format a folder holds. Format 2 may hold zlib-compressed objects
# (folder lists) in packs with format-2 indexes; versions before it would take those indexes for
# damage and drop them, so a format-2 repository has a marker under a name they do not know: they
# refuse it ("no guard backup repository", "not a guard backup folder") instead of misreading it.
# A format-1 repository is read as it is, and upgraded by the first backup or prune that writes.
# Format 3 compresses with zstd and keeps the database dump as chunks in packs (the manifest names
# them); format 2 knows neither, and refuses a format-3 marker as it refused any it did not know.
# A format-2 repository is read as it is, and upgraded (its marker rewritten) like a format-1 one.
OLD_MARKER = "guard-backup.json"  # format 1
MARKER = "guard-repository.json"
FORMAT = "guard-backup/3"
MARKER_TEXT = f'{{"format": "{FORMAT}"}}\n'
KNOWN_FORMATS = ("guard-backup/1", "guard-backup/2", FORMAT)
MANIFEST = "manifest.json"
UNSYNCED = "objects-unsynced"  # present while objects may have been written but not yet synced
UNSYNCED_SLACK_NS = 2_000_000_000  # timestamp granularity and clock steps between marker and objects
DUMP = "database.dump"
BACKUP_ID = re.compile(r"\d{8}T\d{6}Z-[0-9a-f]{6}")
# How long a restore, a prune or a put-back waits for a backup holding the repository before it gives up.
LOCK_WAIT_S = 600.0


def _write_marker(root: Path) -> None:
    """Mark the repository as in this format; whole or absent, even when two upgrade at once."""
    temp = root / f"{MARKER}.{secrets.token_hex(4)}"
    permissions.write_file(temp, MARKER_TEXT.encode("utf-8"))
    os.replace(temp, root / MARKER)
    fsync_path(root)


def _check_format(marker: Path) -> str:
    """Return the repository's format; refuse one this version does not know (a newer guard wrote it)."""
    try:
        stated = json.loads(marker.read_text(encoding="utf-8")).get("format")
    except (ValueError, AttributeError):
        stated = None
    if stated not in KNOWN_FORMATS:
        raise UsageError(
            f"backup repository {marker.parent} is in format {stated!r}, which this guard does not know "
            f"(it reads {', '.join(KNOWN_FORMATS)}); use the guard version that wrote it or a newer one"
        )
    return str(stated)


class RepositoryBusy(GuardError):
    """Another backup or prune holds the repository lock."""


def new_backup_id(now: datetime | None = None) -> str:
    """Return a sortable, unique id such as 20250101T020000Z-1a2b3c."""
    moment = (now or datetime.now(UTC)).astimezone(UTC)
    return f"{moment:%Y%m%dT%H%M%SZ}-{secrets.token_hex(3)}"


def check_backup_id(text: str) -> str:
    """Accept only the id format, so an id can never name a path outside the repository."""
    if not BACKUP_ID.fullmatch(text):
        raise UsageError(f"not a backup id: {text!r} (expected e.g. 20250101T020000Z-1a2b3c)")
    return text


def unwritable(path: Path, exc: OSError) -> UnreachableError:
    reason = exc.strerror or errno.errorcode.get(exc.errno or 0, str(exc))
    return UnreachableError(f"cannot write to backup folder {path}: {reason}")


class Repository:
    """BACKUP_DIR: objects/ and packs/ (the content-addressed store), backups/<id>/ (published), tmp/
    (in progress)."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.objects = root / "objects"
        self.packs = root / "packs"
        self.backups = root / "backups"
        self.tmp = root / "tmp"
        self.restores = root / "restores"
        self.drill_log = root / "drills.jsonl"
        self._store: ObjectStore | None = None

    @property
    def store(self) -> ObjectStore:
        """The object store, one per Repository, so its pack index is read once."""
        if self._store is None:
            self._store = ObjectStore(self.objects, self.tmp, self.packs)
        return self._store

    @classmethod
    def open(cls, root: Path, *, create: bool) -> Repository:
        """Open (or create) a repository; refuse a non-empty folder that is not one."""
        repo = cls(root)
        try:
            if create:
                root.parent.mkdir(parents=True, exist_ok=True)  # above the repository: not ours
                permissions.make_folder(root, exist_ok=True)
                if (root / MARKER).exists():
                    if _check_format(root / MARKER) != FORMAT:  # format 2: upgraded here
                        _write_marker(root)
                elif (root / OLD_MARKER).exists():  # format 1: every earlier version's; upgraded here
                    _write_marker(root)
                    (root / OLD_MARKER).unlink(missing_ok=True)
                else:
                    if any(p.name != "lock" for p in root.iterdir()):
                        raise UsageError(f"BACKUP_DIR {root} is not empty and not a guard backup folder")
                    permissions.write_file(root / MARKER, MARKER_TEXT.encode("utf-8"))
                for folder in (repo.objects, repo.packs, repo.backups, repo.tmp):
                    permissions.make_folder(folder, exist_ok=True)
            elif (root / MARKER).is_file():
                _check_format(root / MARKER)
            elif not (root / OLD_MARKER).is_file():
                raise UnreachableError(f"no guard backup repository at {root}")
        except OSError as exc:
            raise unwritable(root, exc) from None
        return repo

    @contextmanager
    def lock(self, *, exclusive: bool, wait_s: float = 0.0) -> Iterator[None]:
        """Hold the repository lock; the kernel drops it when its holder dies, so it cannot get stuck."""
        try:
            fd = os.open(self.root / "lock", os.O_RDWR | os.O_CREAT, permissions.FILE)
        except OSError as exc:
            raise unwritable(self.root, exc) from None
        try:
            self._acquire(fd, exclusive, wait_s)
            yield
        finally:
            os.close(fd)

    def _acquire(self, fd: int, exclusive: bool, wait_s: float) -> None:
        mode = (fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH) | fcntl.LOCK_NB
        deadline = time.monotonic() + wait_s
        while True:
            try:
                fcntl.flock(fd, mode)
                return
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    raise RepositoryBusy(
                        f"another guard backup, prune or restore is using {self.root}; try again later"
                    ) from None
                time.sleep(0.2)

    def clear_tmp(self) -> None:
        """Remove what killed runs left behind; call only under the exclusive lock."""
        packs.remove_unindexed(self.packs)
        for leftover in self.tmp.iterdir():
            if leftover.is_dir() and not leftover.is_symlink():
                shutil.rmtree(leftover, ignore_errors=True)
            else:
                leftover.unlink(missing_ok=True)

    @contextmanager
    def writing_objects(self) -> Iterator[int]:
        """Mark the store as holding objects not yet known to be on disk, for the with-block.

        Objects are renamed in without an fsync each (one per object would cost more than a whole
        incremental backup); one os.sync() before publication makes them durable. An OS crash before
        that sync can leave an object whose name and size reached the disk but whose data did not (a
        file system that does not order data before metadata, such as ext4 without a journal), and
        the store trusts an object by its size. So the marker is made durable before the first object
        is written and removed after the sync; a marker still there means a writer died between the
        two, and every object changed since it is re-hashed and, if wrong, removed to be written
        again. Yields how many objects that check removed. Call only under the exclusive lock.
        """
        marker = self.root / UNSYNCED
        removed = 0
        try:
            since = marker.stat().st_mtime_ns - UNSYNCED_SLACK_NS
        except FileNotFoundError:
            pass
        else:
            removed = self.store.remove_bad_since(since)
        fd = os.open(marker, os.O_WRONLY | os.O_CREAT, permissions.FILE)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
        fsync_path(self.root)
        try:
            yield removed
        finally:
            os.sync()  # whatever was written, failed run or not, is on disk before the marker goes
            marker.unlink(missing_ok=True)
            fsync_path(self.root)

    def staging(self, backup_id: str) -> Path:
        path = self.tmp / backup_id
        permissions.make_folder(path)
        return path

    def publish(self, staging: Path, backup_id: str) -> Path:
        """Make a staged backup durable, then rename it into backups/ as the very last step."""
        for item in staging.iterdir():
            fsync_path(item)
        fsync_path(staging)
        os.sync()  # objects are written without their own fsync; flush them before they are referenced
        final = self.backups / backup_id
        os.rename(staging, final)
        fsync_path(self.backups)
        return final

    def ids(self) -> list[str]:
        """Return the published backup ids, oldest first."""
        try:
            names = [p.name for p in self.backups.iterdir()]
        except OSError as exc:
            raise UnreachableError(f"cannot read {self.backups}: {exc.strerror}") from None
        return sorted(n for n in names if BACKUP_ID.fullmatch(n))

    def folder(self, backup_id: str) -> Path:
        return self.backups / check_backup_id(backup_id)

    def load(self, backup_id: str) -> Manifest:
        path = self.folder(backup_id) / MANIFEST
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            raise ManifestError(f"backup {backup_id} not found in {self.root}") from None
        except OSError as exc:
            raise UnreachableError(f"cannot read {path}: {exc.strerror}") from None
        return parse(data, f"backup {backup_id}", self.store.read_list)

    def manifests(self) -> Iterator[tuple[str, Manifest | ManifestError]]:
        """Yield every published backup, oldest first, with its manifest or why it cannot be read."""
        for backup_id in self.ids():
            try:
                yield backup_id, self.load(backup_id)
            except ManifestError as exc:
                yield backup_id, exc

    def dump_path(self, backup_id: str) -> Path:
        return self.folder(backup_id) / DUMP

    def remove(self, backup_id: str) -> None:
        """Unpublish a backup first (one rename), then delete its folder."""
        doomed = self.tmp / f"{backup_id}.removing"
        os.rename(self.folder(backup_id), doomed)
        fsync_path(self.backups)
        shutil.rmtree(doomed)
