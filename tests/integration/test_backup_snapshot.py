"""The snapshot a backup shares with pg_dump is not held idle in a transaction during the walk."""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from backup_support import SERVER_URL, World, make_world
from psycopg import sql

from guard.backup import run_backup
from guard.backup.builder import BackupResult
from guard.backup.faults import FAULT_ENV
from guard.backup.repo.repository import Repository
from guard.backup.verify import verify_backup

pytestmark = pytest.mark.integration

IDLE_TIMEOUT_S = 2.0


@pytest.fixture
def world(tmp_path: Path) -> Iterator[World]:
    """A fresh 40-ad world with nothing planted, and an empty backup folder."""
    yield from make_world(tmp_path, ads=40, bad_rate=0.0)


@pytest.fixture
def impatient_url(world: World) -> Iterator[str]:
    """A login role that may read everything, whose idle transactions the server ends after 2 s."""
    role = f"guard_test_idle_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(SERVER_URL, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE ROLE {} LOGIN").format(sql.Identifier(role)))
        conn.execute(
            sql.SQL("ALTER ROLE {} SET idle_in_transaction_session_timeout = {}").format(
                sql.Identifier(role), sql.Literal(f"{int(IDLE_TIMEOUT_S * 1000)}ms")
            )
        )
        conn.execute(sql.SQL("GRANT pg_read_all_data TO {}").format(sql.Identifier(role)))
    try:
        yield psycopg.conninfo.make_conninfo(world.url, user=role)
    finally:
        with psycopg.connect(SERVER_URL, autocommit=True) as conn:
            conn.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = %s", (role,))
            conn.execute(sql.SQL("DROP ROLE IF EXISTS {}").format(sql.Identifier(role)))


def wait_for(predicate: object, what: str, timeout: float = 60.0) -> None:
    """Poll until predicate() is truthy; fail naming what never happened."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if callable(predicate) and predicate():
            return
        time.sleep(0.05)
    pytest.fail(f"never happened: {what}")


def idle_sessions(url: str) -> int:
    """Count the backup's snapshot sessions (pg_dump's own aside) that sit idle in a transaction."""
    user = psycopg.conninfo.conninfo_to_dict(url)["user"]
    with psycopg.connect(SERVER_URL) as conn:
        row = conn.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE usename = %s AND application_name = 'guard-backup'"
            " AND state LIKE 'idle in transaction%%'",
            (user,),
        ).fetchone()
    return int(row[0]) if row else 0


def test_a_walk_longer_than_the_idle_timeout_gives_a_whole_consistent_backup(
    world: World, impatient_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    release = tmp_path / "release-walk"
    monkeypatch.setenv(FAULT_ENV, f"pause:walk:{release}")
    with psycopg.connect(world.url) as conn:
        before = conn.execute("SELECT count(*) FROM ad_images WHERE file_path IS NOT NULL").fetchone()
    outcome: dict[str, object] = {}

    def backup() -> None:
        try:
            outcome["result"] = run_backup(world.settings.replace(database_url=impatient_url))
        except BaseException as exc:  # handed to the test thread, which fails with it
            outcome["error"] = exc

    runner = threading.Thread(target=backup)
    runner.start()
    try:
        wait_for(release.with_name(f"{release.name}.reached").exists, "the backup reached its walk")
        paused_at = time.monotonic()
        # A row added after the snapshot: a consistent backup neither dumps it nor misses its file.
        with psycopg.connect(world.url) as conn:
            conn.execute(
                "INSERT INTO ad_images (ad_id, filename, file_path)"
                " SELECT ad_id, 'late.webp', 'uploads/ads/after-snapshot.webp' FROM ad_images LIMIT 1"
            )
        # The walk outlasts the idle timeout: a snapshot still held idle would be ended by now.
        wait_for(lambda: time.monotonic() - paused_at > IDLE_TIMEOUT_S + 1.5, "the idle timeout passed")
        assert idle_sessions(impatient_url) == 0, "the snapshot is held idle in a transaction during the walk"
    finally:
        release.touch()
        runner.join(timeout=120)
    assert "error" not in outcome, f"backup failed: {outcome.get('error')}"
    result = outcome["result"]
    assert isinstance(result, BackupResult)
    assert result.ok
    assert before is not None and result.manifest.counts["rows_with_paths"] == before[0]
    repo = Repository.open(world.settings.backup_dir or Path(), create=False)
    assert verify_backup(repo, result.id, read_data=True).ok


def test_a_statement_pg_dump_runs_before_its_import_is_not_taken_for_the_import(world: World) -> None:
    """pg_dump's `SELECT pg_is_in_recovery()` holds an xmin like ours before it imports the snapshot.

    Taken for the import, it let the backup end its transaction too early, and pg_dump's SET
    TRANSACTION SNAPSHOT then failed with "invalid snapshot identifier" (seen under load).
    """
    from guard.backup.db_snapshot import open_snapshot
    from guard.db.database import load_query

    for _attempt in range(20):  # another session allocating an xid meanwhile moves the xmin: try again
        with open_snapshot(world.url) as snapshot:
            ours = snapshot.db.fetch_one(
                "SELECT backend_xmin FROM pg_stat_activity WHERE pid = pg_backend_pid()"
            )
            with psycopg.connect(world.url, autocommit=True, application_name=snapshot._dump_app) as pre:
                running = threading.Thread(
                    target=pre.execute, args=("SELECT pg_is_in_recovery(), pg_sleep(1)",)
                )
                running.start()
                deadline = time.monotonic() + 5
                row = None
                while time.monotonic() < deadline:
                    snapshot.db.execute("SELECT pg_stat_clear_snapshot()")
                    row = snapshot.db.fetch_one(
                        "SELECT backend_xmin FROM pg_stat_activity"
                        " WHERE application_name = %s AND state = 'active'",
                        (snapshot._dump_app,),
                    )
                    if row is not None and row[0] is not None:
                        break
                    time.sleep(0.01)
                judged = snapshot.db.fetch_one(load_query("backup_snapshot_imported"), (snapshot._dump_app,))
                running.join()
        if row is not None and ours is not None and row[0] == ours[0]:
            assert judged == (False,), "a pre-import statement was taken for the snapshot's import"
            return
    pytest.fail("no pre-import statement with our xmin could be staged")
