"""Beat's weekly report reaches Slack through the one Slack seam (a real HTTP server stands in for
Slack): last week's five numbers against their targets; the webhook never appears in an error."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from guard.alerts import TransportError
from guard.config.settings import Settings
from guard.continuous.capture import install
from guard.db.database import Database
from guard.errors import ConfigError
from guard.history.weekly import week_start
from guard.history.weekly_post import post_weekly
from workers.schedule import beat_schedule, cron

pytestmark = pytest.mark.integration

SECRET = "T0000/B0000/weekly-not-for-logs-77c1"


class FakeSlack:
    """An incoming webhook answering every POST with `status`, keeping the texts it accepted."""

    def __init__(self, status: int = 200) -> None:
        self.messages: list[str] = []
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802
                body = self.rfile.read(int(self.headers["Content-Length"]))
                if status == 200:
                    fake.messages.append(json.loads(body)["text"])
                self.send_response(status)
                self.end_headers()
                self.wfile.write(b"ok" if status == 200 else f"no such hook {SECRET}".encode())

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/services/{SECRET}"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def slack() -> Iterator[FakeSlack]:
    fake = FakeSlack()
    yield fake
    fake.close()


@pytest.fixture
def installed(db_url: str) -> Iterator[Database]:
    with Database(db_url) as db:
        install(db, Settings(database_url=db_url))
        yield db


def test_the_weekly_post_says_last_weeks_numbers_against_their_targets(
    installed: Database, db_url: str, slack: FakeSlack
) -> None:
    last_week = week_start(datetime.now(UTC)) - timedelta(days=7)
    for outcome in ("ok", "ok", "ok", "failed"):
        installed.execute(
            "INSERT INTO guard.history_events (at, kind, outcome) VALUES (%s, 'backup', %s)",
            (last_week + timedelta(days=2), outcome),
        )
    installed.execute(
        "INSERT INTO guard.history_daily VALUES (%s, 2000, 1, 4000, 4, now())", (last_week.date(),)
    )
    text = post_weekly(Settings(database_url=db_url, slack_webhook_url=slack.url))
    assert slack.messages == [text]
    label = f"{last_week.isocalendar()[0]}-W{last_week.isocalendar()[1]:02d}"
    lines = text.splitlines()
    assert lines[0].startswith(f"incident-guard weekly report, {label} ") and "1 target missed" in lines[0]
    assert ":red_circle: backup success rate: 75% (target 100%;" in text
    assert ":white_check_mark: 404s on ad pages: 0.05% (target < 0.1%;" in text
    assert ":white_check_mark: missing image ratio: 0.1% (target < 0.5%;" in text
    assert ":grey_question: pre-deploy pass rate: no data (target > 95%;" in text
    assert ":grey_question: schema drift incidents: no data" in text
    assert SECRET not in text


def test_an_access_log_that_cannot_be_read_still_posts_the_week_from_slugs_and_says_so(
    installed: Database, db_url: str, slack: FakeSlack, tmp_path: Path
) -> None:
    settings = Settings(
        database_url=db_url, slack_webhook_url=slack.url, access_log=str(tmp_path / "rotated-away*.log")
    )
    text = post_weekly(settings)
    assert slack.messages == [text]
    assert "ACCESS_LOG not read" in text and "404s measured from slugs instead" in text


def test_a_refusing_slack_is_an_error_without_the_webhook(installed: Database, db_url: str) -> None:
    refusing = FakeSlack(status=404)
    try:
        with pytest.raises(TransportError) as caught:
            post_weekly(Settings(database_url=db_url, slack_webhook_url=refusing.url))
    finally:
        refusing.close()
    assert "HTTP 404" in str(caught.value) and SECRET not in str(caught.value)
    with pytest.raises(ConfigError, match="SLACK_WEBHOOK_URL"):
        post_weekly(Settings(database_url=db_url))


def test_beat_posts_weekly_only_with_a_webhook_and_snapshots_daily(tmp_path: Path) -> None:
    plain = beat_schedule(Settings())
    assert "weekly-report" not in plain
    assert plain["history-snapshot"]["schedule"] == cron("45 23 * * *", "snapshot_cron")
    posting = beat_schedule(Settings(slack_webhook_url="https://hooks.example/x", report_cron="0 9 * * 2"))
    assert posting["weekly-report"]["task"] == "guard.weekly_report"
    assert posting["weekly-report"]["schedule"] == cron("0 9 * * 2", "report_cron")
    assert beat_schedule(Settings(slack_webhook_url="https://hooks.example/x"))["weekly-report"][
        "schedule"
    ] == cron("0 8 * * 1", "report_cron")
    with pytest.raises(ConfigError, match="REPORT_CRON"):
        beat_schedule(Settings(slack_webhook_url="https://hooks.example/x", report_cron="mondays"))
