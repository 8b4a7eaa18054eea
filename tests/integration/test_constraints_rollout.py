"""The constraint rollout on a real PostgreSQL, step by step: plan, each file, refusal, fix, idempotence."""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime
from pathlib import Path

import psycopg
import pytest

from guard.checks import CheckContext, run_checks
from guard.checks.integrity import BLANK_CHARS as INTEGRITY_BLANKS
from guard.config.settings import Settings
from guard.constraints import enforcement as e
from guard.constraints.plan import read_plan
from guard.constraints.rollout import Rollout, plan_rollout, read_written, write_rollout
from guard.db.database import Database
from guard.schema.history import MigrationFile, apply_and_record
from tests.conftest import MIGRATIONS
from tests.integration.constraints_support import (
    APP_INSERT,
    APP_SLUGS,
    BROKEN_ROWS,
    COUNTS,
    FIXES,
    NOT_VALID_SQL,
    UNIQUE_SQL,
    VALIDATE_SQL,
    copy_migrations,
    guard_folders,
    run_all,
)

pytestmark = pytest.mark.integration

NOW = datetime(2030, 1, 2, 3, 4, 5, tzinfo=UTC)
GUARD_OBJECTS = """
SELECT conname FROM pg_constraint WHERE conname LIKE 'guard%%'
UNION ALL SELECT relname FROM pg_class WHERE relname LIKE 'guard%%'
"""
NOT_NULL = "SELECT attnotnull FROM pg_attribute WHERE attrelid = %s::regclass AND attname = %s"


def settings(url: str, folder: Path) -> Settings:
    return Settings(database_url=url, migrations_dir=folder)  # type: ignore[arg-type]


def rollout(url: str, folder: Path, now: datetime = NOW) -> Rollout:
    return plan_rollout(read_plan(settings(url, folder)), read_written(folder), now)


def lint_hazards(url: str, folder: Path) -> set[tuple[str, str]]:
    """What `guard check migrations` says of the pending folders, besides that they are pending."""
    (result,) = run_checks(CheckContext(settings(url, folder)), ["migrations"])
    return {(f.kind, f.subject) for f in result.findings if f.kind != "migration_pending"}


def deploy(db: Database, folder: Path, written: list[Path]) -> None:
    """Apply the folders and record them the way `prisma migrate deploy` does."""
    for script in written:
        apply_and_record(db, MigrationFile(script.parent.name, script, script.read_bytes()))


def test_the_plan_names_each_rules_constraint_and_todays_count_and_writes_nothing(
    db: Database, db_url: str, tmp_path: Path
) -> None:
    run_all(db, BROKEN_ROWS)
    folder = copy_migrations(tmp_path)
    before = sorted(p.name for p in folder.iterdir())
    plans = {p.rule.id: p for p in read_plan(settings(db_url, folder))}
    assert {rule: p.findings for rule, p in plans.items()} == COUNTS
    slug = plans["ads.slug.required"]
    assert [(x.kind, x.name, x.state) for x in slug.enforcers] == [
        (e.CHECK, "guard_ads_slug_required_not_null", e.MISSING),
        (e.NOT_NULL, "guard_ads_slug_required_not_null", e.MISSING),
        (e.CHECK, "guard_ads_slug_required", e.MISSING),
    ]
    (unique,) = plans["ads.slug.unique"].enforcers
    assert unique.definition.endswith("WHERE btrim(\"slug\", E' \\t\\r\\n\\f\\013') <> ''")
    title = plans["ads.title.required"].enforcers
    assert [(x.kind, x.ours) for x in title] == [(e.NOT_NULL, False), (e.CHECK, True)]
    (fkey,) = plans["ad_images.ad_id.references"].enforcers
    assert (fkey.name, fkey.state, fkey.ours) == ("ad_images_ad_id_fkey", e.VALID, False)
    assert not plans["ads.slug.required"].satisfied and plans["categories.name.required"].satisfied
    assert sorted(p.name for p in folder.iterdir()) == before
    assert db.fetch_all(GUARD_OBJECTS) == []


def test_the_blank_characters_are_the_integrity_checks(db: Database) -> None:
    row = db.fetch_one(psycopg.sql.SQL("SELECT {} = %s").format(e.BLANK_CHARS), (INTEGRITY_BLANKS,))
    assert row == (True,)


