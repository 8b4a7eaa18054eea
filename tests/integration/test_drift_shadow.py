"""Drift end to end: clean databases, accidents that are not drift, replay failures, the shadow's lifetime."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

import pytest
from conftest import create_database, drop_database, unique_name, url_for
from drift_support import (
    RICH_MIGRATIONS,
    drift_of,
    kinds_and_subjects,
    rich_migrations,
    rich_template,
    rich_url,
    settings_for,
    shadow_databases,
    write_migrations,
)

from guard.checks import CheckContext
from guard.checks import drift as drift_check
from guard.checks import migrations as migrations_check
from guard.db.database import Database
from guard.errors import ConfigError
from guard.schema.shadow import shadow_database

# serial: it looks at every guard_* database on the server, so it runs after the parallel pass
pytestmark = [pytest.mark.integration, pytest.mark.serial]
__all__ = ["rich_migrations", "rich_template", "rich_url"]
ROOT = Path(__file__).resolve().parents[2]


def test_a_database_built_by_the_migrations_has_no_drift(rich_url: str, rich_migrations: Path) -> None:
    result = drift_check.run(CheckContext(settings_for(rich_url, rich_migrations)))
    assert result.ok, result.findings
    assert result.counts["table_missing"] == 0 and result.info["migrations_replayed"] == 3


def test_generated_names_column_order_and_default_spelling_are_not_drift(
    rich_url: str, rich_migrations: Path
) -> None:
    with Database(rich_url) as db:
        db.execute(
            'ALTER TABLE "users" DROP CONSTRAINT "users_age_check";'
            'ALTER TABLE "users" ADD CONSTRAINT "users_age_check1" CHECK ("age" >= 18);'
            'DROP INDEX "items_lower_idx"; CREATE INDEX ON "items" (lower("title"));'
            'ALTER INDEX "items_lower_idx" RENAME TO "items_lower_idx1";'
            'ALTER TABLE "users" DROP COLUMN "created_at";'
            'ALTER TABLE "users" ADD COLUMN "created_at" TIMESTAMP(3) NOT NULL '
            "DEFAULT CURRENT_TIMESTAMP"
        )
    assert kinds_and_subjects(drift_of(rich_url, rich_migrations)) == set()


def test_only_applied_migrations_are_replayed(rich_url: str, rich_migrations: Path) -> None:
    with Database(rich_url) as db:
        db.execute("DELETE FROM _prisma_migrations WHERE migration_name = '20240301000000_logic'")
    report = drift_of(rich_url, rich_migrations)
    assert report.replayed == tuple(sorted(RICH_MIGRATIONS))[:2]
    assert ("object_extra", "view:active_items") in kinds_and_subjects(report)


def test_guard_schema_and_prisma_table_are_ignored(rich_url: str, rich_migrations: Path) -> None:
    with Database(rich_url) as db:
        db.execute('CREATE SCHEMA "guard"; CREATE TABLE "guard"."outbox" ("id" int)')
    assert kinds_and_subjects(drift_of(rich_url, rich_migrations)) == set()


def test_a_migration_that_fails_to_replay_is_a_finding(tmp_path: Path) -> None:
    folder = write_migrations(
        tmp_path / "m",
        {
            "1_ok": 'CREATE TABLE "a" ("id" int);',
            "2_broken": 'CREATE TABLE "b" ("id" no_such_type);',
        },
    )
    name = unique_name("guard_drift_fail")
    create_database(name)
    try:
        before = shadow_databases()
        result = drift_check.run(CheckContext(settings_for(url_for(name), folder)))
        assert result.counts["migration_replay_failed"] == 1 and sum(result.counts.values()) == 1
        finding = result.findings[0]
        assert finding.subject == "migration:2_broken"
        assert 'type "no_such_type" does not exist' in finding.message
        assert shadow_databases() <= before
    finally:
        drop_database(name)


def test_the_shadow_is_dropped_when_the_work_inside_fails(rich_template: str) -> None:
    seen: list[str] = []
    with pytest.raises(RuntimeError), shadow_database(url_for(rich_template)) as shadow:
        seen.append(str(shadow.fetch_one("SELECT current_database()")[0]))  # type: ignore[index]
        raise RuntimeError("boom")
    assert seen and seen[0].startswith("guard_shadow_")
    assert seen[0] not in shadow_databases()


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_the_shadow_is_dropped_on_sigterm_and_ctrl_c(tmp_path: Path, signum: int) -> None:
    token = uuid.uuid4().hex
    folder = write_migrations(tmp_path / "m", {"1_slow": f"SELECT pg_sleep(60) /* {token} */;"})
    name = unique_name("guard_drift_sig")
    create_database(name)
    env = {**os.environ, "DATABASE_URL": url_for(name), "MIGRATIONS_DIR": str(folder)}
    env.pop("GUARD_CONFIG", None)
    process = subprocess.Popen(
        [sys.executable, "-m", "guard", "check", "drift"],
        env=env,
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        shadow = _wait_for_query(token)
        assert shadow.startswith("guard_shadow_") and shadow in shadow_databases()
        process.send_signal(signum)
        process.communicate(timeout=30)
        assert process.returncode == (143 if signum == signal.SIGTERM else 130)
        assert shadow not in shadow_databases()
    finally:
        process.kill()
        process.wait()
        drop_database(name)


def _wait_for_query(token: str) -> str:
    """Return the database where the query carrying `token` runs, once it runs."""
    with Database(url_for("postgres")) as db:
        for _ in range(200):
            row = db.fetch_one(
                "SELECT datname FROM pg_stat_activity WHERE query LIKE %s AND pid <> pg_backend_pid()",
                (f"%{token}%",),
            )
            if row:
                return str(row[0])
            time.sleep(0.05)
    raise AssertionError("the replay never started")


def test_two_drift_checks_run_at_once(rich_url: str, rich_migrations: Path) -> None:
    results: list[int] = []

    def check() -> None:
        results.append(len(drift_of(rich_url, rich_migrations).findings()))

    threads = [threading.Thread(target=check) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert results == [0, 0]


def test_shadow_database_url_is_used_and_left_empty(rich_url: str, rich_migrations: Path) -> None:
    name = unique_name("guard_given_shadow")
    create_database(name)
    try:
        report = drift_of(rich_url, rich_migrations, shadow_database_url=url_for(name))
        assert kinds_and_subjects(report) == set() and len(report.replayed) == 3
        with Database(url_for(name)) as db:
            left = db.fetch_one(
                "SELECT count(*) FROM pg_class c JOIN pg_namespace n "
                "ON n.oid = c.relnamespace WHERE n.nspname = 'public'"
            )
            assert left == (0,)
        report = drift_of(rich_url, rich_migrations, shadow_database_url=url_for(name))
        assert kinds_and_subjects(report) == set()
        with Database(url_for(name)) as db:
            db.execute('CREATE TABLE "keep_me" ("id" int)')
        with pytest.raises(ConfigError, match="SHADOW_DATABASE_URL must name an empty database"):
            drift_of(rich_url, rich_migrations, shadow_database_url=url_for(name))
    finally:
        drop_database(name)


@pytest.mark.parametrize("check", [drift_check.run, migrations_check.run])
def test_unset_migrations_dir_is_a_config_error_naming_it(check: object, rich_url: str) -> None:
    from guard.config.settings import Settings

    with pytest.raises(ConfigError, match="MIGRATIONS_DIR"):
        check(CheckContext(Settings(database_url=rich_url)))  # type: ignore[operator]
