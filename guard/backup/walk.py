"""Walk the scanned folders into folder lists: stat every file, read again only the changed ones.

A folder's files are split into pages by a hash of the name (one page per ~PAGE_TARGET files), each
page a JSON object in the content-addressed store. A page whose stat listing (name, size, mtime,
ctime, inode of every file, in name order) hashes to the previous page's recorded stat digest keeps
the previous object without parsing it: every file in it has the same size, mtime, ctime and inode
as when it was hashed. Any other page is compared file by file with the previous page's rows, and a
new or changed file is always read again (there is no folder-mtime shortcut: a file rewritten in
place leaves its folder's mtime alone, but not its own mtime/ctime/size).
"""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any
from zlib import crc32

from guard.backup.manifest import (
    FileEntry,
    FolderRef,
    Manifest,
    ManifestError,
    PageRef,
    page_bytes,
    stat_digest,
)
from guard.backup.store import ObjectStore
from guard.errors import UnreachableError
from guard.progress import ProgressFactory
from guard.uploads import UploadsRoot

PAGE_TARGET = 32  # files per page on average; small, so a 1% change spread evenly leaves most alone
StatRow = tuple[str, int, int, int, int]  # name, size, mtime_ns, ctime_ns, inode


def bucket_count(files: int) -> int:
    """Pages for a folder of this many files: a power of two, so it changes only when the size doubles."""
    buckets = 1
    while buckets * PAGE_TARGET < files:
        buckets *= 2
    return buckets


def bucket_of(name: str, buckets: int) -> int:
    return crc32(name.encode("utf-8", "surrogateescape")) & (buckets - 1)


@dataclass
class Previous:
    """The newest readable backup, as the stat cache for this one (folder lists read only on demand)."""

    manifest: Manifest | None = None
    flat: dict[str, FileEntry] = field(default_factory=dict)  # inline files (all of a format 1/2 one)
    folders: dict[str, FolderRef] = field(default_factory=dict)
    _whole: dict[str, dict[str, tuple[Any, ...]]] = field(default_factory=dict)

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


@dataclass
class Walked:
    """The walk's folder lists, the file names each folder lists, and totals."""

    folders: list[FolderRef] = field(default_factory=list)
    names: dict[str, set[str]] = field(default_factory=dict)
    files: int = 0
    bytes: int = 0

    def has(self, path: str) -> bool:
        parent, _, name = path.rpartition("/")
        listed = self.names.get(parent)
        return listed is not None and name in listed


def walk(
    root: UploadsRoot,
    scan_dirs: tuple[str, ...],
    store: ObjectStore,
    previous: Previous,
    progress: ProgressFactory,
) -> Walked:
    """List every regular file under scan_dirs (symlinks and symlinked folders are not followed)."""
    walked = Walked()
    bar = progress("files", None)
    for current, rel, names in _folders(root, scan_dirs):
        bar.advance(len(names))
        if names:
            _folder(current, rel, names, store, previous, walked)
    bar.close()
    return walked


def _folders(root: UploadsRoot, scan_dirs: tuple[str, ...]) -> Iterator[tuple[str, str, list[str]]]:
    """Yield (real path, root-relative path, regular file names) per folder, each folder once."""
    seen: set[str] = set()
    for folder in scan_dirs:
        start = root.real / folder
        if not start.is_dir() or os.path.realpath(start) != str(start):
            continue  # absent, or reached through a symlink: never walked
        stack = [(str(start), folder)]
        while stack:
            current, rel = stack.pop()
            if current in seen:
                continue
            seen.add(current)
            try:
                with os.scandir(current) as entries:
                    chunk = list(entries)
            except PermissionError as exc:
                raise UnreachableError(f"cannot read {current}: {exc.strerror}") from None
            except (FileNotFoundError, NotADirectoryError):
                continue  # removed while we walked
            names = [e.name for e in chunk if e.is_file(follow_symlinks=False)]
            if len(names) != len(chunk):
                stack.extend((e.path, f"{rel}/{e.name}") for e in chunk if e.is_dir(follow_symlinks=False))
            yield current, rel, names


