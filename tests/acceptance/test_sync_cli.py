"""The real `guard install`, `guard findings` and `guard uninstall` commands."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from guard.config.settings import Settings
from guard.continuous import liveness
from guard.continuous.process import process_rows
from guard.db.database import Database

pytestmark = pytest.mark.acceptance
GUARD = [str(Path(sys.executable).parent / "guard")]


def guard(db_url: str, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    full = {**os.environ, "DATABASE_URL": db_url, **(env or {})}
    full.pop("GUARD_CONFIG", None)
    return subprocess.run([*GUARD, *args], env=full, capture_output=True, text=True, timeout=60)


def test_install_findings_and_uninstall(db_url: str) -> None:
    assert guard(db_url, "findings").returncode == 2  # not installed yet: one line, exit 2
    done = guard(db_url, "install", "--json")
    assert done.returncode == 0 and json.loads(done.stdout)["tables"] == ["ad_images", "ads", "categories"]
    assert guard(db_url, "install").returncode == 0
    with Database(db_url) as db:
        db.execute("INSERT INTO users (id, email) VALUES (1, 'a@example.com')")
        db.execute("INSERT INTO categories (id, name, slug) VALUES (1, 'Cars', 'cars')")
        db.execute("INSERT INTO ads (id, title, slug, category_id, user_id) VALUES (1, 't', 'Bad', 1, 1)")
    process_rows(Settings(database_url=db_url), "ads", ["1"])
    listed = guard(db_url, "findings", "--open", "--json")
    assert listed.returncode == 1
    document = json.loads(listed.stdout)
    assert document["open"] == 1 and document["findings"][0]["subject"] == "ads:1"
    human = guard(db_url, "findings")
    assert "ads.slug.format" in human.stdout and "1 open, 0 resolved" in human.stdout
    gone = guard(db_url, "uninstall")
    assert gone.returncode == 0 and "ad_images, ads, categories" in gone.stdout


def test_status_reports_the_outbox_the_queues_and_open_findings(db_url: str) -> None:
    prefix = {"BROKER_PREFIX": f"guardtest-status-{os.getpid()}:", "HEARTBEAT_STALE_SECONDS": "3600"}
    assert guard(db_url, "status", env=prefix).returncode == 2  # not installed: one line, exit 2
    assert guard(db_url, "install").returncode == 0
    nothing_runs = guard(db_url, "status", "--json", env=prefix)
    assert nothing_runs.returncode == 3  # installed, but no process of guard's has a heartbeat
    missing = ["listener missing", "worker missing", "beat missing"]
    assert json.loads(nothing_runs.stdout)["problems"] == missing
    with Database(db_url) as db:  # an install older than this guard: one line, run install
        db.execute("INSERT INTO guard.version (version) VALUES (6)")
        db.execute("DELETE FROM guard.version WHERE version > 6")
    older = guard(db_url, "status", env=prefix)
    assert older.returncode == 2 and "version 6" in older.stderr and "guard install" in older.stderr
    assert older.stderr.count("\n") == 1
    assert guard(db_url, "install", "--no-sweep").returncode == 0
    with Database(db_url) as db:  # as the running listener, worker and beat record them
        for process in ("listener", "worker", "beat"):
            liveness.record(db, process, "here", "localhost", os.getpid())
    clean = guard(db_url, "status", "--json", env=prefix)
    assert clean.returncode == 0, clean.stderr
    assert json.loads(clean.stdout)["broker"] == {
        "reachable": True,
        "waiting": {"events": 0, "sweeps": 0, "alerts": 0},
        "unacknowledged": 0,
    }
    with Database(db_url) as db:
        db.execute("INSERT INTO users (id, email) VALUES (1, 'a@example.com')")
        db.execute("INSERT INTO categories (id, name, slug) VALUES (1, 'Cars', 'cars')")
        db.execute("INSERT INTO ads (id, title, slug, category_id, user_id) VALUES (1, 't', 'Bad', 1, 1)")
    waiting = json.loads(guard(db_url, "status", "--json", env=prefix).stdout)
    assert waiting["outbox_waiting"] == 2  # the category and the ad, captured, no listener running
    process_rows(Settings(database_url=db_url), "ads", ["1"])
    found = guard(db_url, "status", env=prefix)
    assert found.returncode == 1
    assert "findings   1 open (integrity 1)" in found.stdout
    down = guard(db_url, "status", env={**prefix, "REDIS_URL": "redis://:pw-123@127.0.0.1:1/0"})
    assert down.returncode == 3
    assert "queues     unknown (cannot reach Redis at 127.0.0.1:1" in down.stdout
    assert "pw-123" not in down.stdout + down.stderr
    down_json = guard(db_url, "status", "--json", env={**prefix, "REDIS_URL": "redis://127.0.0.1:1/0"})
    report = json.loads(down_json.stdout)
    assert down_json.returncode == 3
    assert (report["healthy"], "broker unreachable" in report["problems"]) == (False, True)


def test_findings_print_whole_subjects_first_seen_resolved_and_true_counts(db_url: str) -> None:
    assert guard(db_url, "install").returncode == 0
    subjects = [f"trigger:categories.guard_capture_{n}_{'x' * 30}" for n in ("insert", "update", "delete")]
    with Database(db_url) as db:
        for subject in subjects[:2]:
            db.execute(
                "INSERT INTO guard.findings (check_name, kind, subject, message, first_seen) "
                "VALUES ('drift', 'extra_trigger', %s, 'not in the migrations', '2026-01-02 03:04:05+00')",
                [subject],
            )
        for n in range(4):
            db.execute(
                "INSERT INTO guard.findings (check_name, kind, subject, message, resolved_at) "
                "VALUES ('integrity', 'ads.slug.format', %s, 'bad slug', '2026-02-03 04:05:06+00')",
                [f"ads:{n}"],
            )
    everything = guard(db_url, "findings", env={"TZ": "UTC", "PGTZ": "UTC"}).stdout
    header = everything.splitlines()[0].split()
    assert "FIRST" in header and "RESOLVED" in header, header
    for subject in subjects[:2]:
        assert subject in everything
    assert "2026-01-02 03:04:05" in everything and "2026-02-03 04:05:06" in everything
    assert everything.splitlines()[-1] == "2 open, 4 resolved"
    only_open = guard(db_url, "findings", "--open").stdout
    assert "0 resolved" not in only_open and "4 resolved" not in only_open
    assert only_open.splitlines()[-1].startswith("2 open")
