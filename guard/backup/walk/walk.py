"""Walk the scanned folders into folder lists: stat every file, read again only the changed ones.

A folder's files are cut into pages of consecutive names (guard.backup.walk.paging, ~128 files
each), each page a JSON object in the content-addressed store. A page whose stat listing (name,
size, mtime, ctime, inode of every file, in name order) hashes to the stat digest recorded for the
previous backup's page with the same first name keeps the previous object without parsing it: every
file in it has the same size, mtime, ctime and inode as when it was hashed. Any other page is
compared file by file with the rows of the previous pages its names fall in (a previous backup of
format 3 or 4, whose pages were hash buckets: with all of the folder's rows, read once), and a new
or changed file is always read again (there is no folder-mtime shortcut: a file rewritten in place
leaves its folder's mtime alone, but not its own mtime/ctime/size).
"""

from __future__ import annotations

import os
import pickle
import stat
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

from guard.backup.faults import FAULT_ENV, race_point
from guard.backup.repo.listing import page_bytes
from guard.backup.repo.manifest import (
    BY_NAME,
    FileEntry,
    FolderRef,
    Manifest,
    ManifestError,
    PageRef,
    stat_digest,
)
from guard.backup.repo.objects import ObjectStore
from guard.backup.walk import paging, statpage
from guard.backup.walk.statpage import StatRow
from guard.errors import GuardError
from guard.fs.beneath import names_of, open_listed, open_root, scan_folder, unreadable
from guard.fs.fdio import write_all
from guard.fs.forking import fork_is_safe
from guard.fs.root import UploadsRoot
from guard.progress import ProgressFactory

PARALLEL_MIN = 20_000  # files in a folder before it is worth forking a second process for it
RUN_BUCKETS = 16  # buckets a process takes from the shared queue at a time (at least)
QUEUE_RUNS = 1024  # runs in the queue at most: 4 KiB, less than a pipe holds
Meanwhile = Callable[[str, set[str], set[str]], None]  # a big folder: (its path, listed names, odd paths)


@dataclass
class Previous:
    """The newest readable backup, as the stat cache for this one (folder lists read only on demand)."""

    manifest: Manifest | None = None
    flat: dict[str, FileEntry] = field(default_factory=dict)  # inline files (all of a format 1/2 one)
    folders: dict[str, FolderRef] = field(default_factory=dict)
    _whole: dict[str, dict[str, tuple[Any, ...]]] = field(default_factory=dict)
    _firsts: dict[str, list[str]] = field(default_factory=dict)

    @classmethod
    def of(cls, manifest: Manifest | None) -> Previous:
        if manifest is None:
            return cls()
        flat = {f.path: f for f in manifest.inline_files}
        return cls(manifest, flat, {f.path: f for f in manifest.folders})

    def page(self, folder: FolderRef, page: PageRef) -> dict[str, tuple[Any, ...]] | None:
        """The page's rows by name, or None when its object cannot be read (its files are read again)."""
        assert self.manifest is not None
        try:
            return {r[0]: tuple(r) for r in self.manifest.page_list(folder, page)}
        except ManifestError:
            return None

    def whole(self, folder: FolderRef) -> dict[str, tuple[Any, ...]]:
        """Every readable row of a folder whose page count changed, by name (read once per folder)."""
        if folder.path not in self._whole:
            rows: dict[str, tuple[Any, ...]] = {}
            for page in folder.pages:
                rows.update(self.page(folder, page) or {})
            self._whole[folder.path] = rows
        return self._whole[folder.path]

    def around(self, folder: FolderRef | None, first: str, last: str) -> dict[str, tuple[Any, ...]] | None:
        """The rows to compare a page of names first..last with: of the folder's previous pages they
        fall in (cut by name), or all its rows (hash pages); None: use the flat (format 1/2) list."""
        if folder is None:
            return None
        if folder.buckets != BY_NAME:
            return self.whole(folder)
        if folder.path not in self._firsts:
            self._firsts[folder.path] = [str(p.first) for p in folder.pages]
        rows: dict[str, tuple[Any, ...]] = {}
        for i in paging.overlapping(self._firsts[folder.path], first, last):
            rows.update(self.page(folder, folder.pages[i]) or {})
        return rows


