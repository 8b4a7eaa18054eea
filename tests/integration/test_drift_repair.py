"""Applying a repair on a real PostgreSQL: lock_timeout and retries, online builds beside the app's writes."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from pathlib import Path

import psycopg
import pytest
from conftest import MIGRATIONS

from guard.checks.drift import detect
from guard.config.settings import Settings
from guard.db.database import Database
from guard.schema.applier import Application, LockPolicy, apply_steps
from guard.schema.rescue import live_column_types
from guard.schema.steps import Step, parse_script

pytestmark = pytest.mark.integration
DEADLINE_S = 60.0
QUICK = LockPolicy(timeout="100ms", attempts=200, longest_pause=0.2)


def wait_for(condition: Callable[[], bool], what: str) -> None:
    """Poll until condition() holds, failing after the deadline."""
    deadline = time.monotonic() + DEADLINE_S
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


class Repair(threading.Thread):
    """Apply a script in the background, noting each retry, as `guard drift repair --apply` does."""

    def __init__(self, url: str, text: str) -> None:
        super().__init__(daemon=True)
        self.url, self.text = url, text
        self.retried = threading.Event()
        self.result: Application | None = None

    def run(self) -> None:
        with Database(self.url, application_name="guard-drift-repair") as db:
            steps = parse_script(self.text, live_column_types(db))
            self.result = apply_steps(db, steps, QUICK, on_retry=self._noted)

    def _noted(self, step: Step, attempt: int, why: str) -> None:
        self.retried.set()

    def finished(self) -> Application:
        self.join(DEADLINE_S)
        assert not self.is_alive() and self.result is not None
        return self.result


def insert_category(url: str, slug: str) -> None:
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("SET lock_timeout = '1s'")
        conn.execute("INSERT INTO categories (name, slug) VALUES (%s, %s)", (slug, slug))


def test_a_step_that_times_out_on_a_lock_is_retried_until_the_lock_is_released(db_url: str) -> None:
    holder = psycopg.connect(db_url)
    try:
        holder.execute("LOCK TABLE categories IN ACCESS EXCLUSIVE MODE")
        repair = Repair(db_url, 'ALTER TABLE "categories" ADD COLUMN "note" text;')
        repair.start()
        wait_for(repair.retried.is_set, "the repair to time out on the lock and retry")
        with Database(db_url) as db:
            assert db.fetch_one("SELECT count(*) FROM pg_attribute WHERE attname = 'note'") == (0,)
        holder.commit()
        result = repair.finished()
    finally:
        holder.close()
    assert result.failure is None and result.applied[0].attempts >= 2
    with Database(db_url) as db:
        assert db.fetch_one(
            "SELECT count(*) FROM pg_attribute WHERE attrelid = 'categories'::regclass AND attname = 'note'"
        ) == (1,)


def test_a_concurrent_build_runs_outside_a_transaction_while_the_app_keeps_writing(db_url: str) -> None:
    script = 'CREATE UNIQUE INDEX CONCURRENTLY "categories_name_key" ON "categories" ("name");'
    with Database(db_url) as db, pytest.raises(psycopg.errors.ActiveSqlTransaction), db.transaction():
        db.execute(script)  # why the script has no BEGIN: PostgreSQL refuses CONCURRENTLY there
    writer = psycopg.connect(db_url)  # the app, mid-transaction: a concurrent build waits for it
    try:
        writer.execute("INSERT INTO categories (name, slug) VALUES ('early', 'early')")
        repair = Repair(db_url, script)
        repair.start()
        wait_for(repair.retried.is_set, "the build to time out waiting for the open write and retry")
        insert_category(db_url, "meanwhile")  # a plain CREATE INDEX would hold this write behind it
        writer.commit()
        result = repair.finished()
    finally:
        writer.close()
    assert result.failure is None and result.applied[0].attempts >= 2
    with Database(db_url) as db:  # the invalid leftover of each timed-out try was dropped, not kept
        rows = db.fetch_all(
            "SELECT c.relname, x.indisvalid FROM pg_index x JOIN pg_class c ON c.oid = x.indexrelid"
            " WHERE c.relname LIKE 'categories_name_key%%'"
        )
    assert rows == [("categories_name_key", True)]


def test_a_failed_concurrent_build_is_index_invalid_and_its_repair_builds_it(db_url: str) -> None:
    settings = Settings(database_url=db_url, migrations_dir=Path(MIGRATIONS))  # type: ignore[arg-type]
    with psycopg.connect(db_url, autocommit=True) as conn:
        conn.execute('DROP INDEX "categories_slug_key"')
        conn.execute("INSERT INTO categories (name, slug) VALUES ('a', 'dup'), ('b', 'dup')")
        with pytest.raises(psycopg.errors.UniqueViolation):
            conn.execute('CREATE UNIQUE INDEX CONCURRENTLY "categories_slug_key" ON "categories" ("slug")')
    report = detect(settings)
    assert [(f.kind, f.subject) for f in report.findings()] == [
        ("index_invalid", "index:categories_slug_key")
    ]
    (difference,) = report.differences
    assert difference.sql == (
        'DROP INDEX CONCURRENTLY IF EXISTS "public"."categories_slug_key";\n'
        'CREATE UNIQUE INDEX CONCURRENTLY "categories_slug_key" ON public.categories USING btree (slug);'
    )
    with Database(db_url) as db:
        steps = parse_script(difference.sql, live_column_types(db))
        assert apply_steps(db, steps).failure is not None  # the duplicates still stand in the way
        db.execute("DELETE FROM categories WHERE slug = 'dup' AND name = 'b'")
        assert apply_steps(db, steps).failure is None
    assert detect(settings).findings() == []
