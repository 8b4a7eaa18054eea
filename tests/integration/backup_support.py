"""Shared pieces of the backup tests: a small demo world per test, settings for it, table checksums."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql

from guard.backup import BackupResult
from guard.backup.repo import dumps, packs, permissions
from guard.backup.repo.manifest import Manifest
from guard.backup.repo.repository import DUMP, MANIFEST, Repository
from guard.backup.restorer import restore_backup
from guard.config.settings import Settings
from guard.db import servers as server
from guard.demo.world import build_world

SERVER_URL = os.environ.get("GUARD_TEST_SERVER_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
TABLES = ("users", "categories", "ads", "ad_images", "_prisma_migrations")


@dataclass(frozen=True)
class World:
    """A built demo world and guard settings pointing at it and at a fresh backup folder."""

    name: str
    url: str
    root: Path
    settings: Settings
    truth: dict[str, object]


def make_world(tmp_path: Path, *, ads: int, bad_rate: float) -> Iterator[World]:
    name = f"guard_test_bk_{uuid.uuid4().hex[:12]}"
    root = tmp_path / "uploads"
    truth = build_world(SERVER_URL, name, root, ads, bad_rate)
    url = str(truth["database_url"])
    settings = Settings(database_url=url, uploads_root=root, backup_dir=tmp_path / "backups", orphan_grace=0)
    try:
        yield World(name, url, root, settings, truth)
    finally:
        # Not drop_world: a forced restore replaces the database, mark included, and drop_world
        # refuses to drop a database it did not mark. This name is ours alone.
        drop_database(name)
        shutil.rmtree(root, ignore_errors=True)
        with psycopg.connect(SERVER_URL, autocommit=True) as conn:
            rows = conn.execute(
                "SELECT datname FROM pg_database WHERE datname LIKE %s", ("guard\\_restore\\_%",)
            ).fetchall()
            for (stale,) in rows:
                if (tmp_path / "backups" / "restores" / stale).exists():
                    conn.execute(server.drop_database(stale))


def repo_of(world: World) -> Repository:
    return Repository.open(world.settings.backup_dir or Path(), create=False)


def assert_restores_byte_identical(world: World, backup_id: str) -> None:
    """Restore a backup into a scratch database and folder: every file it lists is the live one's bytes."""
    restored = restore_backup(world.settings, backup_id)
    try:
        entries = repo_of(world).load(backup_id).files
        assert entries
        for entry in entries:
            live = (world.root / entry.path).read_bytes()
            assert (restored.uploads_dir / entry.path).read_bytes() == live, entry.path
    finally:
        drop_database(restored.target_db)


def table_checksums(url: str) -> dict[str, str]:
    """Return an md5 of every row of each application table, to prove a database was not touched."""
    out = {}
    with psycopg.connect(url) as conn:
        for table in TABLES:
            query = sql.SQL(
                "SELECT md5(coalesce(string_agg(t::text, '|' ORDER BY t::text), '')) FROM {} t"
            ).format(sql.Identifier(table))
            row = conn.execute(query).fetchone()
            out[table] = row[0] if row else ""
    return out


def drop_database(name: str) -> None:
    with psycopg.connect(SERVER_URL, autocommit=True) as conn:
        conn.execute(server.drop_database(name))


def _located(repo: Repository, sha: str) -> tuple[Path, int, int]:
    """Where an object's bytes are: (file, offset, size), packed or loose."""
    repo.store.reload()
    where = repo.store.index.get(sha)
    if where is not None:
        return Path(where.file), where.offset, where.stored  # the bytes the pack holds
    path = repo.objects / sha[:2] / sha
    return path, 0, path.stat().st_size


def corrupt_object(repo: Repository, sha: str) -> None:
    """Overwrite an object's bytes in place with as many others: only re-hashing can tell."""
    path, offset, size = _located(repo, sha)
    path.chmod(0o644)
    with open(path, "r+b") as handle:
        handle.seek(offset)
        flipped = bytes(b ^ 0xFF for b in handle.read(size))
        handle.seek(offset)
        handle.write(flipped)
    repo.store.reload()


def change_a_row(world: World) -> None:
    """Rename one category, so the next backup's dump differs from the last one's in its data.

    The archive's header holds the dump's time, but only to the second: two backups in one second
    can give byte-identical dumps that share every chunk."""
    with psycopg.connect(world.url) as conn:
        conn.execute("UPDATE categories SET name = name || '.' WHERE id = (SELECT min(id) FROM categories)")


def own_dump_chunk(older: BackupResult, newer: BackupResult) -> str:
    """A chunk of newer's dump that older's does not share (see change_a_row for same-database pairs)."""
    shared = {c.sha256 for c in older.manifest.dump.chunks}
    return next(c.sha256 for c in newer.manifest.dump.chunks if c.sha256 not in shared)


def write_older_format(repo: Repository, manifest: Manifest, fmt: str, **body: Any) -> None:
    """Rewrite a backup as a version before format 4 left it: the dump a file next to a plain JSON
    manifest (the body's other fields replaced by body's), its chunks no longer named."""
    folder = repo.folder(manifest.id)
    folder.chmod(0o700)
    with dumps.assembled(repo, manifest) as dump:
        permissions.write_file(folder / DUMP, dump.read_bytes(), permissions.FROZEN)
    document = {**manifest.body(), **body, "format": fmt}
    document["dump"] = {k: v for k, v in document["dump"].items() if k != "chunks"}
    raw = json.dumps(document, ensure_ascii=True, separators=(",", ":")).encode("ascii")
    digest = hashlib.sha256(raw).hexdigest().encode()
    (folder / MANIFEST).unlink()
    (folder / MANIFEST).write_bytes(b'{"checksum":"sha256:' + digest + b'",' + raw[1:])
    folder.chmod(0o700)


def lose_object(repo: Repository, sha: str) -> None:
    """Make the store lose one object: its loose file, or its entry in its pack's index."""
    path, _, _ = _located(repo, sha)
    if path.suffix != ".pack":
        path.unlink()
    else:
        index = path.with_suffix(".idx")
        entries = [e for e in packs.read_index(index) or [] if e[0] != sha]
        index.write_bytes(packs.index_bytes(entries))
    repo.store.reload()


def stored(repo: Repository, sha: str) -> bool:
    """Whether the store (read afresh from disk) holds an object, packed or loose."""
    repo.store.reload()
    return sha in repo.store.index or (repo.objects / sha[:2] / sha).exists()


def object_bytes(repo: Repository, sha: str) -> bytes:
    repo.store.reload()
    return repo.store.read(sha)