@dataclass
class Walked:
    """The walk's folder lists, the name of every file they list by folder, and totals."""

    folders: list[FolderRef] = field(default_factory=list)
    listed: dict[str, set[str]] = field(default_factory=dict)  # folder (root-relative) -> file names
    odd: set[str] = field(default_factory=set)  # listed paths with a backslash or `..` in a name
    dropped: set[str] = field(default_factory=set)  # paths meanwhile() saw that the walk did not list
    files: int = 0
    bytes: int = 0

    def contains(self, path: str) -> bool:
        """Whether a root-relative path, spelled exactly, is a file the walk listed."""
        folder, _, name = path.rpartition("/")
        names = self.listed.get(folder)
        return names is not None and name in names


@dataclass
class _Share:
    """What one process made of some of a folder's pages: compact, so a worker returns it cheaply."""

    pages: list[PageRef] = field(default_factory=list)
    unlisted: list[str] = field(default_factory=list)  # listed names that are not in a page
    folders: list[str] = field(default_factory=list)  # sub-folder names (by lstat, not followed)
    packs: list[str] = field(default_factory=list)  # packs a worker sealed
    counts: tuple[int, int, int, int] = (0, 0, 0, 0)


def walk(
    root: UploadsRoot,
    scan_dirs: tuple[str, ...],
    store: ObjectStore,
    previous: Previous,
    progress: ProgressFactory,
    meanwhile: Meanwhile | None = None,
    *,
    absent_ok: bool = False,
) -> Walked:
    """List every regular file under scan_dirs (symlinks and symlinked folders are not followed).

    meanwhile(folder, names, odd), when given, is called with a big folder's listed names while its
    worker process is still statting, so the caller's own set work runs on the core the walk leaves
    idle. It may see a few names the walk later drops (gone, or not regular files); those end up in
    walked.dropped as paths.
    """
    walked = Walked()
    bar = progress("files", None)
    seen: set[str] = set()
    root_fd = open_root(root)
    try:
        for folder in scan_dirs:
            if not scan_folder(root, folder, absent_ok):
                continue
            stack = [folder]
            while stack:
                rel = stack.pop()
                if rel in seen:
                    continue
                seen.add(rel)
                current = f"{root.real}/{rel}"  # named in messages; opened only through root_fd
                fd = open_listed(root_fd, rel, current)
                if fd is None:
                    continue
                try:
                    names = names_of(fd, current)
                    bar.advance(len(names))
                    subfolders = _folder(current, rel, names, fd, store, previous, walked, meanwhile)
                finally:
                    os.close(fd)
                stack.extend(f"{rel}/{name}" for name in subfolders)
    finally:
        os.close(root_fd)
    bar.close()
    return walked


def _folder(
    current: str,
    rel: str,
    names: list[str],
    fd: int,
    store: ObjectStore,
    previous: Previous,
    walked: Walked,
    meanwhile: Meanwhile | None,
) -> list[str]:
    """Back up one folder's files (through its open descriptor) into pages; return its sub-folders."""
    if not names:
        return []
    listing = _Listing(rel, names)
    groups = paging.cut(names)
    job = _Job(current, rel, len(groups), groups, fd, store, previous)
    if len(names) >= PARALLEL_MIN and fork_is_safe():
        shares = _in_parallel(job, listing, meanwhile)
    else:
        shares = [job.run(range(len(groups)))]
    pages = sorted((p for share in shares for p in share.pages), key=lambda p: p.bucket)
    gone = {listing.prefix + n for share in shares for n in share.unlisted + share.folders}
    if listing.shown:
        walked.dropped |= gone
    if pages:
        walked.folders.append(FolderRef(rel, BY_NAME, tuple(pages)))
        walked.files += sum(p.files for p in pages)
        walked.bytes += sum(p.bytes for p in pages)
        listed = listing.names_set()
        listed.difference_update(n for share in shares for n in share.unlisted + share.folders)
        walked.listed[rel] = listed
        walked.odd |= listing.odd()
    return [n for share in shares for n in share.folders]


class _Listing:
    """A folder's listed names as a set, built once, whichever process step needs it."""

    def __init__(self, rel: str, names: list[str]) -> None:
        self.rel = rel
        self.prefix = f"{rel}/"
        self.names = names
        self.shown = False  # whether meanwhile() saw these names before the walk dropped any
        self._set: set[str] | None = None
        self._odd: set[str] | None = None

    def names_set(self) -> set[str]:
        if self._set is None:
            self._set = set(self.names)
        return self._set

    def odd(self) -> set[str]:
        """Listed paths with a backslash or `..` in the name: a stored path equal to one is checked fully."""
        if self._odd is None:
            self._odd = {self.prefix + n for n in self.names if "\\" in n or ".." in n}
        return self._odd