def test_with_findings_open_only_the_not_valid_step_is_written_and_the_rest_refused(
    db: Database, db_url: str, tmp_path: Path
) -> None:
    run_all(db, BROKEN_ROWS)
    folder = copy_migrations(tmp_path)
    planned = rollout(db_url, folder)
    assert [m.name for m in planned.migrations] == ["20300102030405_guard_constraints_not_valid"]
    assert planned.migrations[0].script == NOT_VALID_SQL
    held = {(b.rule, b.findings, b.step) for b in planned.blocked}
    assert held == {
        ("ads.slug.unique", 2, "guard_unique_ads_slug"),
        ("ads.slug.required", 2, "guard_constraints_validate"),
        ("ads.slug.format", 1, "guard_constraints_validate"),
        ("ads.title.required", 1, "guard_constraints_validate"),
        ("ad_images.file_path.required", 1, "guard_constraints_validate"),
    }
    deploy(db, folder, write_rollout(folder, planned))
    # From now on the app's bad writes are refused, while the old bad rows are still there.
    with pytest.raises(psycopg.errors.CheckViolation):
        db.execute(APP_INSERT, ("Bad Slug",))
    assert rollout(db_url, folder).migrations == ()


def test_after_the_rows_are_fixed_the_unique_and_validate_steps_complete_the_rollout(
    db: Database, db_url: str, tmp_path: Path
) -> None:
    run_all(db, BROKEN_ROWS)
    folder = copy_migrations(tmp_path)
    first = write_rollout(folder, rollout(db_url, folder))
    assert lint_hazards(db_url, folder) == set()  # the migration lint passes what guard writes
    deploy(db, folder, first)
    run_all(db, FIXES)
    later = datetime(2030, 1, 2, 3, 5, 0, tzinfo=UTC)
    planned = rollout(db_url, folder, later)
    assert planned.blocked == ()
    assert [(m.name, m.script) for m in planned.migrations] == [
        ("20300102030500_guard_unique_ads_slug", UNIQUE_SQL),
        ("20300102030501_guard_constraints_validate", VALIDATE_SQL),
    ]
    rest = write_rollout(folder, planned)
    assert lint_hazards(db_url, folder) == set()
    deploy(db, folder, rest)
    assert guard_folders(folder) == [
        "guard_constraints_not_valid",
        "guard_unique_ads_slug",
        "guard_constraints_validate",
    ]
    assert db.fetch_one(NOT_NULL, ("ads", "slug")) == (True,)
    assert db.fetch_one(NOT_NULL, ("ad_images", "file_path")) == (True,)
    states = {x.name: x.state for p in read_plan(settings(db_url, folder)) for x in p.enforcers if x.ours}
    assert set(states.values()) == {e.VALID}
    results = run_checks(CheckContext(settings(db_url, folder)), ["integrity", "migrations", "drift"])
    assert [(r.name, r.ok, r.error) for r in results] == [(r.name, True, None) for r in results]
    for slug, accepted in APP_SLUGS:
        try:
            db.execute(APP_INSERT, (slug,))
        except (psycopg.errors.CheckViolation, psycopg.errors.NotNullViolation):
            assert not accepted, slug
        else:
            assert accepted, slug
    with pytest.raises(psycopg.errors.UniqueViolation):
        db.execute(APP_INSERT, ("honda-city-1",))
    again = rollout(db_url, folder, datetime(2030, 1, 3, tzinfo=UTC))
    assert again == Rollout((), ())


def test_new_folders_sort_after_every_existing_one(db_url: str, tmp_path: Path) -> None:
    folder = copy_migrations(tmp_path)
    (folder / "20990101000000_future").mkdir()
    (folder / "20990101000000_future" / "migration.sql").write_text("SELECT 1;\n")
    names = [m.name for m in rollout(db_url, folder).migrations]
    assert names == [
        "20990101000001_guard_constraints_not_valid",
        "20990101000002_guard_unique_ads_slug",
        "20990101000003_guard_constraints_validate",
    ]


