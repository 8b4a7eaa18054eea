"""Pack files: many small objects (uploads up to SMALL bytes, and folder lists) in one file each.

A backup that changes 1% of a million small uploads adds ~19,000 objects; as loose files that is
~19,000 creates and renames, the most expensive thing a file system does (on ext4 without a
journal each create also scans past recently freed inodes). Packed, it is a few appends. As in
restic, objects stay content-addressed: a pack is only where their bytes live.

packs/<name>.pack holds the objects' bytes back to back; packs/<name>.idx says which SHA-256 is
where: IDX_MAGIC, then (sha256, offset, size) entries, then the SHA-256 of everything before it.
An object may be stored compressed (folder lists are JSON and shrink 3-8x, the database dump's
chunks 6-7x; uploads, already compressed pictures, are stored as they are): a pack holding one has
an index in format 2, IDX2_MAGIC then (sha256, offset, stored bytes, size) entries, and an object is
compressed exactly when its stored bytes differ from its size. Repository format 3 compresses with
zstd (a frame starts with ZSTD_MAGIC); format 2 wrote zlib streams (which never start so), still
read. A pack with nothing compressed still gets a format-1 index, and format-1 indexes (every
earlier repository) are read as they are. The SHA-256 is always of the object itself, checked after
decompression. A pack is built under tmp/, each object re-read and re-hashed once it is on disk,
then renamed in before its index, so an index always names a complete pack. A .pack without its
.idx is what a crash between the two renames leaves; it names no object and is removed under the
repository lock.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import secrets
import struct
import threading
import zlib
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import zstandard

from guard.backup.faults import crash_point
from guard.backup.repo.permissions import FOLDER, FROZEN
from guard.errors import GuardError
from guard.fs.fdio import write_all

IDX_MAGIC = b"guard-pack-index/1\n"
IDX2_MAGIC = b"guard-pack-index/2\n"
_ENTRY = struct.Struct("<32sQQ")  # sha256 (raw), offset, size
_ENTRY2 = struct.Struct("<32sQQQ")  # sha256 (raw), offset, stored bytes, size
LEVEL = 3  # zstd's default; folder lists and dump chunks name their own (guard.backup.repo.objects)
ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"
Entry = tuple[str, int, int, int]  # sha256 hex, offset, stored bytes, size (stored == size: plain)
TARGET = 64 << 20  # a pack is sealed once it holds this many bytes


class PackError(GuardError):
    """An object in a pack did not hash to its name after it was written (disk or memory fault)."""


@dataclass(frozen=True, slots=True)
class Where:
    """An object of size bytes, stored as `stored` bytes (zlib when they differ) at offset in file."""

    file: str
    offset: int
    size: int
    stored: int


def index_bytes(entries: Iterable[Entry]) -> bytes:
    """Serialize (sha256 hex, offset, stored, size) entries, with the checksum that ends an index:
    format 1 when nothing is compressed (readable by every version), else format 2."""
    rows = list(entries)
    if all(stored == size for _, _, stored, size in rows):
        body = IDX_MAGIC + b"".join(_ENTRY.pack(bytes.fromhex(s), o, n) for s, o, n, _ in rows)
    else:
        body = IDX2_MAGIC + b"".join(_ENTRY2.pack(bytes.fromhex(s), o, t, n) for s, o, t, n in rows)
    return body + hashlib.sha256(body).digest()


def read_index(path: Path) -> list[Entry] | None:
    """Return an index's (sha256 hex, offset, stored, size) entries, or None when its checksum shows
    damage (or it is in no format this version knows).

    A missing index raises FileNotFoundError, and any other error reading it (EIO, EACCES) is raised
    too: only a checksum says an index is damaged, never a failure to read it.
    """
    data = path.read_bytes()
    body, stated = data[:-32], data[-32:]
    if hashlib.sha256(body).digest() != stated:
        return None
    if body.startswith(IDX_MAGIC) and not (len(body) - len(IDX_MAGIC)) % _ENTRY.size:
        return [(s.hex(), o, n, n) for s, o, n in _ENTRY.iter_unpack(body[len(IDX_MAGIC) :])]
    if body.startswith(IDX2_MAGIC) and not (len(body) - len(IDX2_MAGIC)) % _ENTRY2.size:
        return [(s.hex(), o, t, n) for s, o, t, n in _ENTRY2.iter_unpack(body[len(IDX2_MAGIC) :])]
    return None


def unpack(blob: bytes, stored: int, size: int) -> bytes | None:
    """An object's bytes from what its pack holds; None when a compressed one does not inflate to
    its size (damage: the caller reports it as bytes that do not match their hash)."""
    if stored == size:
        return blob
    try:
        if blob[:4] == ZSTD_MAGIC:
            data = _CODECS.decompressor.decompress(blob, max_output_size=size)
        else:
            data = zlib.decompress(blob)
    except (zlib.error, zstandard.ZstdError):
        return None
    return data if len(data) == size else None


def compressed(data: bytes, level: int = LEVEL) -> bytes:
    """An object's bytes as a zstd frame (which records its size, so it inflates in one call)."""
    return _CODECS.at(level).compress(data)