def _in_parallel(job: _Job, listing: _Listing, meanwhile: Meanwhile | None) -> list[_Share]:
    """Share a big folder's pages with one forked worker: both take runs of buckets from one queue.

    The queue is a pipe filled before the fork, so whichever process is free takes the next run and
    neither waits for the other: this one first does its set work (meanwhile), then joins in.
    """
    job.store.flush()  # a pack being written is this process's: the worker starts its own
    queue = _queue(job.buckets)
    try:
        read_end, write_end = os.pipe()
        pid = os.fork()
        if pid == 0:  # the worker: never returns, never runs the parent's cleanup
            os.close(read_end)
            _worker(job, _taken(queue, job.buckets), write_end)
        os.close(write_end)
        try:
            if meanwhile is not None:
                listing.shown = True
                meanwhile(listing.rel, listing.names_set(), listing.odd())
            shares = [job.run(_taken(queue, job.buckets))]
        finally:
            result = _collect(pid, read_end)
    finally:
        os.close(queue)
    if isinstance(result, BaseException):
        raise result
    job.store.add_counts(result.counts)  # the worker wrote with its own copy of the store
    job.store.adopt(result.packs)
    shares.append(result)
    return shares


def _queue(buckets: int) -> int:
    """Return the read end of a pipe holding the first bucket of each run, write end closed (so EOF)."""
    step = _run_length(buckets)
    data = b"".join(start.to_bytes(4, "little") for start in range(0, buckets, step))
    read_end, write_end = os.pipe()
    try:
        write_all(write_end, data)  # at most QUEUE_RUNS entries: fits the pipe's buffer, never blocks
    finally:
        os.close(write_end)
    return read_end