def _folder(
    current: str, rel: str, names: list[str], store: ObjectStore, previous: Previous, walked: Walked
) -> None:
    try:
        fd = os.open(current, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW)
    except OSError:
        return  # replaced since it was listed: its referenced files go the careful way
    try:
        buckets = bucket_count(len(names))
        groups: list[list[str]] = [names] if buckets == 1 else [[] for _ in range(buckets)]
        if buckets > 1:
            for name in names:
                groups[bucket_of(name, buckets)].append(name)
        old = previous.folders.get(rel)
        same_shape = old is not None and old.buckets == buckets
        old_pages = {p.bucket: p for p in old.pages} if old is not None and same_shape else {}
        listed: set[str] = set()
        pages: list[PageRef] = []
        for bucket, group in enumerate(groups):
            if not group:
                continue
            group.sort()
            rows = _stat_rows(group, fd)
            if not rows:
                continue
            digest = stat_digest(rows)
            page = old_pages.get(bucket)
            if page is not None and page.stat_digest == digest and store.has(page.sha256, page.size):
                listed.update(r[0] for r in rows)  # the very listing the previous page recorded
            else:
                prior = _prior(previous, old, page, same_shape)
                built = _new_page(current, rel, bucket, rows, prior, previous.flat, store)
                if built is None:
                    continue
                page, names_in = built
                listed.update(names_in)
            pages.append(page)
            walked.files += page.files
            walked.bytes += page.bytes
        if pages:
            walked.folders.append(FolderRef(rel, buckets, tuple(pages)))
            walked.names[rel] = listed
    finally:
        os.close(fd)


def _prior(
    previous: Previous, old: FolderRef | None, page: PageRef | None, same_shape: bool
) -> dict[str, tuple[Any, ...]] | None:
    """The previous rows to compare a page's files with; None means use the flat (format 1/2) list."""
    if old is None:
        return None
    if not same_shape:
        return previous.whole(old)
    if page is None:
        return {}
    return previous.page(old, page)


def _stat_rows(group: list[str], fd: int) -> list[StatRow]:
    """lstat each name under the folder fd; keep regular files (a name may be gone or replaced by now)."""
    lstat = os.lstat
    try:
        results = [(name, lstat(name, dir_fd=fd)) for name in group]
    except FileNotFoundError:
        results = []
        for name in group:
            try:
                results.append((name, lstat(name, dir_fd=fd)))
            except FileNotFoundError:
                continue
    isreg = stat.S_ISREG
    return [
        (name, st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino)
        for name, st in results
        if isreg(st.st_mode)
    ]


def _new_page(
    current: str,
    rel: str,
    bucket: int,
    rows: list[StatRow],
    prior: dict[str, tuple[Any, ...]] | None,
    flat: dict[str, FileEntry],
    store: ObjectStore,
) -> tuple[PageRef, list[str]] | None:
    """Build and store a page: unchanged files keep their hash, new or changed ones are read again."""
    final: list[tuple[Any, ...]] = []
    trusted = True
    for row in rows:
        name = row[0]
        old: tuple[Any, ...] | None = prior.get(name) if prior is not None else flat.get(f"{rel}/{name}")
        if old is not None and old[2:] == row[1:]:
            entry: tuple[Any, ...] = (name, old[1], *row[1:])
        else:
            try:
                added = store.add_file(f"{current}/{name}", f"{rel}/{name}")
            except FileNotFoundError:
                continue  # deleted since it was listed; if a row needs it, reported as missing
            entry = (name, *added[1:])
            trusted = trusted and added.ctime_ns is not None
        final.append(entry)
    if not final:
        return None
    digest = stat_digest([(r[0], r[2], r[3], r[4], r[5]) for r in final]) if trusted else None
    sha, size = store.add_list(page_bytes(rel, final))
    page = PageRef(bucket, sha, size, len(final), sum(r[2] for r in final), digest)
    return page, [r[0] for r in final]
