"""A backup's manifest: frozen values, and JSON that carries its own checksum.

Format 3 lists the walked folders' files in folder lists: JSON objects in the content-addressed store
(packed, like restic's tree blobs; see guard.backup.repo.packs). A big folder's list is split into pages by a
hash of the file name, so a page whose files are all unchanged keeps its object. The manifest names
every page by SHA-256 (and its checksum covers those names), so every file is still listed in JSON
and verified; referenced files outside the walk are listed in the manifest itself.

Format 4 names the database dump's content-defined chunks in the store as well (see
guard.backup.repo.dumps), and its file, manifest.json, is that JSON as one zstd frame; a manifest
file of an earlier format is plain JSON, and both are read.

Format 5 cuts a folder's files into pages by name order instead (guard.backup.walk.paging: runs of
consecutive names, ~128 files each, ended where a name's CRC says so, so a page still changes only
when one of its own files does), names each page's first file, and writes pages in format
guard-files/2 (guard.backup.repo.listing), which is 4x smaller. Such a folder's page count is 0
("cut by name"); the folders of a format-3 or -4 manifest keep their hash pages and are read as
before.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any, NamedTuple

import zstandard

from guard.backup.repo import listing
from guard.backup.source import BACKUP, Source
from guard.backup.walk import statpage
from guard.errors import GuardError
from guard.plural import plural

FORMAT = "guard-backup/5"  # as format 4, and folders cut into pages by name order (listing.FORMAT)
CHUNKS_FORMAT = "guard-backup/4"  # still read: the dump as content-defined chunks in the store
LISTS_FORMAT = "guard-backup/3"  # still read: files in folder lists, the dump a file next to the manifest
FLAT_FORMAT = "guard-backup/2"  # still read: every file inline, checksum over the body's exact bytes
CANONICAL_FORMAT = "guard-backup/1"  # still read: checksum over the re-serialized, key-sorted body
LIST_FORMAT = "guard-files/1"
LIST_FIELDS = ("name", "sha256", "size", "mtime_ns", "ctime_ns", "inode")
HEAD = b'{"checksum":"sha256:'
ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"
MAX_BYTES = 1 << 30  # what a manifest file may inflate to: a hostile frame cannot take all memory
HEAD_LEN = len(HEAD) + 64 + 2  # the hex digest, then '",'
FILE_FIELDS = ("path", "sha256", "size", "mtime_ns", "ctime_ns", "inode")


class ManifestError(GuardError):
    """A manifest that cannot be read, or whose checksum does not match its content."""


class FileEntry(NamedTuple):
    """One uploads file in a backup; ctime_ns is None when it was too fresh to trust as a cache key.

    A tuple in FILE_FIELDS order, so the manifest's JSON array for a file is the entry itself.
    """

    path: str
    sha256: str
    size: int
    mtime_ns: int | None = None
    ctime_ns: int | None = None
    inode: int | None = None

    def row(self) -> list[Any]:
        return list(self)

    @classmethod
    def from_row(cls, row: list[Any]) -> FileEntry:
        return cls._make(row)


def _file_entries(rows: list[list[Any]]) -> list[FileEntry]:
    """Build entries from checksum-verified rows; a row of the wrong length is a bad value."""
    return list(map(FileEntry._make, rows))


class PageRef(NamedTuple):
    """One page of a folder's file list: a JSON object in the store, and what it holds.

    stat_digest is the SHA-256 of the page's (name, size, mtime_ns, ctime_ns, inode) rows in name order
    (see stat_digest()); None when a file in it was too fresh to trust, so the page is never reused
    without comparing its files one by one. first is the name of its first file when the folder is
    cut by name (format 5: bucket is then the page's place in the folder), else None (bucket: the
    name hash bucket).
    """

    bucket: int
    sha256: str
    size: int
    files: int
    bytes: int
    stat_digest: str | None
    first: str | None = None


BY_NAME = 0  # a FolderRef's page count when its pages are cut by name order (format 5)


class FolderRef(NamedTuple):
    """A walked folder (root-relative, no trailing slash): its files in `buckets` pages by name hash,
    or, when buckets is BY_NAME, in pages of consecutive names in name order."""

    path: str
    buckets: int
    pages: tuple[PageRef, ...]


def stat_digest(rows: list[tuple[str, int, int, int, int]]) -> str:
    """Hash a page's stat listing: (name, size, mtime_ns, ctime_ns, inode) per file, in name order.

    The walk computes the same digest from packed stat bytes (guard.backup.walk.statpage).
    """
    return statpage.rows_digest(rows)


def stat_digest_matches(rows: list[tuple[str, int, int, int, int]], stated: str) -> bool:
    """Whether rows hash to a page's recorded digest, in whichever form it was recorded."""
    if stated.startswith("m2:"):  # earlier versions, and a page with a time beyond 64-bit nanoseconds
        return stated == statpage.marshal_digest(rows)
    return stated == stat_digest(rows)


