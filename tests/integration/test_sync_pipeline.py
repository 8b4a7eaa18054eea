"""The whole pipeline with real processes: trigger -> outbox -> listener -> Redis -> Celery worker."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from sync_stack import FakeSentry, Stack, wait_for

from guard.config.settings import Settings
from guard.continuous import outbox
from guard.continuous.capture import install
from guard.db.database import Database
from guard.findings import ledger as store

pytestmark = pytest.mark.integration


@pytest.fixture
def world(db_url: str, tmp_path: Path) -> Path:
    uploads = tmp_path / "public"
    (uploads / "uploads" / "ads").mkdir(parents=True)
    with Database(db_url) as db:
        db.execute("INSERT INTO users (id, email) VALUES (1, 'a@example.com')")
        db.execute("INSERT INTO categories (id, name, slug) VALUES (1, 'Cars', 'cars')")
        install(db, Settings(database_url=db_url))
    return uploads


@pytest.fixture
def sentry() -> Iterator[FakeSentry]:
    server = FakeSentry()
    yield server
    server.close()


@pytest.fixture
def stack(db_url: str, world: Path, tmp_path: Path, sentry: FakeSentry) -> Iterator[Stack]:
    s = Stack(db_url, world, tmp_path, sentry_dsn=sentry.dsn)
    try:
        yield s
    finally:
        s.close()


def open_subjects(db_url: str) -> set[tuple[str, str]]:
    with Database(db_url) as db:
        return {(f.kind, f.subject) for f in store.list_findings(db, open_only=True)}


def test_bad_slug_opens_fixing_resolves_and_a_deleted_row_is_nothing(db_url: str, stack: Stack) -> None:
    stack.worker()
    stack.listener()
    with Database(db_url) as db:
        db.execute(
            "INSERT INTO ads (id, title, slug, category_id, user_id) VALUES "
            "(1, 't', 'Not A Slug', 1, 1), (2, 't', 'fine-2', 1, 1)"
        )
    wait_for(lambda: open_subjects(db_url) == {("ads.slug.format", "ads:1")}, "the finding to open")
    with Database(db_url) as db:
        db.execute("UPDATE ads SET slug = 'fixed-1' WHERE id = 1")
    wait_for(lambda: open_subjects(db_url) == set(), "the finding to resolve")
    with Database(db_url) as db:
        db.execute("BEGIN")
        db.execute("INSERT INTO ads (id, title, slug, category_id, user_id) VALUES (3, 't', 'Bad', 1, 1)")
        db.execute("DELETE FROM ads WHERE id = 3")
        db.execute("COMMIT")
        wait_for(lambda: outbox.backlog(db) == 0, "the capture log and the outbox to drain")
    assert open_subjects(db_url) == set()


def test_duplicated_delivery_opens_one_finding_and_sends_one_alert(
    db_url: str, stack: Stack, sentry: FakeSentry
) -> None:
    with Database(db_url) as db:
        db.execute("INSERT INTO ads (id, title, slug, category_id, user_id) VALUES (1, '', 'x-1', 1, 1)")
    client = stack.client()
    for _ in range(3):  # the same change delivered three times, as after a listener crash
        client.send_task("guard.check_rows", args=["ads", ["1"], [], [1]], queue="events")
    stack.worker()
    wait_for(lambda: sentry.events, "the Sentry event")
    with Database(db_url) as db:
        wait_for(
            lambda: db.fetch_one("SELECT occurrences FROM guard.findings")[0] == 3,  # type: ignore[index]
            "all three deliveries to be processed",
        )
        found = store.list_findings(db)
        sent = db.fetch_one("SELECT count(*) FROM guard.notifications WHERE sentry_sent_at IS NOT NULL")
    assert [(f.kind, f.subject) for f in found] == [("ads.title.required", "ads:1")]
    assert sent == (1,)
    assert len(sentry.events) == 1
    event = sentry.events[0]
    assert event["tags"]["subject"] == "ads:1"
    assert event["fingerprint"] == ["incident-guard", "integrity", "ads.title.required"]
