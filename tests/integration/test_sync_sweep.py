"""`guard sweep`: the same tasks beat sends, run by real Celery workers over a real Redis, or --here."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from sync_stack import BIN, ROOT, Stack

from guard.config.settings import Settings
from guard.continuous.capture import install
from guard.db.database import Database

pytestmark = pytest.mark.integration


@pytest.fixture
def stack(db_url: str, tmp_path: Path) -> Iterator[Stack]:
    uploads = tmp_path / "public"
    (uploads / "uploads" / "ads").mkdir(parents=True)
    with Database(db_url) as db:
        db.execute("INSERT INTO users (id, email) VALUES (1, 'a@example.com')")
        db.execute("INSERT INTO categories (id, name, slug) VALUES (1, 'Cars', 'cars')")
        install(db, Settings(database_url=db_url))
        # written with the triggers off, so only a sweep can see it (no event check runs)
        db.execute("SET session_replication_role = replica")
        db.execute("INSERT INTO ads (id, title, slug, category_id, user_id) VALUES (1, 't', 'Bad', 1, 1)")
    s = Stack(db_url, uploads, tmp_path)
    try:
        yield s
    finally:
        s.close()


def sweep(stack: Stack, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in stack.env.items() if k != "MIGRATIONS_DIR"}
    return subprocess.run(
        [str(BIN / "guard"), "sweep", *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120
    )


def open_kinds(db_url: str) -> list[str]:
    with Database(db_url) as db:
        rows = db.fetch_all("SELECT kind FROM guard.findings WHERE resolved_at IS NULL ORDER BY kind")
    return [str(r[0]) for r in rows]


def test_a_sweep_runs_on_the_workers_and_prints_what_is_open(stack: Stack, db_url: str) -> None:
    stack.worker(loglevel="INFO")
    done = sweep(stack, "integrity", "--json")
    assert done.returncode == 1, done.stderr
    document = json.loads(done.stdout)
    assert document["ran"] == "workers" and document["sweeps"] == [
        {"check": "integrity", "open": 1, "acknowledged": 0}
    ]
    assert open_kinds(db_url) == ["ads.slug.format"]
    assert "guard.sweep" in stack.log("worker")  # a worker ran it, not this process
    with Database(db_url) as db:
        db.execute("UPDATE ads SET slug = 'fine-1' WHERE id = 1")
    everything = sweep(stack)
    assert everything.returncode == 0, everything.stderr
    assert "sweep integrity: done by the workers; 0 open" in everything.stdout
    assert "skipped: migrations, drift (MIGRATIONS_DIR is not set)" in everything.stdout


def test_without_a_worker_the_sweep_gives_up_after_its_timeout(stack: Stack) -> None:
    done = sweep(stack, "files", "--timeout", "1")
    assert done.returncode == 3
    assert done.stderr.count("\n") == 1 and "did not finish sweep files within 1 s" in done.stderr


def test_here_runs_in_process_without_a_broker(stack: Stack, db_url: str) -> None:
    stack.env["REDIS_URL"] = "redis://127.0.0.1:1/0"  # nothing listens there: no broker is used
    done = sweep(stack, "integrity", "--here")
    assert done.returncode == 1, done.stderr
    assert "sweep integrity: done in this process; opened 1, resolved 0; 1 open" in done.stdout
    assert open_kinds(db_url) == ["ads.slug.format"]
