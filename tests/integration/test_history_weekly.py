"""The five weekly numbers against a made-up history: known events, findings and daily snapshots in,
exact ratios, ISO week boundaries (Monday 00:00 UTC), targets at their edges and no-data weeks out."""

from __future__ import annotations

import json
import sys
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "acceptance"))
from cli import guard  # noqa: E402

from guard.config.settings import Settings
from guard.continuous.capture import install
from guard.db.database import Database
from guard.history.accesslog import AccessTally
from guard.history.weekly import (
    AD_404,
    BACKUPS,
    DRIFT,
    MET,
    MISSED,
    MISSING_IMAGES,
    NO_DATA,
    PREDEPLOY,
    expects_daily_backups,
    weekly_numbers,
)

pytestmark = pytest.mark.integration

W46, W47, W48 = (datetime(2026, 11, d, tzinfo=UTC) for d in (9, 16, 23))
NOW = datetime(2026, 11, 25, 12, tzinfo=UTC)  # a Wednesday in 2026-W48
TICK = timedelta(microseconds=1)


@pytest.fixture
def db(db_url: str) -> Database:
    with Database(db_url) as database:
        install(database, Settings(database_url=db_url))
        yield database


def event(db: Database, at: datetime, kind: str, outcome: str, details: str = "{}", times: int = 1) -> None:
    for _ in range(times):
        db.execute(
            "INSERT INTO guard.history_events (at, kind, outcome, details) VALUES (%s, %s, %s, %s::jsonb)",
            (at, kind, outcome, details),
        )


def day(
    db: Database, when: date, ads: int | None, bad: int | None, images: int | None, missing: int | None
) -> None:
    db.execute(
        "INSERT INTO guard.history_daily VALUES (%s, %s, %s, %s, %s, now())",
        (when, ads, bad, images, missing),
    )


def finding(db: Database, check: str, subject: str, first_seen: datetime) -> None:
    db.execute(
        "INSERT INTO guard.findings (check_name, kind, subject, message, first_seen, last_seen, resolved_at) "
        "VALUES (%s, 'column_missing', %s, 'm', %s, %s, %s)",
        (check, subject, first_seen, first_seen, first_seen + timedelta(hours=1)),
    )


def made_up_history(db: Database) -> None:
    # backups: W47 seven ok, the first at its start, the last a microsecond before W48; W48 2 ok 1 failed
    event(db, W47, "backup", "ok")
    event(db, W47 + timedelta(days=1), "backup", "ok", times=5)
    event(db, W48 - TICK, "backup", "ok")
    event(db, W48, "backup", "ok")
    event(db, W48 + timedelta(days=1), "backup", "ok")
    event(db, W48 + timedelta(days=2), "backup", "failed", '{"error": "OSError: disk full"}')
    event(db, W48 + timedelta(days=1), "prune", "failed")  # not a backup
    # predeploy: W47 18 pass, 1 warn, 1 fail = 95%, which is not > 95%; W48 20 pass
    event(db, W47 + timedelta(days=2), "predeploy", "pass", '{"checks": ["integrity"]}', times=18)
    event(db, W47 + timedelta(days=2), "predeploy", "warn", '{"checks": ["integrity"]}')
    event(db, W47 + timedelta(days=3), "predeploy", "fail", '{"checks": ["integrity"]}')
    event(db, W48 + timedelta(hours=3), "predeploy", "pass", '{"checks": ["migrations", "drift"]}', times=20)
    # drift: W46 only a failed sweep (nobody looked); W47 a clean sweep; W48 one drift finding opened
    event(db, W46 + timedelta(days=3), "sweep", "failed", '{"check": "drift"}')
    event(db, W47 + timedelta(days=3), "sweep", "ok", '{"check": "drift"}')
    event(db, W47 + timedelta(days=3), "sweep", "ok", '{"check": "integrity"}')
    finding(db, "drift", "column:categories.form_template", W48 + timedelta(days=1))
    finding(db, "integrity", "ads:1", W46 + timedelta(days=1))  # not drift
    # daily snapshots: W45's Sunday is outside; W46 only its Sunday; W47 every day; W48 two half days
    day(db, date(2026, 11, 8), 100, 100, 100, 100)
    day(db, date(2026, 11, 15), 100, 1, None, None)
    for n in range(7):
        day(db, date(2026, 11, 16) + timedelta(days=n), 1000, 7 if n == 6 else 0, 2000, 9)
    day(db, date(2026, 11, 23), 1000, 0, None, None)
    day(db, date(2026, 11, 24), None, None, 2000, 10)


