"""Incident 1 on the running stack: an old dump restored over the live database is seen within seconds.

Real listener and Celery worker processes, real PostgreSQL and Redis. The old dump is the init
migration only (no categories.form_template, ads.custom_fields or user_favorites) and, as in the
write-up, no `_prisma_migrations` at all.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from conftest import MIGRATIONS, SERVER_URL, migrated_database, url_for
from sync_stack import BIN, ROOT, Stack, seed_owner, wait_for

from guard.config.settings import Settings
from guard.continuous.capture import install, missing_capture
from guard.db import servers as server
from guard.db.database import Database

pytestmark = pytest.mark.integration
DEADLINE_S = 60.0  # generous for a shared machine; bench/restore_seen.py measures the real figure


@pytest.fixture(scope="module")
def old_dump(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A custom-format dump of a database that has only the init migration and no migration history."""
    folder = tmp_path_factory.mktemp("old")
    migrations = folder / "migrations"
    migrations.mkdir()
    shutil.copytree(MIGRATIONS / "20240101000000_init", migrations / "20240101000000_init")
    dump = folder / "old.dump"
    with migrated_database("guard_old", migrations) as name:
        with Database(url_for(name)) as db:
            db.execute("DROP TABLE _prisma_migrations")
        subprocess.run(["pg_dump", "-Fc", "-f", str(dump), "-d", url_for(name)], check=True)
    return dump


@pytest.fixture
def live(db_url: str, tmp_path: Path) -> Path:
    uploads = tmp_path / "public"
    (uploads / "uploads" / "ads").mkdir(parents=True)
    with Database(db_url) as db:
        seed_owner(db)
        install(db, Settings(database_url=db_url))
    return uploads


def make_stack(db_url: str, live: Path, tmp_path: Path, **settings: str) -> Stack:
    stack = Stack(
        db_url, live, tmp_path, migrations_dir=str(MIGRATIONS), schema_watch_seconds="1", **settings
    )
    stack.worker(loglevel="INFO")
    stack.listener()
    return stack


@pytest.fixture
def stack(db_url: str, live: Path, tmp_path: Path) -> Iterator[Stack]:
    s = make_stack(db_url, live, tmp_path)
    try:
        yield s
    finally:
        s.close()


def open_findings(db_url: str) -> set[tuple[str, str]]:
    try:
        with Database(db_url) as db:
            rows = db.fetch_all("SELECT kind, subject FROM guard.findings WHERE resolved_at IS NULL")
    except (psycopg.Error, Exception):  # the database or guard's schema is away mid-restore
        return set()
    return {(str(r[0]), str(r[1])) for r in rows}


def finished_schema_sweeps(db_url: str) -> int:
    with Database(db_url) as db:
        row = db.fetch_one(
            "SELECT count(*) FROM guard.task_runs "
            "WHERE run_key LIKE 'guard-schema-%' AND finished_at IS NOT NULL"
        )
    return int(row[0]) if row else 0


def started(db_url: str) -> None:
    """Wait for the listener's first look (never acted on since install) and its checks to finish."""
    wait_for(lambda: finished_schema_sweeps(db_url) == 2, "the first look's migrations and drift sweeps")
    assert open_findings(db_url) == set()  # the live database is in line with its migrations


def history_reads(db_url: str) -> int:
    """How often _prisma_migrations was scanned: each fingerprint look reads it once."""
    with Database(db_url) as db:
        row = db.fetch_one("SELECT seq_scan FROM pg_stat_user_tables WHERE relname = '_prisma_migrations'")
    return int(row[0]) if row else 0


def no_storm(stack: Stack, db_url: str) -> None:
    """Five more looks at an unchanged schema send no more checks than the first look did."""
    before = history_reads(db_url)
    wait_for(lambda: history_reads(db_url) >= before + 5, "five more looks at the fingerprint")
    assert stack.log("worker").count("guard.sweep[guard-schema-") == 2 * 2  # received and succeeded, once


def restore_clean(dump: Path, db_url: str) -> None:
    """pg_restore --clean over the live database; its errors (objects the dump lacks depend on) are the
    realistic outcome, so the exit code is not judged."""
    subprocess.run(["pg_restore", "--clean", "--if-exists", "-d", db_url, str(dump)], capture_output=True)


def recreate_and_restore(dump: Path, db_name: str) -> None:
    with psycopg.connect(SERVER_URL, autocommit=True) as conn:
        conn.execute(server.drop_database(db_name))
        conn.execute(server.create_database(db_name, "template0", utf8=False))
    subprocess.run(["pg_restore", "-d", url_for(db_name), str(dump)], check=True, capture_output=True)


def guard(stack: Stack, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(BIN / "guard"), *args], cwd=ROOT, env=stack.env, capture_output=True, text=True, timeout=120
    )


def test_pg_restore_clean_of_an_old_dump_opens_drift_and_capture_missing(
    stack: Stack, db_url: str, old_dump: Path
) -> None:
    started(db_url)
    no_storm(stack, db_url)
    restore_clean(old_dump, db_url)
    wanted = {("column_missing", "column:categories.form_template"), ("capture_missing", "categories")}
    wait_for(lambda: wanted <= open_findings(db_url), "drift and capture_missing to open", DEADLINE_S)
    status = guard(stack, "status", "--json")
    assert status.returncode == 3  # the findings are open, and no beat runs in this stack
    assert "categories" in json.loads(status.stdout)["capture_missing"]
    assert "beat missing" in json.loads(status.stdout)["problems"]
    assert guard(stack, "install").returncode == 0
    wait_for(
        lambda: not any(kind == "capture_missing" for kind, _ in open_findings(db_url)),
        "guard install to resolve capture_missing",
        DEADLINE_S,
    )


def test_a_dropped_and_recreated_database_is_seen_after_the_listener_reconnects(
    stack: Stack, db_url: str, db_name: str, old_dump: Path
) -> None:
    started(db_url)
    recreate_and_restore(old_dump, db_name)
    wanted = {
        ("table_missing", "table:user_favorites"),
        ("column_missing", "column:ads.custom_fields"),
        ("column_missing", "column:categories.form_template"),
        ("capture_missing", "ads"),
        ("capture_missing", "ad_images"),
        ("capture_missing", "categories"),
        ("migrations_table_missing", "table:_prisma_migrations"),
    }
    wait_for(
        lambda: wanted <= open_findings(db_url), "drift and capture_missing in the new database", DEADLINE_S
    )
    with Database(db_url) as db:  # bookkeeping only: the app's triggers are install's to put back
        assert len(missing_capture(db, Settings(database_url=db_url))) == 3
    assert "capture_missing" in guard(stack, "findings", "--open").stdout


def test_capture_auto_install_puts_the_triggers_back_itself(
    db_url: str, db_name: str, live: Path, tmp_path: Path, old_dump: Path
) -> None:
    stack = make_stack(db_url, live, tmp_path, capture_auto_install="true")
    try:
        started(db_url)
        recreate_and_restore(old_dump, db_name)
        wait_for(
            lambda: ("table_missing", "table:user_favorites") in open_findings(db_url), "drift", DEADLINE_S
        )
        with Database(db_url) as db:
            assert missing_capture(db, Settings(database_url=db_url)) == []
        assert not any(kind == "capture_missing" for kind, _ in open_findings(db_url))
    finally:
        stack.close()