def test_a_failed_concurrent_build_shows_as_an_invalid_index_in_the_plan(db: Database, db_url: str) -> None:
    run_all(db, BROKEN_ROWS)
    with pytest.raises(psycopg.errors.UniqueViolation):
        db.execute('CREATE UNIQUE INDEX CONCURRENTLY "guard_ads_slug_unique" ON "ads" ("slug")')
    plans = {p.rule.id: p for p in read_plan(settings(db_url, MIGRATIONS))}
    (index,) = plans["ads.slug.unique"].enforcers
    assert (index.name, index.state) == ("guard_ads_slug_unique", e.INVALID)


def test_set_not_null_after_the_validated_check_reads_no_rows(
    db: Database, db_url: str, tmp_path: Path
) -> None:
    folder = copy_migrations(tmp_path)
    *first, validate = write_rollout(folder, rollout(db_url, folder))
    deploy(db, folder, first)
    said: list[str] = []
    with psycopg.connect(db_url, autocommit=True) as conn:
        conn.add_notice_handler(lambda notice: said.append(notice.message_primary or ""))
        conn.execute("SET client_min_messages = debug1")
        conn.execute(validate.read_bytes())
    proofs = [m for m in said if "are sufficient to prove that it does not contain nulls" in m]
    assert proofs == [
        'existing constraints on column "ads.slug" are sufficient to prove that it does not contain nulls',
        'existing constraints on column "ad_images.file_path" are sufficient to prove that it does not '
        "contain nulls",
    ]


def build_behind_an_open_transaction(
    db_url: str, first: bytes, build: bytes
) -> tuple[bool, BaseException | None]:
    """Run `first` then `build` on one connection, as `migrate deploy` does, while the app holds a
    write transaction open on `ads` until the build has waited past 500 ms; return whether it did
    wait that long, and the build's error."""
    outcome: list[BaseException | None] = []
    waited = False
    with psycopg.connect(db_url, autocommit=True) as deployer, psycopg.connect(db_url) as app:
        deployer.execute(first)
        pid = deployer.info.backend_pid
        app.execute("UPDATE ads SET title = title WHERE false")  # the app's write, not committed yet

        def run() -> None:
            try:
                deployer.execute(build)
            except psycopg.Error as error:
                outcome.append(error)
            else:
                outcome.append(None)

        worker = threading.Thread(target=run)
        worker.start()
        try:
            with psycopg.connect(db_url, autocommit=True) as watcher:
                deadline = time.monotonic() + 30
                while not outcome and time.monotonic() < deadline:
                    waited = watcher.execute(WAITED_PAST_THE_TIMEOUT, (pid,)).fetchone() == (True,)
                    if waited:
                        break
                    time.sleep(0.05)
        finally:
            app.rollback()
            worker.join(30)
    assert outcome, "the build did not end once the app's transaction did"
    return waited, outcome[0]


# The build is still waiting for a lock, a second after it started: past a 500 ms lock_timeout.
WAITED_PAST_THE_TIMEOUT = """
SELECT wait_event_type = 'Lock' AND now() - query_start > interval '1 second'
FROM pg_stat_activity WHERE pid = %s
"""


def test_the_concurrent_build_after_the_not_valid_step_waits_for_the_apps_transaction(
    db: Database, db_url: str, tmp_path: Path
) -> None:
    folder = copy_migrations(tmp_path)
    not_valid, unique, _ = write_rollout(folder, rollout(db_url, folder))
    waited, error = build_behind_an_open_transaction(db_url, not_valid.read_bytes(), unique.read_bytes())
    assert (waited, error) == (True, None)
    valid = "SELECT indisvalid FROM pg_index WHERE indexrelid = 'guard_ads_slug_unique'::regclass"
    assert db.fetch_one(valid) == (True,)


def test_a_lock_timeout_left_set_on_the_connection_fails_the_concurrent_build(
    db: Database, db_url: str, tmp_path: Path
) -> None:
    folder = copy_migrations(tmp_path)
    _, unique, _ = write_rollout(folder, rollout(db_url, folder))
    _, error = build_behind_an_open_transaction(db_url, b"SET lock_timeout = '500ms';", unique.read_bytes())
    assert isinstance(error, psycopg.errors.LockNotAvailable)
    invalid = "SELECT indisvalid FROM pg_index WHERE indexrelid = 'guard_ads_slug_unique'::regclass"
    assert db.fetch_one(invalid) == (False,)