class _Codec(threading.local):
    """zstd contexts per thread: one may not be used by two threads at once, and making one per
    object costs more than compressing a folder list."""

    def __init__(self) -> None:
        self.compressors: dict[int, zstandard.ZstdCompressor] = {}
        self.decompressor = zstandard.ZstdDecompressor()

    def at(self, level: int) -> zstandard.ZstdCompressor:
        if level not in self.compressors:
            self.compressors[level] = zstandard.ZstdCompressor(level=level)
        return self.compressors[level]


_CODECS = _Codec()


def intact(data: bytes, entry: Entry) -> bool:
    """Whether the bytes an index entry names, in a pack's data, hash to its SHA-256."""
    sha, offset, stored, size = entry
    if len(data) < offset + stored:
        return False
    blob = unpack(data[offset : offset + stored], stored, size)
    return blob is not None and hashlib.sha256(blob).hexdigest() == sha


def pack_names(packs: Path) -> list[str]:
    """The names of the indexed packs (each has its .idx), in a stable order."""
    try:
        return sorted(p.name[:-4] for p in packs.iterdir() if p.name.endswith(".idx"))
    except FileNotFoundError:
        return []


def remove_unindexed(packs: Path) -> int:
    """Remove .pack files without an .idx (a crash between the two renames); call under the lock."""
    removed = 0
    with contextlib.suppress(FileNotFoundError):
        names = {p.name for p in packs.iterdir()}
        for name in names:
            if name.endswith(".pack") and f"{name[:-5]}.idx" not in names:
                (packs / name).unlink(missing_ok=True)
                removed += 1
    return removed


def located(packs: Path, name: str) -> dict[str, Where] | None:
    """Where one pack's objects are: those its index names within the pack's size; None when its
    index fails its checksum. FileNotFoundError when the index or the pack is gone."""
    file = str(packs / f"{name}.pack")
    entries = read_index(packs / f"{name}.idx")
    size = os.stat(file).st_size
    if entries is None:
        return None
    return {s: Where(file, o, n, t) for s, o, t, n in entries if o + t <= size}


@dataclass
class Survey:
    """Every packed object by SHA-256, and the packs whose index cannot be taken at its word."""

    found: dict[str, Where] = field(default_factory=dict)
    damaged: list[str] = field(default_factory=list)  # index fails its checksum: names nothing
    orphaned: list[str] = field(default_factory=list)  # index whose pack is gone
    short: list[str] = field(default_factory=list)  # pack shorter than its index says

    def notes(self) -> list[str]:
        """One sentence per pack that lost objects: damage findings, never an empty index."""
        return (
            [
                f"pack {n}: its index is damaged (fails its checksum): its objects are lost"
                for n in self.damaged
            ]
            + [
                f"pack {n}: its pack file is gone: the objects its index names are lost"
                for n in self.orphaned
            ]
            + [f"pack {n}: shorter than its index says: objects past its end are lost" for n in self.short]
        )


def survey(packs: Path) -> Survey:
    """Read every pack's index: the objects each names within its pack, and which packs are damaged."""
    found = Survey()
    for name in pack_names(packs):
        try:
            entries = read_index(packs / f"{name}.idx")
        except FileNotFoundError:
            continue  # removed meanwhile (a prune): not damage
        file = str(packs / f"{name}.pack")
        try:
            size = os.stat(file).st_size
        except FileNotFoundError:
            found.orphaned.append(name)
            continue
        if entries is None:
            found.damaged.append(name)
            continue
        whole = {s: Where(file, o, n, t) for s, o, t, n in entries if o + t <= size}
        if len(whole) < len({e[0] for e in entries}):
            found.short.append(name)
        found.found.update(whole)
    return found


def load(packs: Path) -> dict[str, Where]:
    """Every packed object by SHA-256, from the indexes whose pack is whole (others name nothing)."""
    return survey(packs).found


def read(where: Where) -> bytes:
    """An object's bytes (not checked against its hash: the caller does that; a compressed object
    that does not inflate comes back as its stored bytes, which do not match it)."""
    fd = os.open(where.file, os.O_RDONLY)
    try:
        blob = os.pread(fd, where.stored, where.offset)
    finally:
        os.close(fd)
    data = unpack(blob, where.stored, where.size)
    return blob if data is None else data


