"""Content-addressed uploads objects (SHA-256), and the stat cache that lets unchanged files be skipped."""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import os
import secrets
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from guard.backup.faults import ObjectFaults, crash_point
from guard.backup.repo import inventory, packs
from guard.backup.repo.manifest import FileEntry, ManifestError
from guard.backup.repo.permissions import FOLDER, FROZEN
from guard.backup.walk import pageread
from guard.backup.walk.statpage import names_blob
from guard.errors import GuardError, UnreachableError
from guard.fs.fdio import write_all
from guard.fs.paths import printable
from guard.plural import plural

CHUNK = 1 << 20
SMALL = 1 << 20  # files up to this size are read whole before anything is written
RACY_NS = 2_000_000_000  # a file changed this recently may change again within one timestamp tick
COPY_TRIES = 3
# zstd levels. Folder lists: on the bench's pages 7% smaller than level 3, at ~150 MB/s. Dump chunks
# (a plain `pg_dump -Fc -Z0` archive shrinks 6-7x): 9% smaller than level 1 (28.1 MB against 30.9
# on the bench's 194 MB archive) at ~40 MB/s a core, which guard.backup.repo.dumps spreads over
# both cores once the walk is done; a chunk an earlier backup holds is not compressed at all.
LIST_LEVEL = 6
CHUNK_LEVEL = 9
Row = tuple[str, int, int, int | None, int]  # sha256, size, mtime_ns, ctime_ns (None: racy), inode


@dataclass(frozen=True, slots=True)
class StatKey:
    """What must be unchanged for a file to be trusted without reading it."""

    size: int
    mtime_ns: int
    ctime_ns: int
    inode: int

    @classmethod
    def of(cls, st: os.stat_result) -> StatKey:
        return cls(st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino)


def cached_entry(previous: FileEntry | None, path: str, key: StatKey) -> FileEntry | None:
    """Return the previous backup's entry when the file's size, mtime, ctime and inode are unchanged."""
    if previous is None or previous.ctime_ns is None:
        return None
    if (previous.size, previous.mtime_ns, previous.ctime_ns, previous.inode) != (
        key.size,
        key.mtime_ns,
        key.ctime_ns,
        key.inode,
    ):
        return None
    return FileEntry(path, previous.sha256, previous.size, key.mtime_ns, key.ctime_ns, key.inode)


