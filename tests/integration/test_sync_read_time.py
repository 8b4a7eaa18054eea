"""A sweep never resolves what an event check saw failing after the sweep read its data (item 9)."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import pytest
from sync_stack import seed_owner, wait_for

from guard.checks import CheckContext, registry
from guard.config.settings import Settings
from guard.continuous import process as sync
from guard.continuous.capture import install
from guard.db.database import Database
from guard.findings import ledger as store

pytestmark = pytest.mark.integration

WAITING_ON_ADVISORY = (
    "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
    "AND application_name = 'guard-sync' AND wait_event = 'advisory'"
)


@pytest.fixture
def settings(db_url: str, tmp_path: Path) -> Settings:
    (tmp_path / "uploads" / "ads").mkdir(parents=True)
    s = Settings(database_url=db_url, uploads_root=tmp_path)
    with Database(db_url) as db:
        seed_owner(db)
        db.execute(
            "INSERT INTO ads (id, title, slug, category_id, user_id) VALUES (5, 't', 'Bad Slug', 1, 1)"
        )
        install(db, s)
    return s


def _set_slug(settings: Settings, slug: str) -> None:
    with Database(settings.require_database_url()) as db:
        db.execute("UPDATE ads SET slug = %s WHERE id = 5", (slug,))


def _rows(settings: Settings, query: str) -> list[tuple[Any, ...]]:
    with Database(settings.require_database_url()) as db:
        return db.fetch_all(query)


def test_a_sweep_that_read_before_an_event_check_does_not_resolve_what_the_event_saw_failing(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    sync.process_rows(settings, "ads", ["5"])  # opens ads.slug.format for ads:5
    holder = Database(settings.require_database_url())
    lock = "SELECT %s(hashtextextended('ads:5', 0))"
    event: list[BaseException] = []

    def event_check() -> None:
        try:
            sync.process_rows(settings, "ads", ["5"])
        except BaseException as exc:  # surfaced by the assertion below
            event.append(exc)

    def integrity_then_interleave(ctx: CheckContext) -> Any:
        result = registry()["integrity"](ctx)  # the sweep has read its data: the slug was fine
        _set_slug(settings, "Bad Slug")  # broken again before the waiting event check reads
        holder.execute(lock % "pg_advisory_unlock")  # release the lock the event check waits for
        thread.join(60)
        return result

    holder.execute(lock % "pg_advisory_lock")  # another check of the same row holds its lock
    thread = threading.Thread(target=event_check)
    thread.start()
    wait_for(lambda: _rows(settings, WAITING_ON_ADVISORY)[0][0] == 1, "the event check to wait")
    _set_slug(settings, "fixed-5")
    checks = {**registry(), "integrity": integrity_then_interleave}
    monkeypatch.setattr(sync, "registry", lambda: checks)
    sync.run_sweep(settings, "integrity")
    holder.close()
    assert not event and not thread.is_alive()
    sync.process_rows(settings, "ads", ["5"])  # the next event: still failing
    findings = _rows(settings, "SELECT kind, subject, resolved_at FROM guard.findings")
    assert findings == [("ads.slug.format", "ads:5", None)]
    assert [r[0] for r in _rows(settings, "SELECT event FROM guard.notifications ORDER BY id")] == ["opened"]


def test_an_event_check_takes_every_lock_it_needs_in_one_sorted_call(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    with Database(settings.require_database_url()) as db:
        db.execute(
            "INSERT INTO ad_images (id, ad_id, filename, file_path) VALUES "
            "(1, 5, 'a', 'uploads/ads/a.webp'), (2, 5, 'b', 'uploads/ads/b.webp')"
        )
    calls: list[list[str]] = []
    real = store.lock_subjects

    def spy(db: Database, subjects: Any) -> Any:
        calls.append(sorted(set(subjects)))
        return real(db, subjects)

    monkeypatch.setattr(store, "lock_subjects", spy)
    sync.process_rows(settings, "ad_images", ["1"], paths=["uploads/ads/b.webp"])
    sync.process_paths(settings, ["uploads/ads/a.webp"])
    # a row's change locks its paths, not the other rows naming them (row 2's file is as it was);
    # a path event locks the rows naming the path too, since it checks them
    assert calls == [
        ["ad_images:1", "file:uploads/ads/b.webp"],
        ["ad_images:1", "file:uploads/ads/a.webp"],
    ]