def test_each_number_is_its_exact_ratio_per_iso_week(db: Database) -> None:
    made_up_history(db)
    weeks = weekly_numbers(db, 3, now=NOW)
    assert [w.label for w in weeks] == ["2026-W46", "2026-W47", "2026-W48"]
    assert [w.complete for w in weeks] == [True, True, False]
    w46, w47, w48 = weeks

    def facts(week: object, name: str) -> tuple[object, ...]:
        n = week.number(name)  # type: ignore[attr-defined]
        return (n.numerator, n.denominator, n.status)

    assert facts(w46, DRIFT) == (None, None, NO_DATA)
    assert facts(w47, DRIFT) == (0, None, MET)
    assert facts(w48, DRIFT) == (1, None, MISSED)
    assert facts(w46, AD_404) == (1, 100, MISSED)
    assert facts(w47, AD_404) == (7, 7000, MISSED)  # exactly 0.1%: the target is under 0.1%
    assert facts(w48, AD_404) == (0, 1000, MET)  # the half-taken day without ads is left out
    assert w48.number(AD_404).method == "slugs"
    assert facts(w46, MISSING_IMAGES) == (None, 0, NO_DATA)
    assert facts(w47, MISSING_IMAGES) == (63, 14000, MET)  # 0.45%
    assert facts(w48, MISSING_IMAGES) == (10, 2000, MISSED)  # exactly 0.5%
    assert facts(w46, BACKUPS) == (None, 0, NO_DATA)
    assert facts(w47, BACKUPS) == (7, 7, MET)
    assert facts(w48, BACKUPS) == (2, 3, MISSED)
    assert facts(w46, PREDEPLOY) == (None, 0, NO_DATA)
    assert facts(w47, PREDEPLOY) == (19, 20, MISSED)  # 95% is not over 95%
    assert facts(w48, PREDEPLOY) == (20, 20, MET)
    assert w48.misses == [DRIFT, MISSING_IMAGES, BACKUPS]
    assert w48.number(BACKUPS).value == pytest.approx(2 / 3)
    assert w48.to_json()["numbers"][BACKUPS]["status"] == MISSED


def test_with_an_access_log_the_404s_are_real_requests_and_say_so(db: Database) -> None:
    made_up_history(db)
    access = AccessTally(weeks={W48.date(): (2000, 1), date(2026, 11, 2): (10, 10)})
    w46, w47, w48 = weekly_numbers(db, 3, now=NOW, access=access)
    assert (w48.number(AD_404).numerator, w48.number(AD_404).denominator) == (1, 2000)
    assert w48.number(AD_404).status == MET and w48.number(AD_404).method == "access_log"
    assert w47.number(AD_404).status == NO_DATA and w47.number(AD_404).method == "access_log"


def test_an_empty_history_is_no_data_everywhere_never_a_pass(db: Database) -> None:
    weeks = weekly_numbers(db, 2, now=NOW)
    assert {n.status for w in weeks for n in w.numbers} == {NO_DATA}
    assert weeks[-1].misses == []


def test_the_command_exits_1_when_this_week_misses_a_target(
    db: Database, db_url: str, tmp_path: Path
) -> None:
    env = {"DATABASE_URL": db_url}
    done = guard("report", env=env)
    assert done.returncode == 0, done.stderr
    assert "no data" in done.stdout and "measured from the slugs" in done.stdout
    event(db, datetime.now(UTC), "backup", "ok")
    event(db, datetime.now(UTC), "backup", "failed")
    html = tmp_path / "weekly.html"
    done = guard("report", "--weeks", "2", "--json", "--html", str(html), env=env)
    assert done.returncode == 1, done.stderr
    report = json.loads(done.stdout)
    assert report["ok"] is False and report["this_week"]["misses"] == [BACKUPS]
    assert report["ad_404_method"] == "slugs" and len(report["weeks"]) == 2
    assert report["weeks"][-1]["numbers"][BACKUPS] | {"value": None} == {
        "label": "backup success rate",
        "target": "100%",
        "value": None,
        "numerator": 1,
        "denominator": 2,
        "status": MISSED,
    }
    assert html.read_text(encoding="utf-8").startswith("<!DOCTYPE html>")
    table = guard("report", env=env)
    assert table.returncode == 1 and "50% MISSED" in table.stdout
    assert "misses backup success rate" in table.stdout


