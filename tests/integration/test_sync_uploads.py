"""The uploads watcher as a real process, with a real worker: file events become findings."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from sync_stack import Stack, wait_for
from test_sync_pipeline import open_subjects

from guard.config.settings import Settings
from guard.continuous.capture import install
from guard.db.database import Database
from guard.findings import ledger as store

pytestmark = pytest.mark.integration


@pytest.fixture
def uploads(db_url: str, tmp_path: Path) -> Path:
    root = tmp_path / "public"
    (root / "uploads" / "ads").mkdir(parents=True)
    with Database(db_url) as db:
        db.execute("INSERT INTO users (id, email) VALUES (1, 'a@example.com')")
        db.execute("INSERT INTO categories (id, name, slug) VALUES (1, 'Cars', 'cars')")
        db.execute("INSERT INTO ads (id, title, slug, category_id, user_id) VALUES (1, 't', 'ok-1', 1, 1)")
        install(db, Settings(database_url=db_url))
    return root


@pytest.fixture
def stack(db_url: str, uploads: Path, tmp_path: Path) -> Iterator[Stack]:
    s = Stack(db_url, uploads, tmp_path, orphan_grace="8", watch_reconcile_seconds="2")
    try:
        s.worker()
        s.listener()
        s.watcher()
        yield s
    finally:
        s.close()


def _old_file(path: Path) -> None:
    path.write_bytes(b"img")
    stamp = time.time() - 3600
    os.utime(path, (stamp, stamp))


def test_deleted_image_becomes_missing_file_and_restoring_it_resolves(
    db_url: str, uploads: Path, stack: Stack
) -> None:
    image = uploads / "uploads" / "ads" / "one.webp"
    _old_file(image)
    with Database(db_url) as db:
        db.execute(
            "INSERT INTO ad_images (id, ad_id, filename, file_path) VALUES "
            "(1, 1, 'one', 'uploads/ads/one.webp')"
        )
    wait_for(lambda: "watching" in stack.log("watcher"), "the watcher to start")
    image.unlink()
    wait_for(lambda: open_subjects(db_url) == {("missing_file", "ad_images:1")}, "missing_file")
    _old_file(image)
    wait_for(lambda: open_subjects(db_url) == set(), "missing_file to resolve")


def test_upload_followed_by_its_row_opens_nothing_but_a_stray_file_does(
    db_url: str, uploads: Path, stack: Stack
) -> None:
    wait_for(lambda: "watching" in stack.log("watcher"), "the watcher to start")
    folder = uploads / "uploads" / "ads"
    (folder / "half.webp.part").write_bytes(b"partial")  # never reported: temporary
    (folder / "kept.webp").write_bytes(b"img")
    (folder / "stray.webp").write_bytes(b"img")
    time.sleep(3)  # the app writes the row a few seconds after the upload (well within the grace)
    with Database(db_url) as db:
        db.execute(
            "INSERT INTO ad_images (id, ad_id, filename, file_path) VALUES "
            "(2, 1, 'kept', 'uploads/ads/kept.webp')"
        )
    # A young file is looked at again once its own mtime plus the grace has passed, so this later
    # upload without a row becomes an orphan only after every look at kept.webp has been taken.
    (folder / "marker.webp").write_bytes(b"img")
    stray = ("orphan_file", "file:uploads/ads/stray.webp")
    marker = ("orphan_file", "file:uploads/ads/marker.webp")
    wait_for(lambda: {stray, marker} <= open_subjects(db_url), "the stray and the later marker to be orphans")
    with Database(db_url) as db:
        ever = {(f.kind, f.subject) for f in store.list_findings(db)}  # resolved ones too
    assert ever == {stray, marker}