class ObjectStore:
    """Each distinct content stored once under its SHA-256: packed when small, else a loose file.

    An upload of up to SMALL bytes and every folder list go into a pack (guard.backup.repo.packs); a
    bigger upload is objects/<2 hex>/<sha256>, written under tmp/ and renamed in. Loose objects of
    any size written by earlier versions are read and kept as they are.
    """

    def __init__(self, objects: Path, tmp: Path, packs_dir: Path | None = None) -> None:
        self.objects = objects
        self.tmp = tmp
        self.packs = packs_dir or objects.parent / "packs"
        self.root = objects.parent  # the repository: inventory.json and damage.jsonl live there
        self.lost = False  # objects went missing since the last inventory: check reused lists' files
        self.damage: list[str] = []  # what reading the pack indexes found damaged
        self.damaged: set[str] = set()  # objects found not to match their hash: never taken as present
        self.faults = ObjectFaults()
        self.files_read = 0
        self.new_objects = 0
        self.new_bytes = 0
        self.lists_written = 0
        self.chunks_written = 0
        self.sealed: list[str] = []  # packs this store wrote, in order
        self._dirs: set[str] = set()
        self._objects = str(objects)  # the hot paths below use plain strings: no Path per object
        self._tmp = str(tmp)
        self._index: dict[str, packs.Where] | None = None
        self._writer = packs.PackWriter(self.packs, tmp)

    @property
    def index(self) -> dict[str, packs.Where]:
        """Every packed object by SHA-256 (read from the pack indexes once, kept up to date)."""
        if self._index is None:
            survey = packs.survey(self.packs)
            self.damage = survey.notes()
            self._index = survey.found
        return self._index

    def damage_found(self) -> list[str]:
        """What reading the pack indexes found damaged (an index that names nothing is damage)."""
        _ = self.index
        return list(self.damage)

    def reload(self) -> None:
        """Forget the pack index read so far: read it again from packs/ when next needed."""
        self._index = None

    def flush(self) -> None:
        """Seal the pack being written, if any: its objects are then in packs/, each re-hashed."""
        try:
            sealed = self._writer.seal()
        except BaseException:
            self.abandon()  # no object of it may be taken as stored
            raise
        if sealed is not None:
            name, where = sealed
            self.index.update(where)
            self.sealed.append(name)

    def abandon(self) -> None:
        """Drop the pack being written (the backup failed) and forget the objects in it."""
        pending = self._writer.pending
        self._writer.abandon()
        if self._index is not None:
            self._index = {s: w for s, w in self._index.items() if w.file != pending}

    def adopt(self, names: list[str]) -> None:
        """Know the objects of packs another process (a walk worker) sealed."""
        for name in names:
            where = packs.located(self.packs, name)  # FileNotFoundError: raised too
            if where is None:
                raise GuardError(f"the index of pack {name}, just written by a walk worker, cannot be read")
            self.index.update(where)
            self.sealed.append(name)

    def _pack_in(self, sha: str, data: bytes, *, compress: bool = False, stored: bytes | None = None) -> None:
        """Append an object to the open pack: as it is, compressed, or as `stored` (already compressed)."""
        self.faults.before_write()
        if stored is not None:
            self.index[sha] = self._writer.append_stored(sha, stored, len(data))
        else:
            self.index[sha] = self._writer.append(sha, data, compress=compress)
        self.damaged.discard(sha)
        if self._writer.full:
            self.flush()

    def path(self, sha256: str) -> Path:
        return self.objects / sha256[:2] / sha256

    def _where(self, sha256: str) -> str:
        return f"{self._objects}/{sha256[:2]}/{sha256}"

    def _temp_name(self, prefix: str) -> str:
        return f"{self._tmp}/{prefix}-{secrets.token_hex(8)}"

    def add_file(self, source: str | Path, relpath: str, *, dir_fd: int | None = None) -> FileEntry:
        """Copy a file in once, verify the copy's hash, and return its entry (ctime None if racy).

        dir_fd: source is a name in that open folder (the walk's), so no path is looked up again.
        """
        self.files_read += 1
        for _ in range(COPY_TRIES):
            fd = _open_source(source, dir_fd, relpath)
            try:
                before = os.fstat(fd)
                sha, size = self._take(fd, before.st_size, relpath)
                after = os.fstat(fd)
            finally:
                os.close(fd)
            # StatKey's fields as plain tuples: this runs once per file of a full backup
            key = (after.st_size, after.st_mtime_ns, after.st_ctime_ns, after.st_ino)
            steady = (before.st_size, before.st_mtime_ns, before.st_ctime_ns, before.st_ino) == key
            if steady:
                break
        _, mtime_ns, ctime_ns, inode = key
        if not steady or time.time_ns() - max(mtime_ns, ctime_ns) < RACY_NS:
            return FileEntry(relpath, sha, size, mtime_ns, None, inode)  # never a cache hit
        return FileEntry(relpath, sha, size, mtime_ns, ctime_ns, inode)

    def add_files(self, names: list[str], folder: str, dir_fd: int) -> list[Row | None]:
        """add_file for each name in an open folder (the walk's page): (sha256, size, mtime_ns,
        ctime_ns or None if racy, inode) each, or None for a file gone since it was listed.

        The plain case (a small regular file that holds still) is read for the whole page in one call
        (guard.backup.walk.pageread); any other name goes through add_file, which raises, retries or
        streams as ever.
        """
        results = pageread.read_files(dir_fd, names_blob(names), SMALL)
        racy_after = time.time_ns() - RACY_NS  # taken after every read: no file is trusted sooner
        rows: list[Row | None] = []
        for name, got in zip(names, results, strict=True):
            if got is None:
                try:
                    entry = self.add_file(name, f"{folder}/{name}", dir_fd=dir_fd)
                except FileNotFoundError:
                    rows.append(None)
                    continue
                rows.append(entry[1:])  # type: ignore[arg-type]
                continue
            sha, data, size, mtime_ns, ctime_ns, inode = got
            self.files_read += 1
            if not self.has(sha, size):
                self._pack_in(sha, data)
                self.new_objects += 1
                self.new_bytes += size
                self.faults.after_write()
            trusted = ctime_ns if max(mtime_ns, ctime_ns) <= racy_after else None
            rows.append((sha, size, mtime_ns, trusted, inode))
        return rows

    def _take(self, fd: int, expected: int, relpath: str) -> tuple[str, int]:
        """Hash an open file and store its content unless an object with that hash is already there.

        A small file is read whole first, so content the store already holds costs no temp file: on
        ext4 without a journal every create after many unlinks scans the recently freed inodes
        (recently_deleted() in find_inode_bit), so a create+unlink per duplicate file made a backup
        of a million identical files spend most of its time in the kernel.
        """
        if expected > SMALL:
            return self._copy_in(fd, relpath)
        data = _read_small(fd, relpath, expected)
        if data is None:  # it grew past SMALL while we read: copy it the streaming way
            os.lseek(fd, 0, os.SEEK_SET)
            return self._copy_in(fd, relpath)
        sha = hashlib.sha256(data).hexdigest()
        if not self.has(sha, len(data)):
            self._pack_in(sha, data)
            self.new_objects += 1
            self.new_bytes += len(data)
            self.faults.after_write()
        return sha, len(data)

    def _copy_in(self, fd: int, relpath: str) -> tuple[str, int]:
        temp = self._temp_name("object")
        digest = hashlib.sha256()
        size = 0
        self.faults.before_write()
        out = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, FROZEN)
        try:
            while chunk := _read_upload(fd, relpath):
                digest.update(chunk)
                write_all(out, chunk)
                size += len(chunk)
        finally:
            os.close(out)
        sha = digest.hexdigest()
        self._place(temp, sha, size)
        return sha, size

    def _place(self, temp: str, sha: str, size: int) -> None:
        """Rename a verified copy into place, unless an intact object with that hash is already there."""
        if self.has(sha, size):
            os.unlink(temp)
            return
        if hash_file(temp) != sha:
            os.unlink(temp)
            raise GuardError(f"a copied object did not hash to {sha} (disk or memory fault)")
        self._rename_in(temp, sha)
        self.new_objects += 1
        self.new_bytes += size
        self.faults.after_write()

    def add_counts(self, counts: tuple[int, int, int, int]) -> None:
        """Add what a walk worker wrote (files read, new objects, new bytes, lists written)."""
        self.files_read += counts[0]
        self.new_objects += counts[1]
        self.new_bytes += counts[2]
        self.lists_written += counts[3]

    def add_list(self, data: bytes) -> tuple[str, int]:
        """Store a folder list (bytes in memory) once under its SHA-256; return (sha256, size)."""
        sha = hashlib.sha256(data).hexdigest()
        if self.has(sha, len(data)):
            return sha, len(data)
        packed = packs.compressed(data, LIST_LEVEL)
        self._pack_in(sha, data, stored=packed if len(packed) < len(data) else data)
        self.lists_written += 1
        self.faults.after_write()
        return sha, len(data)

    def add_chunk(self, data: bytes, packed: bytes | None = None) -> tuple[str, int]:
        """Store a chunk of the database dump once under its SHA-256, compressed (packed: already, by
        packs.compressed(data, CHUNK_LEVEL)); return (sha256, size)."""
        sha = hashlib.sha256(data).hexdigest()
        if not self.has(sha, len(data)):
            if packed is None:
                packed = packs.compressed(data, CHUNK_LEVEL)
            self._pack_in(sha, data, stored=packed if len(packed) < len(data) else data)
            self.chunks_written += 1
            self.faults.after_write()
        return sha, len(data)

    def _rename_in(self, temp: str, sha: str) -> None:
        if sha[:2] not in self._dirs:
            with contextlib.suppress(FileExistsError):
                os.mkdir(f"{self._objects}/{sha[:2]}", FOLDER)
            self._dirs.add(sha[:2])
        os.rename(temp, self._where(sha))
        self.damaged.discard(sha)

    def reuse(self, previous: FileEntry | None, path: str, key: StatKey) -> FileEntry | None:
        """The previous entry when the file is unchanged and its object is still in the store."""
        entry = cached_entry(previous, path, key)
        if entry is None or not self.has(entry.sha256, entry.size):
            return None
        return entry

    def present(self, sha256: str) -> bool:
        """True when an object of that hash is in the store, whatever its size."""
        return sha256 in self.index or os.path.lexists(self._where(sha256))

    def note_damaged(self, sha256: str) -> None:
        """Note in damage.jsonl where an object that failed its hash lies: the next backup drops it."""
        self.damaged.add(sha256)
        where = self.index.get(sha256)
        if where is not None and where.file.startswith(f"{self.packs}/"):
            entry = {"pack": os.path.basename(where.file)[: -len(".pack")]}
        else:
            entry = {"loose": sha256}
        line = (json.dumps(entry) + "\n").encode("ascii")
        try:
            fd = os.open(self.root / inventory.DAMAGE, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        except OSError:
            return  # a read-only repository: the damage is still reported, just not remembered
        try:
            write_all(fd, line)  # one short append: whole even when two verifies note at once
        finally:
            os.close(fd)

    def has(self, sha256: str, size: int) -> bool:
        """True when an object of that hash and size is present (its content is not read)."""
        if self.damaged and sha256 in self.damaged:
            return False  # stored again, not reused
        where = self.index.get(sha256)
        if where is not None:
            return where.size == size
        try:
            return os.stat(self._where(sha256)).st_size == size
        except OSError:
            return False

    def read(self, sha256: str) -> bytes:
        """An object's bytes, not yet checked against its hash; FileNotFoundError when it is absent."""
        where = self.index.get(sha256)
        if where is not None:
            return self._read_packed(sha256, where)
        with open(self._where(sha256), "rb") as handle:
            return handle.read()

    def chunks(self, sha256: str) -> Iterator[bytes]:
        """An object's bytes in chunks, not yet checked; FileNotFoundError (at once) when it is absent."""
        where = self.index.get(sha256)
        if where is not None:
            return iter((self._read_packed(sha256, where),))
        return _file_chunks(os.open(self._where(sha256), os.O_RDONLY))

    def _read_packed(self, sha256: str, where: packs.Where) -> bytes:
        """Read from a pack; when it is gone, read the indexes again once: a prune (which readers
        such as `backup list` do not wait for) may have moved the object into a new pack."""
        try:
            return packs.read(where)
        except FileNotFoundError:
            self.reload()
            moved = self.index.get(sha256)
            if moved is None or moved == where:
                raise
            return packs.read(moved)

    def read_list(self, sha256: str, size: int) -> bytes:
        """Return a folder list's bytes after checking them against its hash; ManifestError if not."""
        try:
            data = self.read(sha256)
        except FileNotFoundError:
            raise ManifestError(f"folder list object {sha256} is missing") from None
        except OSError as exc:
            raise ManifestError(f"folder list object {sha256} cannot be read: {exc.strerror}") from None
        if len(data) != size or hashlib.sha256(data).hexdigest() != sha256:
            self.note_damaged(sha256)
            raise ManifestError(f"folder list object {sha256}: content does not match its hash")
        return data

    def check(self, sha256: str, size: int, *, read_data: bool) -> str | None:
        """Return what is wrong with an object (missing, wrong size, wrong hash) or None."""
        where = self.index.get(sha256)
        if where is not None:
            actual = where.size
        else:
            try:
                actual = self.path(sha256).stat().st_size
            except FileNotFoundError:
                return "missing"
        if actual != size:
            return f"size {actual}, expected {size}"
        if read_data:
            digest = hashlib.sha256()
            try:
                for chunk in self.chunks(sha256):
                    digest.update(chunk)
            except FileNotFoundError:
                return "missing"
            if digest.hexdigest() != sha256:
                self.note_damaged(sha256)
                return "content does not match its hash"
        return None

    def remove_bad_since(self, since_ns: int) -> int:
        """Re-hash every object and pack changed at or after since_ns; remove the ones that do not
        match their names. Return how many objects were removed."""
        removed = 0
        for entry in self.loose_entries():
            try:
                if entry.stat(follow_symlinks=False).st_ctime_ns < since_ns:
                    continue
                if hash_file(entry.path) != entry.name:
                    os.unlink(entry.path)
                    removed += 1
            except FileNotFoundError:
                continue
        for name in packs.pack_names(self.packs):
            files = (self.packs / f"{name}.pack", self.packs / f"{name}.idx")
            try:
                changed = max(f.stat().st_ctime_ns for f in files) >= since_ns
            except FileNotFoundError:
                changed = True
            if changed:
                removed += packs.drop_bad(self.packs, self.tmp, name)
        self._index = None
        return removed

    def collect_garbage(self, needed: set[str]) -> tuple[int, int, list[str]]:
        """Remove every object not in needed: loose files, and packed ones by writing their pack's
        other objects into a new pack (made durable first). Return (objects removed, bytes freed,
        notes on packs left as they were)."""
        removed = freed = 0
        notes: list[str] = []
        gone: list[str] = []
        added: list[str] = []
        for entry in list(self.loose_entries()):
            if entry.name not in needed:
                freed += entry.stat(follow_symlinks=False).st_size
                os.unlink(entry.path)
                removed += 1
        loose_removed = removed
        writer = packs.PackWriter(self.packs, self.tmp, sync=True)
        for name in packs.pack_names(self.packs):
            try:
                entries = packs.read_index(self.packs / f"{name}.idx")
            except FileNotFoundError:
                continue
            if entries is None:
                continue  # damaged: it names nothing, and verify reports what is missing
            dead = [e for e in entries if e[0] not in needed]
            if not dead:
                continue
            live = [e for e in entries if e[0] in needed]
            if live:
                try:
                    data = (self.packs / f"{name}.pack").read_bytes()
                except FileNotFoundError:  # an index left behind by a crash: its objects are gone
                    (self.packs / f"{name}.idx").unlink(missing_ok=True)
                    continue
                bad = [e for e in live if not packs.intact(data, e)]
                if bad:
                    notes.append(
                        f"kept pack {name} as it is: it holds {plural(len(bad), 'object')} "
                        "whose bytes do not match their hash "
                        "(guard backup verify --read-data says which backups need them)"
                    )
                    continue
                for sha, offset, stored, size in live:
                    writer.append_stored(sha, data[offset : offset + stored], size)
                sealed = writer.seal()
                added += [sealed[0]] if sealed is not None else []
                fsync_path(self.packs)
                crash_point("repacked")
            packs.remove(self.packs, name)
            gone.append(name)
            removed += len(dead)
            freed += sum(e[2] for e in dead)  # the bytes the pack held
        self._index = None
        inventory.adjust(self, gone, added, loose_removed)
        return removed, freed, notes

    def loose_entries(self) -> Iterator[os.DirEntry[str]]:
        """Every entry under objects/<2 hex>/."""
        for prefix in os.scandir(self.objects):
            if prefix.is_dir(follow_symlinks=False):
                with os.scandir(prefix.path) as entries:
                    yield from entries


def _open_source(source: str | Path, dir_fd: int | None, relpath: str) -> int:
    """Open an upload to copy it in; FileNotFoundError when it is gone (or a symlink replaced it)."""
    try:
        return os.open(source, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=dir_fd)
    except FileNotFoundError:
        raise
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise FileNotFoundError(errno.ENOENT, "replaced by a symlink", str(source)) from None
        raise UnreachableError(f"cannot read {printable(relpath)}: {exc.strerror or exc}") from None


def _read_upload(fd: int, relpath: str) -> bytes:
    """Read a chunk of an upload; an error here is the upload's (exit 3), not the repository's."""
    return _read_upload_n(fd, relpath, CHUNK)


def _read_upload_n(fd: int, relpath: str, size: int) -> bytes:
    """Read up to size bytes of an upload (an error: the upload's, exit 3)."""
    try:
        return os.read(fd, size)
    except OSError as exc:
        raise UnreachableError(
            f"cannot read {printable(relpath)}: {exc.strerror or exc}; nothing was published"
        ) from None


def _read_small(fd: int, relpath: str, expected: int) -> bytes | None:
    """Read an open file to its end; None when it holds more than SMALL bytes.

    The first read asks for one byte more than fstat said: when exactly the stated size comes back
    no second read looks for the end (the fstat after reading, compared with the one before, tells
    a file that changed meanwhile), which saves a system call per file of a full backup.
    """
    first = _read_upload_n(fd, relpath, expected + 1)
    if len(first) == expected:
        return first
    chunks = [first]
    size = len(first)
    if size > SMALL:
        return None
    while chunk := _read_upload(fd, relpath):
        chunks.append(chunk)
        size += len(chunk)
        if size > SMALL:
            return None
    return b"".join(chunks)


def _file_chunks(fd: int) -> Iterator[bytes]:
    try:
        while chunk := os.read(fd, CHUNK):
            yield chunk
    finally:
        os.close(fd)


def fsync_path(path: Path) -> None:
    """Flush a file's or a folder's own metadata and data to disk."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def hash_file(path: str | Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(CHUNK):
            digest.update(chunk)
    return digest.hexdigest()
