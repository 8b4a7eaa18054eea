"""A restore's reads, pack by pack (as restic's internal/restorer does): each pack read once.

A backup of a million small uploads holds them in a few dozen packs. Reading each file's object on
its own (open the pack, pread, close) costs three system calls and a seek per file; instead the
plan groups the objects the restore needs by the pack that holds them, and reads each pack's
needed span in one pread (a span is split where a gap of more than GAP bytes of unneeded objects
lies, so no byte is read twice and little is read for nothing). Each object is checked against its
SHA-256 once, in memory, before any file is written from it; a reader thread fetches the next packs
while the caller writes the files of the last one.
"""

from __future__ import annotations

import hashlib
import os
import queue
import threading
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import cast

from guard.backup.repo import packs
from guard.backup.repo.manifest import FileEntry
from guard.backup.repo.objects import ObjectStore

GAP = 1 << 20  # unneeded bytes between two needed objects above which a pack is read in two requests
AHEAD = 4  # spans read ahead of the writer (each at most a pack: TARGET bytes plus one object)


@dataclass(frozen=True, slots=True)
class Span:
    """One read: bytes start..end of a pack file, holding objects (sha256, offset, stored, size)."""

    file: str
    start: int
    end: int
    objects: tuple[tuple[str, int, int, int], ...]


@dataclass
class Plan:
    """What a restore reads: packed objects span by span, loose objects, and the files of each."""

    spans: list[Span] = field(default_factory=list)
    loose: list[str] = field(default_factory=list)  # not in a pack: a big upload's own file (or absent)
    users: dict[str, list[FileEntry]] = field(default_factory=dict)  # object -> the files it is


def make_plan(store: ObjectStore, entries: Iterable[FileEntry]) -> Plan:
    """Group the entries' objects by pack, each pack's in offset order, in spans of at most GAP gaps."""
    plan = Plan()
    for entry in entries:
        users = plan.users.get(entry.sha256)
        if users is None:
            plan.users[entry.sha256] = [entry]
        else:
            users.append(entry)
    plan.spans, plan.loose = spans_of(store, plan.users)
    return plan


def spans_of(store: ObjectStore, objects: Iterable[str]) -> tuple[list[Span], list[str]]:
    """The spans that read these objects, pack by pack (each pack once, by offset), and the objects
    that are in no pack (loose, or absent)."""
    index = store.index
    by_pack: dict[str, list[tuple[str, int, int, int]]] = {}
    loose: list[str] = []
    for sha in objects:
        where = index.get(sha)
        if where is None:
            loose.append(sha)
        else:
            by_pack.setdefault(where.file, []).append((sha, where.offset, where.stored, where.size))
    spans: list[Span] = []
    for file in sorted(by_pack):
        ordered = sorted(by_pack[file], key=lambda o: o[1])
        group = [ordered[0]]
        end = ordered[0][1] + ordered[0][2]
        for obj in ordered[1:]:
            if obj[1] - end > GAP:
                spans.append(Span(file, group[0][1], end, tuple(group)))
                group = []
            group.append(obj)
            end = max(end, obj[1] + obj[2])
        spans.append(Span(file, group[0][1], end, tuple(group)))
    return spans, loose


def read_span(span: Span) -> list[tuple[str, bytes | None]]:
    """Read a span in one request; each object's bytes, or None when they do not hash to its name
    (or the pack ended before them). FileNotFoundError when the pack is gone."""
    fd = os.open(span.file, os.O_RDONLY | os.O_CLOEXEC)
    try:
        data = _pread_all(fd, span.end - span.start, span.start)
    finally:
        os.close(fd)
    out: list[tuple[str, bytes | None]] = []
    for sha, offset, stored, size in span.objects:
        chunk = data[offset - span.start : offset - span.start + stored]
        blob = packs.unpack(chunk, stored, size) if len(chunk) == stored else None
        ok = blob is not None and hashlib.sha256(blob).hexdigest() == sha
        out.append((sha, blob if ok else None))
    return out


def _pread_all(fd: int, size: int, offset: int) -> bytes:
    """Read size bytes at offset (fewer only at the end of the file)."""
    parts = []
    while size > 0:
        chunk = os.pread(fd, size, offset)
        if not chunk:
            break
        parts.append(chunk)
        size -= len(chunk)
        offset += len(chunk)
    return b"".join(parts)


_DONE = object()


def fetch(spans: list[Span]) -> Iterator[list[tuple[str, bytes | None]]]:
    """Yield each span's objects (as read_span) in order, read by a thread up to AHEAD spans ahead.

    An error reading is raised here, in the caller's thread; when the caller stops early (an error
    writing), the reader stops too.
    """
    if not spans:
        return
    ready: queue.Queue[object] = queue.Queue(AHEAD)
    stop = threading.Event()

    def hand(item: object) -> bool:
        while not stop.is_set():
            try:
                ready.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def reader() -> None:
        try:
            for span in spans:
                if not hand(read_span(span)):
                    return
        except BaseException as exc:  # handed over: raised in the caller's thread
            hand(exc)
            return
        hand(_DONE)

    thread = threading.Thread(target=reader, name="restore-reader", daemon=True)
    thread.start()
    try:
        while True:
            item = ready.get()
            if item is _DONE:
                return
            if isinstance(item, BaseException):
                raise item
            yield cast(list[tuple[str, bytes | None]], item)
    finally:
        stop.set()
        thread.join()
