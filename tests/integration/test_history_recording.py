"""History is recorded where the work finishes: a predeploy run (the real command), a backup, prune and
drill (the core, so the CLI and the Celery task both record), a sweep and its half of the daily snapshot;
recording never fails the work; history past HISTORY_DAYS is forgotten."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "acceptance"))
from cli import guard  # noqa: E402

from guard.backup import run_backup, run_drill, run_prune
from guard.config.settings import Settings
from guard.continuous.capture import VERSION, install, installed_version
from guard.continuous.process import run_maintenance, run_sweep
from guard.db.database import Database
from guard.errors import UnreachableError
from guard.history import daily
from guard.web import readings

pytestmark = pytest.mark.integration

DEAD_URL = "postgresql://postgres@127.0.0.1:1/nowhere"


def _events(db: Database) -> list[tuple[Any, ...]]:
    return db.fetch_all("SELECT kind, outcome, details FROM guard.history_events ORDER BY id")


@pytest.fixture
def settings(db_url: str, tmp_path: Path) -> Settings:
    uploads = tmp_path / "public"
    (uploads / "uploads" / "ads").mkdir(parents=True)
    (uploads / "uploads" / "ads" / "here.webp").write_bytes(b"RIFF-here")
    s = Settings(database_url=db_url, uploads_root=uploads, backup_dir=tmp_path / "backups", orphan_grace=0)
    with Database(db_url) as db:
        db.execute("INSERT INTO users (id, email) VALUES (1, 'a@example.com')")
        db.execute("INSERT INTO categories (id, name, slug) VALUES (1, 'Cars', 'cars')")
        db.execute(
            "INSERT INTO ads (id, title, slug, category_id, user_id) VALUES "
            "(1, 't', 'car-1', 1, 1), (2, 't', NULL, 1, 1), (3, 't', 'dup-3', 1, 1), "
            "(4, 't', 'dup-3', 1, 1), (5, 't', 'Bad_Slug', 1, 1)"
        )
        db.execute(
            "INSERT INTO ad_images (id, ad_id, filename, file_path) VALUES "
            "(1, 1, 'here', 'uploads/ads/here.webp'), (2, 1, 'gone', 'uploads/ads/gone.webp')"
        )
        install(db, s)
    return s


def test_a_predeploy_run_records_its_verdict_and_never_a_command_line(
    settings: Settings, db_url: str
) -> None:
    env = {"DATABASE_URL": db_url}
    failing = guard("predeploy", "--only", "integrity", "--run", "echo token-3f9a", env=env)
    assert failing.returncode == 1, failing.stderr
    with Database(db_url) as db:
        db.execute("UPDATE ads SET slug = 'car-' || id")
    passing = guard("predeploy", "--only", "integrity", env=env)
    assert passing.returncode == 0, passing.stderr
    with Database(db_url) as db:
        rows = _events(db)
    assert [(k, o) for k, o, _ in rows] == [("predeploy", "fail"), ("predeploy", "pass")]
    first = rows[0][2]
    assert first["checks"] == ["integrity"] and first["failed"] == ["integrity"]
    assert (first["commands"], first["commands_failed"], first["exit_code"]) == (1, 0, 1)
    assert "token-3f9a" not in str(rows)


def test_backup_prune_and_drill_record_their_outcome_from_the_core(settings: Settings, db_url: str) -> None:
    backup = run_backup(settings)
    run_prune(settings)
    run_drill(settings)
    with Database(db_url) as db:
        rows = _events(db)
    assert [(k, o) for k, o, _ in rows] == [("backup", "ok"), ("prune", "ok"), ("drill", "ok")]
    details = rows[0][2]
    assert details["id"] == backup.id and details["missing"] == 1 and details["purpose"] == "backup"
    assert rows[2][2]["backup"] == backup.id and rows[2][2]["restore_s"] > 0


def test_a_failing_backup_is_recorded_failed_through_the_task_path_too(
    settings: Settings, db_url: str
) -> None:
    Path(str(settings.backup_dir)).write_text("a file where the repository should be")
    outcome = run_maintenance(settings, "backup")  # what the Celery task calls
    assert outcome.failure is not None
    with Database(db_url) as db:
        [(kind, outcome_text, details)] = _events(db)
    assert (kind, outcome_text) == ("backup", "failed") and details["error"]


def test_recording_never_fails_the_work_and_says_so_on_stderr(settings: Settings, db_url: str) -> None:
    # The work finished; the database is gone by the time it is recorded.
    script = (
        "from guard.config.settings import Settings\n"
        "from guard.history.events import recorded\n"
        f"s = Settings(database_url={DEAD_URL!r})\n"
        "run = recorded('backup', lambda r: ('ok', {'id': r}))(lambda settings: 'b-1')\n"
        "print(run(s))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=False, timeout=60
    )
    assert done.returncode == 0 and done.stdout == "b-1\n"
    assert "guard: history: backup ok not recorded: cannot reach database 'nowhere'" in done.stderr
    # An install older than the history tables: the real command still backs up, and says what to do.
    with Database(db_url) as db:
        db.execute("DROP TABLE guard.history_events")
    env = {
        "DATABASE_URL": db_url,
        "UPLOADS_ROOT": str(settings.uploads_root),
        "BACKUP_DIR": str(settings.backup_dir),
    }
    backed = guard("backup", env=env)
    assert backed.returncode == 1, backed.stderr  # 1: a referenced file is missing, the backup is taken
    assert "backup " in backed.stdout
    assert "guard: history: backup not recorded: run 'guard install' to upgrade" in backed.stderr


def test_a_sweep_is_an_event_and_fills_todays_snapshot_until_beat_takes_it(
    settings: Settings, db_url: str
) -> None:
    run_sweep(settings, "integrity")
    run_sweep(settings, "files")
    with Database(db_url) as db:
        [today] = daily.snapshots(db, *_today(db))
        assert (today.ads, today.ads_unresolvable) == (5, 4)  # NULL, the two sharing dup-3, Bad_Slug
        assert (today.image_rows, today.image_rows_missing) == (2, 1)
        assert [(k, o, d["check"]) for k, o, d in _events(db)] == [
            ("sweep", "ok", "integrity"),
            ("sweep", "ok", "files"),
        ]
        db.execute("UPDATE ads SET slug = 'car-' || id")
    run_sweep(settings, "integrity")  # today has its ad half: a sweep leaves it
    with Database(db_url) as db:
        assert daily.snapshots(db, *_today(db))[0].ads_unresolvable == 4
    snapshot, _, _ = daily.upkeep(settings)  # beat's daily snapshot replaces it
    assert (snapshot.ads, snapshot.ads_unresolvable, snapshot.image_rows, snapshot.image_rows_missing) == (
        5,
        0,
        2,
        1,
    )


def test_a_failed_sweep_is_recorded_failed(settings: Settings, db_url: str) -> None:
    broken = settings.replace(uploads_root=settings.require_uploads_root() / "gone")
    with pytest.raises(UnreachableError):
        run_sweep(broken, "files")
    with Database(db_url) as db:
        [(kind, outcome, details)] = _events(db)
    assert (kind, outcome, details["check"]) == ("sweep", "failed", "files") and details["error"]


def test_history_past_history_days_is_forgotten(settings: Settings, db_url: str) -> None:
    with Database(db_url) as db:
        for age in (401, 400, 3):
            db.execute(
                "INSERT INTO guard.history_events (at, kind, outcome) "
                "VALUES (now() - make_interval(days => %s) - interval '1 minute', 'backup', 'ok')",
                (age,),
            )
            db.execute(
                "INSERT INTO guard.history_daily (day, ads) "
                "VALUES ((now() AT TIME ZONE 'UTC')::date - %s::integer, 1)",
                (age,),
            )
    _, events_gone, days_gone = daily.upkeep(settings.replace(history_days=400))
    assert (events_gone, days_gone) == (2, 1)  # events: older than 400 x 24 h; days: before today - 400
    with Database(db_url) as db:
        assert db.fetch_one("SELECT count(*) FROM guard.history_events") == (1,)
        assert db.fetch_one("SELECT count(*) FROM guard.history_daily") == (3,)  # 400, 3 days ago, today


def test_the_predeploy_counter_never_goes_down_when_history_is_forgotten(
    settings: Settings, db_url: str
) -> None:
    # Prometheus reads a fall in a counter as a restart from zero: forgetting a year-old fail must not
    # take it out of guard serve's predeploy_runs_total.
    with Database(db_url) as db:
        for age, verdict in ((500, "fail"), (500, "pass"), (2, "pass")):
            db.execute(
                "INSERT INTO guard.history_events (at, kind, outcome) "
                "VALUES (now() - make_interval(days => %s), 'predeploy', %s)",
                (age, verdict),
            )
        before = readings.read(db, settings, full=False).predeploy
    _, events_gone, _ = daily.upkeep(settings.replace(history_days=400))
    assert events_gone == 2
    with Database(db_url) as db:
        assert db.fetch_one("SELECT count(*) FROM guard.history_events") == (1,)
        after = readings.read(db, settings, full=False).predeploy
        daily.upkeep(settings.replace(history_days=400))  # forgetting nothing more changes nothing
        again = readings.read(db, settings, full=False).predeploy
    assert before == after == again == {"fail": 1, "pass": 2}
    with Database(db_url) as db:  # a version 8 schema (not upgraded yet) is still read: its kept events
        db.execute("DROP TABLE guard.history_forgotten")
        assert readings.read(db, settings, full=False).predeploy == {"pass": 1}


def _today(db: Database) -> tuple[Any, Any]:
    row = db.fetch_one("SELECT (now() AT TIME ZONE 'UTC')::date, (now() AT TIME ZONE 'UTC')::date + 1")
    assert row is not None
    return row[0], row[1]


def test_install_upgrades_a_version_6_install_with_the_history_tables(
    settings: Settings, db_url: str
) -> None:
    with Database(db_url) as db:
        db.execute("DROP TABLE guard.history_events, guard.history_daily")
        db.execute("DELETE FROM guard.version")
        db.execute("INSERT INTO guard.version (version) VALUES (6)")
        install(db, settings)
        assert installed_version(db) == VERSION
        assert db.fetch_one("SELECT count(*) FROM guard.history_events, guard.history_daily") == (0,)


def test_without_uploads_root_the_snapshot_keeps_its_ad_half_and_history_is_still_forgotten(
    settings: Settings, db_url: str
) -> None:
    # No UPLOADS_ROOT is a supported set-up: the daily task stores the ads' half, leaves the images'
    # half empty (no data, not zero) and still forgets old history.
    with Database(db_url) as db:
        db.execute(
            "INSERT INTO guard.history_events (at, kind, outcome) "
            "VALUES (now() - interval '500 days', 'backup', 'ok')"
        )
    snapshot, events_gone, _ = daily.upkeep(settings.replace(uploads_root=None))
    assert (snapshot.ads, snapshot.ads_unresolvable) == (5, 4)
    assert (snapshot.image_rows, snapshot.image_rows_missing) == (None, None)
    assert events_gone == 1


def test_a_prune_dry_run_is_not_recorded_as_a_prune(settings: Settings, db_url: str) -> None:
    run_backup(settings)
    run_prune(settings, 1, 0, 0, dry_run=True)
    with Database(db_url) as db:
        assert [kind for kind, _, _ in _events(db)] == ["backup"]