def page_bytes(folder: str, rows: list[tuple[Any, ...]]) -> bytes:
    """Serialize one page: ASCII JSON, rows in LIST_FIELDS order and in name order."""
    body = {"format": LIST_FORMAT, "folder": folder, "file_fields": list(LIST_FIELDS), "files": rows}
    return json.dumps(body, ensure_ascii=True, separators=(",", ":")).encode("ascii")


def page_rows(data: bytes, folder: str, page: PageRef, source: str) -> list[list[Any]]:
    """Read a page already checked against its SHA-256; check it is the page the manifest names."""
    try:
        if page.first is not None:
            cut = listing.page_rows(data)
            if len(cut) != page.files or not cut or cut[0][0] != page.first:
                raise ValueError("not this folder list")
            return cut
        body = json.loads(data)
        rows: list[list[Any]] = body["files"]
        if body["format"] != LIST_FORMAT or body["folder"] != folder or len(rows) != page.files:
            raise ValueError("not this folder list")
        if any(len(r) != len(LIST_FIELDS) for r in rows):
            raise ValueError("bad row")
    except (ValueError, KeyError, TypeError, RecursionError):
        raise ManifestError(f"{source}: folder list {page.sha256} ({folder}) is not the list named") from None
    return rows


UNSAFE, ESCAPES, ABSENT = "unsafe", "escapes", "absent"


@dataclass(frozen=True, slots=True)
class MissingRef:
    """A path a row in the snapshot refers to that is not in the backup, why, and of which kind.

    kind: `unsafe` (never opened: absolute, `..`, NUL, backslash), `escapes` (resolves outside the
    uploads root) or `absent` (no regular file at backup time).
    """

    subject: str
    path: str
    reason: str
    kind: str = ABSENT

    def to_json(self) -> dict[str, str]:
        return {"subject": self.subject, "path": self.path, "reason": self.reason, "kind": self.kind}


class Chunk(NamedTuple):
    """One content-defined piece of the dump: an object in the store."""

    sha256: str
    size: int


@dataclass(frozen=True)
class DumpInfo:
    """The pg_dump archive: its chunks in the store, in order (format 4), or, when there are none,
    a file of that name next to the manifest (formats 1-3)."""

    name: str
    size: int
    sha256: str
    chunks: tuple[Chunk, ...] = ()


