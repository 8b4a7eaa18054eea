"""The listener's collect and claim sent together: still two transactions, the collect's committed first."""

from __future__ import annotations

from pathlib import Path

import pytest

from guard.config.settings import Settings
from guard.continuous import outbox
from guard.continuous.capture import install
from guard.db.database import Database

pytestmark = pytest.mark.integration


class PublishFailed(Exception):
    """What ends the claim without a commit, as a broker that refuses the batch does."""


@pytest.fixture
def db_with_change(db_url: str, tmp_path: Path) -> Database:
    db = Database(db_url)
    db.execute("INSERT INTO users (id, email) VALUES (1, 'a@example.com')")
    db.execute("INSERT INTO categories (id, name, slug) VALUES (1, 'Cars', 'cars')")
    install(db, Settings(database_url=db_url, uploads_root=tmp_path))
    db.execute("INSERT INTO ads (id, title, slug, category_id, user_id) VALUES (5, 't', NULL, 1, 1)")
    return db


def _outbox(url: str) -> list[tuple[str, bool]]:
    """What another connection sees: each outbox row's key and whether its dispatch committed."""
    with Database(url) as other:
        rows = other.fetch_all("SELECT row_key, dispatched_at IS NOT NULL FROM guard.outbox ORDER BY id")
        captured = other.fetch_one("SELECT count(*) FROM guard.capture")
    assert captured == (0,)  # collected, whatever happened to the claim
    return [(str(r[0]), bool(r[1])) for r in rows]


def test_a_claimed_change_is_already_committed_in_the_outbox_while_the_claim_is_open(
    db_with_change: Database,
) -> None:
    db = db_with_change
    with outbox.collect_and_claim(db, 100, 30) as (collected, changes):
        assert collected == 1
        assert [c.key for c in changes] == ["5"]
        # a worker given the task now can see the row it must mark; the dispatch is not committed yet
        assert _outbox(db.url) == [("5", False)]
    assert _outbox(db.url) == [("5", True)]


def test_a_failed_publish_undoes_the_claim_but_not_the_collect(db_with_change: Database) -> None:
    db = db_with_change
    with pytest.raises(PublishFailed), outbox.collect_and_claim(db, 100, 30) as (_, changes):
        assert changes
        raise PublishFailed
    assert _outbox(db.url) == [("5", False)]
    with outbox.collect_and_claim(db, 100, 30) as (collected, changes):  # the seam connects again
        assert (collected, [c.key for c in changes]) == (0, ["5"])
    assert _outbox(db.url) == [("5", True)]