def remove(packs: Path, name: str) -> None:
    """Remove a pack: its index first, so no index ever names a missing pack."""
    (packs / f"{name}.idx").unlink(missing_ok=True)
    (packs / f"{name}.pack").unlink(missing_ok=True)


def drop_bad(packs: Path, tmp: Path, name: str) -> int:
    """Re-hash every object in a pack; unindex the ones that do not match their names. Return how
    many objects the index no longer names."""
    return len(unindex_bad(packs, tmp, name))


def unindex_bad(packs: Path, tmp: Path, name: str) -> list[str]:
    """Re-hash every object in a pack; unindex the ones that do not match their names and return
    their SHA-256s (an index that fails its checksum names nothing: [] after removing it).

    An index whose checksum fails cannot say what is where: it is removed (the pack, then
    unindexed, goes at the next clean-up). An index whose pack is gone names nothing that exists:
    removed too. Any other error reading either is raised: it is not evidence of damage.
    """
    index = packs / f"{name}.idx"
    try:
        entries = read_index(index)
    except FileNotFoundError:
        return []
    if entries is None:
        index.unlink(missing_ok=True)
        return []
    try:
        data = (packs / f"{name}.pack").read_bytes()
    except FileNotFoundError:
        index.unlink(missing_ok=True)
        return [e[0] for e in entries]
    verdicts = [(e, intact(data, e)) for e in entries]
    good = [e for e, ok in verdicts if ok]
    bad = [e[0] for e, ok in verdicts if not ok]
    if not bad:
        return []
    if not good:
        remove(packs, name)
        return bad
    temp = tmp / f"{name}.idx.new"
    temp.unlink(missing_ok=True)
    fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, FROZEN)
    try:
        write_all(fd, index_bytes(good))
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(temp, index)  # the bad objects' bytes stay as dead space until prune rewrites the pack
    return bad


@dataclass
class PackWriter:
    """Append objects to a pack under tmp/; seal() checks each on disk and renames it into packs/."""

    packs: Path
    tmp: Path
    sync: bool = False  # fsync the pack and its index before they are named (prune's repack)
    _name: str = ""
    _fd: int = -1
    _size: int = 0
    _entries: list[Entry] = field(default_factory=list)

    @property
    def pending(self) -> str:
        """The temp file the open pack's objects are in (read from there until sealed)."""
        return f"{self.tmp}/pack-{self._name}"

    def append(self, sha256: str, data: bytes, *, compress: bool = False) -> Where:
        """Append an object; compress: store it zstd-compressed when that is smaller."""
        if compress:
            packed = compressed(data)
            if len(packed) < len(data):
                return self.append_stored(sha256, packed, len(data))
        return self.append_stored(sha256, data, len(data))

    def append_stored(self, sha256: str, blob: bytes, size: int) -> Where:
        """Append an object as it is stored (compressed when len(blob) != size), e.g. from a pack."""
        if self._fd < 0:
            self._name = secrets.token_hex(16)
            self._fd = os.open(self.pending, os.O_WRONLY | os.O_CREAT | os.O_EXCL, FROZEN)
            self._size = 0
            self._entries = []
        offset = self._size
        write_all(self._fd, blob)
        self._size += len(blob)
        self._entries.append((sha256, offset, len(blob), size))
        return Where(self.pending, offset, size, len(blob))

    @property
    def full(self) -> bool:
        return self._size >= TARGET

    def abandon(self) -> None:
        """Drop the open pack (a failed backup or seal): nothing in it was ever named."""
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1
        if self._name:
            for temp in (self.pending, f"{self.pending}.idx"):
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(temp)
            self._name = ""

    def seal(self) -> tuple[str, dict[str, Where]] | None:
        """Verify and publish the open pack; return its name and where its objects now are."""
        if self._fd < 0:
            return None
        try:
            if self.sync:
                os.fsync(self._fd)
        finally:
            os.close(self._fd)
            self._fd = -1
        temp, name, entries = self.pending, self._name, self._entries
        with open(temp, "rb") as handle:
            data = handle.read()
        for entry in entries:
            if not intact(data, entry):
                os.unlink(temp)
                raise PackError(f"a packed object did not hash to {entry[0]} (disk or memory fault)")
        index_temp = f"{temp}.idx"
        fd = os.open(index_temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, FROZEN)
        try:
            write_all(fd, index_bytes(entries))
            if self.sync:
                os.fsync(fd)
        finally:
            os.close(fd)
        self.packs.mkdir(FOLDER, exist_ok=True)
        final = str(self.packs / f"{name}.pack")
        os.rename(temp, final)
        crash_point("pack")
        os.rename(index_temp, self.packs / f"{name}.idx")
        self._name = ""
        return name, {sha: Where(final, offset, size, stored) for sha, offset, stored, size in entries}