@dataclass(frozen=True)
class Manifest:
    """Everything one backup holds, taken at one moment (one database snapshot)."""

    id: str
    started_at: str
    finished_at: str
    versions: dict[str, str]
    database: dict[str, str]
    dump: DumpInfo
    inline_files: tuple[FileEntry, ...]  # format 3: referenced files outside the walk; before: all
    missing: tuple[MissingRef, ...]
    migrations: list[dict[str, Any]] | None
    schema_sha256: str
    app_commit: str | None
    scope: dict[str, Any]
    counts: dict[str, int] = field(default_factory=dict)
    folders: tuple[FolderRef, ...] = ()
    source: Source | None = None  # None: an older manifest whose database.target names no database
    purpose: str = BACKUP  # or SAFETY: a restore target's content, backed up before it was replaced
    read_object: Callable[[str, int], bytes] | None = field(default=None, compare=False, repr=False)

    @cached_property
    def files(self) -> tuple[FileEntry, ...]:
        """Every file in the backup; reads (and hash-checks) the folder lists on first use."""
        entries = list(self.inline_files)
        for folder in self.folders:
            for page in folder.pages:
                entries.extend(self.page_files(folder, page))
        return tuple(entries)

    def page_files(self, folder: FolderRef, page: PageRef) -> list[FileEntry]:
        """Read one folder list page; raise ManifestError when it is missing or not what is named."""
        return [FileEntry(f"{folder.path}/{r[0]}", *r[1:]) for r in self.page_list(folder, page)]

    def page_list(self, folder: FolderRef, page: PageRef) -> list[list[Any]]:
        if self.read_object is None:
            raise ManifestError(f"backup {self.id}: no object store to read its folder lists from")
        return page_rows(self.read_object(page.sha256, page.size), folder.path, page, f"backup {self.id}")

    @property
    def consistent(self) -> bool:
        """Every referenced path is in the backup (nothing had to be listed as missing)."""
        return not self.missing

    def body(self) -> dict[str, Any]:
        return {
            "format": FORMAT,
            "id": self.id,
            "started_at": self.started_at,
            "finished_at": self.finished_at,
            "versions": self.versions,
            "database": self.database,
            "source": None if self.source is None else self.source.to_json(),
            "purpose": self.purpose,
            "dump": {
                "name": self.dump.name,
                "size": self.dump.size,
                "sha256": self.dump.sha256,
                "chunks": self.dump.chunks,  # [sha256, size] each
            },
            "counts": self.counts,
            "migrations": self.migrations,
            "schema_sha256": self.schema_sha256,
            "app_commit": self.app_commit,
            "scope": self.scope,
            "consistency": {
                "ok": self.consistent,
                "missing": [m.to_json() for m in self.missing],
            },
            "file_fields": list(FILE_FIELDS),
            "files": self.inline_files,  # FileEntry tuples encode as JSON arrays
            "folders": self.folders,  # FolderRef/PageRef tuples too
        }

    def to_bytes(self) -> bytes:
        """Serialize once; the checksum is the SHA-256 of the body's bytes, written first.

        ASCII, so any file name round-trips. Layout: `{"checksum":"sha256:<hex>",` followed by the
        rest of the body, whose own bytes (with its leading `{`) are what the hex digest covers.
        """
        body = json.dumps(self.body(), ensure_ascii=True, separators=(",", ":")).encode("ascii")
        digest = hashlib.sha256(body).hexdigest().encode("ascii")
        return HEAD + digest + b'",' + body[1:]

    def to_file(self) -> bytes:
        """The bytes of manifest.json: to_bytes() as one zstd frame (format 4's folder table of a
        million-file folder is megabytes of JSON; its hashes are most of it, and they shrink 2.7x)."""
        return zstandard.ZstdCompressor(level=3, write_content_size=True).compress(self.to_bytes())


def inflated(data: bytes, source: str) -> bytes:
    """A manifest file's JSON: a zstd frame (format 4) inflated, at most MAX_BYTES; JSON as it is."""
    if data[:4] != ZSTD_MAGIC:
        return data
    try:
        pieces, total = [], 0
        with zstandard.ZstdDecompressor().stream_reader(data) as reader:
            while piece := reader.read(1 << 20):
                pieces.append(piece)
                total += len(piece)
                if total > MAX_BYTES:
                    raise ManifestError(f"{source}: manifest is larger than {plural(MAX_BYTES, 'byte')}")
    except zstandard.ZstdError:
        raise ManifestError(f"{source}: not a guard backup manifest") from None
    return b"".join(pieces)


def checksum(body: dict[str, Any]) -> str:
    """Return the SHA-256 of the canonical JSON of a body (sorted keys, no spaces, ASCII): format 1."""
    canonical = json.dumps(body, ensure_ascii=True, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode("ascii")).hexdigest()


def parse(data: bytes, source: str, read_object: Callable[[str, int], bytes] | None = None) -> Manifest:
    """Read a manifest and check its own checksum; raise ManifestError naming the source.

    read_object(sha256, size) returns a folder list's verified bytes (or raises ManifestError).
    """
    data = inflated(data, source)
    try:
        document = json.loads(data)
        stated = document.pop("checksum")
        fmt = document["format"]
    except (ValueError, KeyError, AttributeError, TypeError, RecursionError):  # nested too deep to decode
        raise ManifestError(f"{source}: not a guard backup manifest") from None
    if not _checksum_matches(data, document, stated, fmt):
        raise ManifestError(f"{source}: manifest checksum does not match its content")
    try:
        return _from_body(document, read_object)
    except (KeyError, TypeError, ValueError, AttributeError, OverflowError):
        raise ManifestError(f"{source}: manifest is missing a field or has a bad value") from None