def _run_length(buckets: int) -> int:
    return max(RUN_BUCKETS, -(-buckets // QUEUE_RUNS))


def _taken(queue: int, buckets: int) -> Iterator[int]:
    """Yield the buckets of each run this process takes from the queue, until it is empty."""
    step = _run_length(buckets)
    while len(entry := os.read(queue, 4)) == 4:  # a pipe hands each 4-byte entry to one reader
        start = int.from_bytes(entry, "little")
        yield from range(start, min(start + step, buckets))


def _worker(job: _Job, buckets: Iterable[int], out: int) -> None:
    try:
        try:
            before = len(job.store.sealed)
            share = job.run(buckets)
            job.store.flush()
            share.packs = job.store.sealed[before:]
            payload = pickle.dumps(share)
        except BaseException as exc:  # carried back and raised in the parent
            job.store.abandon()
            try:
                payload = pickle.dumps(exc)
            except Exception:
                payload = pickle.dumps(GuardError(f"walk worker failed: {type(exc).__name__}: {exc}"))
        with os.fdopen(out, "wb") as stream:
            stream.write(payload)
    finally:
        os._exit(0)


def _collect(pid: int, fd: int) -> _Share | BaseException:
    with os.fdopen(fd, "rb") as stream:
        payload = stream.read()
    _, status = os.waitpid(pid, 0)
    if not payload:
        return GuardError(f"a backup walk worker died ({_how(status)}); nothing was published")
    result = pickle.loads(payload)
    if isinstance(result, (_Share, BaseException)):
        return result
    return GuardError("a backup walk worker returned something unexpected")


def _how(status: int) -> str:
    if os.WIFSIGNALED(status):
        return f"signal {os.WTERMSIG(status)}"
    return f"exit status {os.waitstatus_to_exitcode(status)}"


@dataclass
class _Job:
    """One folder's pages to build: its listing split into name-hash buckets."""

    current: str
    rel: str
    buckets: int
    groups: list[list[str]]
    fd: int
    store: ObjectStore
    previous: Previous

    def run(self, buckets: Iterable[int]) -> _Share:
        store = self.store
        before = (store.files_read, store.new_objects, store.new_bytes, store.lists_written)
        share = _Share()
        old = self.previous.folders.get(self.rel)
        old_pages = {p.first: p for p in old.pages} if old is not None and old.buckets == BY_NAME else {}
        for bucket in buckets:
            group = self.groups[bucket]  # in name order
            blob = statpage.names_blob(group)
            packed = statpage.stat_blob(self.fd, blob)
            if packed is not None:  # all regular files, as in nearly every page: no object per file yet
                digest = statpage.digest(blob, packed)
                rows = None
                page = old_pages.get(group[0])
            else:
                rows = _stat_rows(group, self.fd, share, self.current)
                if not rows:
                    continue
                digest = stat_digest(rows)
                page = old_pages.get(rows[0][0])
            if (
                page is None
                or page.stat_digest != digest
                or not store.has(page.sha256, page.size)
                or (store.lost and not _objects_held(self.previous, old, page, store))
            ):
                prior = self.previous.around(old, group[0], group[-1])
                if rows is None:
                    rows = statpage.rows(group, packed or b"")
                page = _new_page(self, bucket, rows, prior, share, digest)
            if page is not None:  # a kept page's place is its place now, not the one it was written at
                share.pages.append(page._replace(bucket=bucket))
        after = (store.files_read, store.new_objects, store.new_bytes, store.lists_written)
        share.counts = (
            after[0] - before[0],
            after[1] - before[1],
            after[2] - before[2],
            after[3] - before[3],
        )
        return share


def _objects_held(previous: Previous, old: FolderRef | None, page: PageRef, store: ObjectStore) -> bool:
    """Whether the store still holds every file object a reused page names (a dict lookup each)."""
    rows = previous.page(old, page) if old is not None else None
    return rows is not None and all(store.has(r[1], r[2]) for r in rows.values())


def _stat_rows(group: list[str], fd: int, share: _Share, current: str) -> list[StatRow]:
    """lstat each name under the folder fd; keep regular files, note folders and what is gone or odd."""
    lstat = os.lstat
    try:
        results = [(name, lstat(name, dir_fd=fd)) for name in group]
    except FileNotFoundError:
        results = []
        for name in group:
            try:
                results.append((name, lstat(name, dir_fd=fd)))
            except FileNotFoundError:
                share.unlisted.append(name)
            except OSError as exc:
                raise unreadable(f"{current}/{name}", exc) from None
    except OSError as exc:  # EACCES (a folder that can be listed, not searched), EIO...
        raise unreadable(current, exc) from None
    isreg = stat.S_ISREG
    rows = [
        (name, st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino)
        for name, st in results
        if isreg(st.st_mode)
    ]
    if len(rows) != len(results):
        for name, st in results:
            if stat.S_ISDIR(st.st_mode):
                share.folders.append(name)
            elif not isreg(st.st_mode):
                share.unlisted.append(name)  # symlinks, sockets...: never followed
    return rows


def _new_page(
    job: _Job,
    bucket: int,
    rows: list[StatRow],
    prior: dict[str, tuple[Any, ...]] | None,
    share: _Share,
    listed: str,
) -> PageRef | None:
    """Build and store a page: unchanged files keep their hash, new or changed ones are read again.

    listed is the stat digest of rows: the page's when every file is still as it was listed.
    """
    rel, flat, store = job.rel, job.previous.flat, job.store
    final: list[tuple[Any, ...] | None] = []
    fresh: list[str] = []  # names to read, in page order; their places in final hold None
    for row in rows:
        name = row[0]
        old: tuple[Any, ...] | None = prior.get(name) if prior is not None else flat.get(f"{rel}/{name}")
        if old is not None and old[2:] == row[1:] and store.has(old[1], row[1]):
            final.append((name, old[1], *row[1:]))
        else:
            final.append(None)
            fresh.append(name)
    trusted = True
    if fresh:
        if os.environ.get(FAULT_ENV):  # a test's race point, before the page's first upload is opened
            race_point("copy")
        added = zip(fresh, store.add_files(fresh, rel, job.fd), strict=True)
        for i in [i for i, entry in enumerate(final) if entry is None]:
            name, got = next(added)
            if got is None:
                share.unlisted.append(name)  # deleted since it was listed; a row needing it: missing
                continue
            final[i] = (name, *got)
            trusted = trusted and got[3] is not None
    kept = [e for e in final if e is not None]
    if not kept:
        return None  # every name in it went away (all noted as unlisted)
    if not trusted:
        digest = None
    elif len(kept) == len(rows) and all(k[2:] == r[1:] for k, r in zip(kept, rows, strict=True)):
        digest = listed  # as in nearly every page: its files read again had not changed since listed
    else:
        digest = stat_digest([(r[0], r[2], r[3], r[4], r[5]) for r in kept])
    sha, size = store.add_list(page_bytes(kept))
    return PageRef(bucket, sha, size, len(kept), sum(r[2] for r in kept), digest, kept[0][0])
