"""A repair batch gives way to the app's locks: it waits at most lock_timeout, rolls back, and tries again."""

from __future__ import annotations

import psycopg
import pytest

from guard.db.database import Database
from guard.errors import UnreachableError
from guard.repair.batching import in_batch
from tests.integration.repair_support import populate, slugs_of

pytestmark = pytest.mark.integration


def test_a_batch_blocked_by_the_app_times_out_rolls_back_and_succeeds_once_the_lock_is_gone(
    db: Database, db_url: str
) -> None:
    populate(db)
    app = psycopg.connect(db_url)
    app.execute("SELECT 1 FROM ads WHERE id = 2 FOR UPDATE")  # the app holds ad 2 in an open transaction
    tries: list[int] = []

    def work() -> int:
        tries.append(1)
        db.execute("UPDATE ads SET slug = 'first-row-changed-1' WHERE id = 1")
        if len(tries) == 2:
            app.commit()  # the app's transaction ends between our attempts
        return db.execute("UPDATE ads SET slug = 'repaired-2' WHERE id = 2")

    try:
        assert in_batch(db, work, lock_timeout_ms=50) == 1
    finally:
        app.close()
    assert len(tries) == 2
    assert slugs_of(db)[2] == "repaired-2"


def test_a_batch_that_never_gets_the_lock_changes_nothing_and_says_so(db: Database, db_url: str) -> None:
    populate(db)
    with psycopg.connect(db_url) as app:
        app.execute("SELECT 1 FROM ads WHERE id = 2 FOR UPDATE")

        def work() -> int:
            db.execute("UPDATE ads SET slug = 'first-row-changed-1' WHERE id = 1")
            return db.execute("UPDATE ads SET slug = 'repaired-2' WHERE id = 2")

        with pytest.raises(UnreachableError, match="nothing of it was changed"):
            in_batch(db, work, lock_timeout_ms=20, attempts=2)
    assert slugs_of(db)[1] == "honda-city-1"