def _checksum_matches(data: bytes, document: dict[str, Any], stated: Any, fmt: Any) -> bool:
    if fmt == CANONICAL_FORMAT:
        return bool(stated == "sha256:" + checksum(document))
    if not data.startswith(HEAD) or data[HEAD_LEN - 2 : HEAD_LEN] != b'",':
        return False
    digest = hashlib.sha256(b"{" + data[HEAD_LEN:]).hexdigest()
    return bool(stated == "sha256:" + digest and data[len(HEAD) : HEAD_LEN - 2] == digest.encode())


def _from_body(body: dict[str, Any], read_object: Callable[[str, int], bytes] | None) -> Manifest:
    if body["format"] not in (FORMAT, CHUNKS_FORMAT, LISTS_FORMAT, FLAT_FORMAT, CANONICAL_FORMAT):
        raise ValueError(body["format"])
    dump = body["dump"]
    chunked = body["format"] in (FORMAT, CHUNKS_FORMAT)
    chunks = tuple(Chunk(str(c), int(n)) for c, n in dump.get("chunks", ()) if chunked)
    if sum(c.size for c in chunks) != (int(dump["size"]) if chunks else 0):
        raise ValueError("the dump's chunks do not add up to its size")
    return Manifest(
        id=str(body["id"]),
        started_at=str(body["started_at"]),
        finished_at=str(body["finished_at"]),
        versions=dict(body["versions"]),
        database=dict(body["database"]),
        dump=DumpInfo(str(dump["name"]), int(dump["size"]), str(dump["sha256"]), chunks),
        inline_files=tuple(_file_entries(body["files"])),
        missing=tuple(
            MissingRef(m["subject"], m["path"], m["reason"], m["kind"])
            for m in body["consistency"]["missing"]
        ),
        migrations=body["migrations"],
        schema_sha256=str(body["schema_sha256"]),
        app_commit=body["app_commit"],
        scope=dict(body["scope"]),
        counts={k: int(v) for k, v in body["counts"].items()},
        folders=tuple(_folder(f) for f in body.get("folders", ())),
        source=_source(body),
        purpose=str(body.get("purpose", BACKUP)),
        read_object=read_object,
    )


def _source(body: dict[str, Any]) -> Source | None:
    """Read the recorded source; before sources were recorded, the database named in its target."""
    if "source" in body:
        return None if body["source"] is None else Source.from_json(body["source"])
    return Source.from_target(str(body["database"].get("target", "")))


def _folder(row: list[Any]) -> FolderRef:
    path, buckets, pages = row
    refs = tuple(_page(p) for p in pages)
    if not isinstance(path, str):
        raise ValueError("bad folder entry")
    if int(buckets) == BY_NAME:  # format 5: each page names its first file, in name order
        firsts = [p.first for p in refs]
        if any(not isinstance(f, str) for f in firsts) or any(p.bucket < 0 for p in refs):
            raise ValueError("bad folder entry")
        if any(not a < b for a, b in zip(firsts, firsts[1:], strict=False)):  # type: ignore[operator]
            raise ValueError("folder pages out of name order")
    elif int(buckets) < 1 or any(not 0 <= p.bucket < int(buckets) or p.first is not None for p in refs):
        raise ValueError("bad folder entry")
    return FolderRef(path, int(buckets), refs)


def _page(row: list[Any]) -> PageRef:
    """A page table row: six values (formats 3 and 4), or seven with the first file's name (5)."""
    b, s, z, n, y, d, *rest = row
    if len(rest) > 1 or (rest and rest[0] is not None and not isinstance(rest[0], str)):
        raise ValueError("bad page entry")
    if d is not None and not isinstance(d, str):
        raise ValueError("bad page entry")
    return PageRef(int(b), str(s), int(z), int(n), int(y), d, rest[0] if rest else None)
