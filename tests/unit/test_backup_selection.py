"""The one walk over a repository's backups, newest first, that the builder, drill and recovery share."""

from __future__ import annotations

from pathlib import Path

import pytest

from guard.backup.repo.manifest import DumpInfo, Manifest
from guard.backup.repo.repository import MANIFEST, Repository
from guard.backup.selection import ANY_PURPOSE, newest_first, others, readable
from guard.backup.source import BACKUP, SAFETY, Source, Wanted

SHOP = Source("shop", "7001", 16384)
BLOG = Source("blog", "7001", 16385)


def publish(repo: Repository, backup_id: str, content: bytes) -> None:
    """Publish a backup folder holding only this manifest (enough for the selector)."""
    staging = repo.staging(backup_id)
    (staging / MANIFEST).write_bytes(content)
    repo.publish(staging, backup_id)


def manifest(backup_id: str, source: Source | None, purpose: str = BACKUP) -> bytes:
    return Manifest(
        id=backup_id,
        started_at="s",
        finished_at="f",
        versions={"guard": "0"},
        database={"target": "database on h:5432"},
        dump=DumpInfo("database.dump", 10, "cd" * 32),
        inline_files=(),
        missing=(),
        migrations=None,
        schema_sha256="ef" * 32,
        app_commit=None,
        scope={},
        source=source,
        purpose=purpose,
    ).to_bytes()


@pytest.fixture
def repo(tmp_path: Path) -> Repository:
    """Oldest to newest: shop, blog, shop's safety backup, shop, then one that cannot be read."""
    repo = Repository.open(tmp_path / "backups", create=True)
    publish(repo, "20240101T020000Z-000001", manifest("20240101T020000Z-000001", SHOP))
    publish(repo, "20240102T020000Z-000002", manifest("20240102T020000Z-000002", BLOG))
    publish(repo, "20240103T020000Z-000003", manifest("20240103T020000Z-000003", SHOP, SAFETY))
    publish(repo, "20240104T020000Z-000004", manifest("20240104T020000Z-000004", SHOP))
    publish(repo, "20240105T020000Z-000005", b"torn")
    return repo


def test_a_sources_backups_come_newest_first_with_the_unreadable_where_it_falls(repo: Repository) -> None:
    picked = [(c.backup_id[-1], c.manifest is not None) for c in newest_first(repo, Wanted("shop"))]
    assert picked == [("5", False), ("4", True), ("1", True)]


def test_an_unreadable_backup_says_why(repo: Repository) -> None:
    newest = next(newest_first(repo, Wanted("shop")))
    assert newest.manifest is None
    assert newest.problem is not None and "20240105T020000Z-000005" in newest.problem


def test_readable_keeps_the_newest_manifest_that_can_be_read(repo: Repository) -> None:
    first = next(readable(newest_first(repo, Wanted("shop"))))
    assert (first.id, first.source, first.purpose) == ("20240104T020000Z-000004", SHOP, BACKUP)


def test_any_purpose_includes_the_safety_backups(repo: Repository) -> None:
    ids = [m.id[-1] for m in readable(newest_first(repo, Wanted("shop"), ANY_PURPOSE))]
    assert ids == ["4", "3", "1"]


def test_no_wanted_source_walks_every_sources_backups(repo: Repository) -> None:
    ids = [c.backup_id[-1] for c in newest_first(repo, None)]
    assert ids == ["5", "4", "2", "1"]


def test_a_source_on_another_server_is_not_picked(repo: Repository) -> None:
    assert [c.backup_id[-1] for c in newest_first(repo, Wanted("shop", "9999"))] == ["5"]


def test_others_names_the_sources_held_besides_the_wanted_one(repo: Repository) -> None:
    assert others(repo, Wanted("shop")) == ["blog@7001"]
    assert others(repo, Wanted("nothing")) == ["blog@7001", "shop@7001"]
