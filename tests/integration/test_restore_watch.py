"""The listener's restore watch on a real PostgreSQL: one set of checks per schema change, none without,
capture_missing kept true, guard's bookkeeping put back after the schema went, auto-install."""

from __future__ import annotations

from pathlib import Path

import pytest

from guard.config.settings import Settings
from guard.continuous.capture import install, missing_capture
from guard.db.database import Database
from watchers.restores import RestoreWatch

pytestmark = pytest.mark.integration
MIGRATIONS = Path(__file__).resolve().parents[2] / "examples" / "thulobazaar" / "prisma" / "migrations"


@pytest.fixture
def settings(db_url: str) -> Settings:
    s = Settings(database_url=db_url, migrations_dir=MIGRATIONS)
    with Database(db_url) as db:
        install(db, s)
    return s


def looks(watch: RestoreWatch, db: Database, times: int) -> None:
    for _ in range(times):
        watch.look(db)


def open_capture(db: Database) -> list[str]:
    rows = db.fetch_all(
        "SELECT subject FROM guard.findings WHERE kind = 'capture_missing' AND resolved_at IS NULL ORDER BY 1"
    )
    return [str(r[0]) for r in rows]


def test_a_change_sends_the_history_checks_once_and_no_change_sends_nothing(settings: Settings) -> None:
    sent: list[str] = []
    watch = RestoreWatch(settings, sent.append)
    with Database(settings.require_database_url()) as db:
        looks(watch, db, 2)  # never acted on since install: the first settled look acts
        assert sent == ["migrations", "drift"]
        looks(watch, db, 10)
        assert sent == ["migrations", "drift"]  # unchanged: no check storm
        db.execute('ALTER TABLE categories DROP COLUMN "form_template"')
        watch.look(db)
        assert len(sent) == 2  # new, not yet settled: a restore may still be running
        watch.look(db)
        assert sent == ["migrations", "drift"] * 2 and watch.acted == 2
        other = RestoreWatch(settings, sent.append)  # a second listener sees the change already acted on
        looks(other, db, 3)
        assert len(sent) == 4 and other.acted == 0
        db.execute("DELETE FROM _prisma_migrations WHERE migration_name LIKE '%user_favorites'")
        looks(watch, db, 2)
        assert len(sent) == 6  # the history is part of the fingerprint


def test_missing_triggers_are_capture_missing_until_install_puts_them_back(settings: Settings) -> None:
    watch = RestoreWatch(settings, lambda name: None)
    with Database(settings.require_database_url()) as db:
        looks(watch, db, 2)
        assert open_capture(db) == []
        db.execute("DROP TRIGGER guard_capture_update ON ads")
        looks(watch, db, 2)
        assert open_capture(db) == ["ads"]
        announced = db.fetch_all(  # queued for Sentry and Slack like every other newly opened finding
            "SELECT n.event FROM guard.notifications n JOIN guard.findings f ON f.id = n.finding_id "
            "WHERE f.kind = 'capture_missing'"
        )
        assert announced == [("opened",)]
        install(db, settings)
        looks(watch, db, 2)
        assert open_capture(db) == []


def test_a_dropped_guard_schema_is_recreated_as_bookkeeping_only(settings: Settings) -> None:
    sent: list[str] = []
    watch = RestoreWatch(settings, sent.append)
    with Database(settings.require_database_url()) as db:
        looks(watch, db, 2)
        db.execute("DROP SCHEMA guard CASCADE")  # what a dropped and re-created database looks like
        looks(watch, db, 2)
        assert watch.guard_present and len(sent) == 4
        assert open_capture(db) == ["ad_images", "ads", "categories"]  # the ledger is back, with the news
        assert [f.subject for f in missing_capture(db, settings)] == ["ad_images", "ads", "categories"]


def test_auto_install_puts_the_triggers_back_and_nothing_stays_open(settings: Settings) -> None:
    watch = RestoreWatch(settings.replace(capture_auto_install=True), lambda name: None)
    with Database(settings.require_database_url()) as db:
        db.execute("DROP SCHEMA guard CASCADE")
        looks(watch, db, 2)
        assert missing_capture(db, settings) == [] and open_capture(db) == []
        looks(watch, db, 3)
        assert watch.acted == 1  # re-installing changed the fingerprint, and it claimed the new one
