"""A backup's manifest: frozen values, and JSON that carries its own checksum."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from guard.errors import GuardError

FORMAT = "guard-backup/2"  # checksum over the body's exact bytes
CANONICAL_FORMAT = "guard-backup/1"  # still read: checksum over the re-serialized, key-sorted body
HEAD = b'{"checksum":"sha256:'
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


@dataclass(frozen=True)
class DumpInfo:
    """The pg_dump archive stored next to the manifest."""

    name: str
    size: int
    sha256: str


@dataclass(frozen=True)
class Manifest:
    """Everything one backup holds, taken at one moment (one database snapshot)."""

    id: str
    started_at: str
    finished_at: str
    versions: dict[str, str]
    database: dict[str, str]
    dump: DumpInfo
    files: tuple[FileEntry, ...]
    missing: tuple[MissingRef, ...]
    migrations: list[dict[str, Any]] | None
    schema_sha256: str
    app_commit: str | None
    scope: dict[str, Any]
    counts: dict[str, int] = field(default_factory=dict)

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
            "dump": {"name": self.dump.name, "size": self.dump.size, "sha256": self.dump.sha256},
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
            "files": self.files,  # FileEntry tuples encode as JSON arrays
        }

    def to_bytes(self) -> bytes:
        """Serialize once; the checksum is the SHA-256 of the body's bytes, written first.

        ASCII, so any file name round-trips. Layout: `{"checksum":"sha256:<hex>",` followed by the
        rest of the body, whose own bytes (with its leading `{`) are what the hex digest covers.
        """
        body = json.dumps(self.body(), ensure_ascii=True, separators=(",", ":")).encode("ascii")
        digest = hashlib.sha256(body).hexdigest().encode("ascii")
        return HEAD + digest + b'",' + body[1:]


def checksum(body: dict[str, Any]) -> str:
    """Return the SHA-256 of the canonical JSON of a body (sorted keys, no spaces, ASCII): format 1."""
    canonical = json.dumps(body, ensure_ascii=True, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode("ascii")).hexdigest()


def parse(data: bytes, source: str) -> Manifest:
    """Read a manifest and check its own checksum; raise ManifestError naming the source."""
    try:
        document = json.loads(data)
        stated = document.pop("checksum")
        fmt = document["format"]
    except (ValueError, KeyError, AttributeError, TypeError):
        raise ManifestError(f"{source}: not a guard backup manifest") from None
    if not _checksum_matches(data, document, stated, fmt):
        raise ManifestError(f"{source}: manifest checksum does not match its content")
    try:
        return _from_body(document)
    except (KeyError, TypeError, ValueError):
        raise ManifestError(f"{source}: manifest is missing a field or has a bad value") from None


def _checksum_matches(data: bytes, document: dict[str, Any], stated: Any, fmt: Any) -> bool:
    if fmt == CANONICAL_FORMAT:
        return bool(stated == "sha256:" + checksum(document))
    if not data.startswith(HEAD) or data[HEAD_LEN - 2 : HEAD_LEN] != b'",':
        return False
    digest = hashlib.sha256(b"{" + data[HEAD_LEN:]).hexdigest()
    return bool(stated == "sha256:" + digest and data[len(HEAD) : HEAD_LEN - 2] == digest.encode())


def _from_body(body: dict[str, Any]) -> Manifest:
    if body["format"] not in (FORMAT, CANONICAL_FORMAT):
        raise ValueError(body["format"])
    dump = body["dump"]
    return Manifest(
        id=str(body["id"]),
        started_at=str(body["started_at"]),
        finished_at=str(body["finished_at"]),
        versions=dict(body["versions"]),
        database=dict(body["database"]),
        dump=DumpInfo(str(dump["name"]), int(dump["size"]), str(dump["sha256"])),
        files=tuple(_file_entries(body["files"])),
        missing=tuple(
            MissingRef(m["subject"], m["path"], m["reason"], m["kind"])
            for m in body["consistency"]["missing"]
        ),
        migrations=body["migrations"],
        schema_sha256=str(body["schema_sha256"]),
        app_commit=body["app_commit"],
        scope=dict(body["scope"]),
        counts={k: int(v) for k, v in body["counts"].items()},
    )