def test_bad_input_is_one_line_and_exit_2(
    db: Database, db_url: str, tmp_path: Path, template_db: str
) -> None:
    env = {"DATABASE_URL": db_url}
    for args in (["--weeks", "0"], ["--weeks", "many"], ["--ad-route", "("]):
        done = guard("report", *args, env=env)
        assert done.returncode == 2, (args, done.stderr)
    done = guard("report", "--access-log", str(tmp_path / "nope.log"), env=env)
    assert done.returncode == 2 and done.stderr.count("\n") == 1 and "nope.log" in done.stderr
    done = guard("report", "--access-log", str(tmp_path / "rotated*"), env=env)
    assert done.returncode == 2 and "no file matches" in done.stderr
    from conftest import url_for

    done = guard("report", env={"DATABASE_URL": url_for(template_db)})  # guard never installed there
    assert done.returncode == 2 and "guard install" in done.stderr


def test_the_command_reads_access_logs_and_says_which_method_it_used(
    db_url: str, db: Database, tmp_path: Path
) -> None:
    now = datetime.now(UTC)
    stamp = now.strftime("%d/%b/%Y:%H:%M:%S +0000")
    lines = [
        f'1.2.3.4 - - [{stamp}] "GET /ad/a-{n} HTTP/1.1" {404 if n == 0 else 200} 5 "-" "ua"\n'
        for n in range(1500)
    ]
    (tmp_path / "access.log").write_text("".join(lines) + "garbage\n")
    done = guard(
        "report",
        "--weeks",
        "1",
        "--json",
        "--access-log",
        str(tmp_path / "access.log*"),
        env={"DATABASE_URL": db_url},
    )
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert report["ad_404_method"] == "access_log"
    assert report["access_log"] | {"files": []} == {
        "files": [],
        "lines": 1501,
        "malformed": 1,
        "ad_requests": 1500,
    }
    number = report["weeks"][0]["numbers"][AD_404]
    assert (number["numerator"], number["denominator"], number["status"], number["method"]) == (
        1,
        1500,
        MET,
        "access_log",
    )


def test_a_drift_left_unfixed_is_an_incident_every_week_it_stays_open(db: Database) -> None:
    # Opened on W46's Tuesday, resolved on W48's Monday: open during all three weeks, never a quiet week.
    db.execute(
        "INSERT INTO guard.findings (check_name, kind, subject, message, first_seen, last_seen, resolved_at) "
        "VALUES ('drift', 'column_missing', 'column:ads.custom_fields', 'm', %s, %s, %s)",
        (W46 + timedelta(days=1), W48, W48 + timedelta(hours=2)),
    )
    weeks = weekly_numbers(db, 4, now=NOW + timedelta(days=7))
    assert [(w.label, w.number(DRIFT).numerator) for w in weeks] == [
        ("2026-W46", 1),
        ("2026-W47", 1),
        ("2026-W48", 1),
        ("2026-W49", None),
    ]


def test_with_daily_backups_a_day_without_any_backup_is_a_failed_one(db: Database) -> None:
    # W47's backups ran Monday, Tuesday and Sunday only: Wednesday to Saturday left nothing, which is
    # four backups that did not happen, not a 100% week. W48 (now Wednesday) had Monday and Tuesday.
    made_up_history(db)
    w46, w47, w48 = weekly_numbers(db, 3, now=NOW, daily_backups=True)
    assert (w47.number(BACKUPS).numerator, w47.number(BACKUPS).denominator) == (7, 11)
    assert w47.number(BACKUPS).status == MISSED
    assert (w48.number(BACKUPS).numerator, w48.number(BACKUPS).denominator) == (2, 3)  # today not yet due
    assert w46.number(BACKUPS).status == NO_DATA  # before the first backup ever: nothing was expected


def test_daily_backups_are_expected_only_with_a_backup_dir_and_a_daily_cron(tmp_path: Path) -> None:
    assert expects_daily_backups(Settings(backup_dir=tmp_path))
    assert not expects_daily_backups(Settings(backup_dir=tmp_path, backup_cron="0 2 * * 0"))
    assert not expects_daily_backups(Settings())
