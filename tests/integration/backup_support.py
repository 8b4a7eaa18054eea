"""Shared pieces of the backup tests: a small demo world per test, settings for it, table checksums."""

from __future__ import annotations

import os
import shutil
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import psycopg
from psycopg import sql

from examples.thulobazaar.world import build_world
from guard import server
from guard.settings import Settings

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
