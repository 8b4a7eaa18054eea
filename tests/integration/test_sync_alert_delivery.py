"""Alerts from guard.notifications: Slack digests at most once per interval; a dead channel keeps
its notices and never blocks or loses a check."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import sentry_sdk
from sync_stack import FakeSentry, free_port

from guard.alerts import Notice
from guard.alerts.delivery import deliver
from guard.alerts.sentry import SentryTransport, init_sentry
from guard.alerts.slack import SlackTransport, digest
from guard.config.settings import Settings
from guard.continuous.capture import install
from guard.continuous.process import process_rows
from guard.db.database import Database

pytestmark = pytest.mark.integration


class FakeSlack:
    def __init__(self) -> None:
        self.messages: list[str] = []
        messages = self.messages

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802
                body = self.rfile.read(int(self.headers["Content-Length"]))
                messages.append(json.loads(body)["text"])
                self.send_response(200)
                self.end_headers()
                self.wfile.write(b"ok")

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"


@pytest.fixture
def slack() -> Iterator[FakeSlack]:
    fake = FakeSlack()
    yield fake
    fake.server.shutdown()
    fake.server.server_close()


@pytest.fixture
def settings(db_url: str, tmp_path: Path) -> Settings:
    s = Settings(database_url=db_url, uploads_root=tmp_path)
    with Database(db_url) as db:
        db.execute("INSERT INTO users (id, email) VALUES (1, 'a@example.com')")
        db.execute("INSERT INTO categories (id, name, slug) VALUES (1, 'Cars', 'cars')")
        db.execute(
            "INSERT INTO ads (id, title, slug, category_id, user_id) VALUES "
            "(1, 't', 'Bad 1', 1, 1), (2, 't', 'Bad 2', 1, 1)"
        )
        install(db, s)
    return s


def test_slack_gets_one_digest_per_interval_with_opened_and_resolved(
    settings: Settings, slack: FakeSlack
) -> None:
    process_rows(settings, "ads", ["1", "2"])
    channel = SlackTransport(slack.url, min_interval=60)
    with Database(settings.require_database_url()) as db:
        assert deliver(db, [channel]) == {"slack": 2}
        db.execute("UPDATE ads SET slug = 'ok-1' WHERE id = 1")
        process_rows(settings, "ads", ["1"])
        assert deliver(db, [channel]) == {"slack": 0}  # within the minute: held back
        db.execute("UPDATE guard.alert_state SET sent_at = now() - interval '61 seconds'")
        assert deliver(db, [channel]) == {"slack": 1}
    assert len(slack.messages) == 2
    assert slack.messages[0].startswith("incident-guard: 2 opened, 0 resolved")
    assert slack.messages[1].startswith("incident-guard: 0 opened, 1 resolved")


def test_unreachable_slack_keeps_notices_and_checks_go_on(settings: Settings, slack: FakeSlack) -> None:
    dead = SlackTransport(f"http://127.0.0.1:{free_port()}/hook")
    outcome = process_rows(settings, "ads", ["1", "2"])
    assert outcome.changes.opened == 2  # the check itself never touches the network
    with Database(settings.require_database_url()) as db:
        assert deliver(db, [dead]) == {"slack": 0}
        unsent = db.fetch_one("SELECT count(*) FROM guard.notifications WHERE slack_sent_at IS NULL")
        assert unsent == (2,)
        assert deliver(db, [SlackTransport(slack.url)]) == {"slack": 2}


@pytest.fixture
def fake_sentry() -> Iterator[FakeSentry]:
    fake = FakeSentry()
    yield fake
    fake.close()
    sentry_sdk.init()  # no DSN: later tests start from a quiet SDK


def _sentry_unsent(settings: Settings) -> object:
    with Database(settings.require_database_url()) as db:
        return db.fetch_one("SELECT count(*) FROM guard.notifications WHERE sentry_sent_at IS NULL")


def test_unreachable_sentry_keeps_notices_until_it_takes_them(
    settings: Settings, fake_sentry: FakeSentry
) -> None:
    process_rows(settings, "ads", ["1", "2"])
    init_sentry(f"http://public@127.0.0.1:{free_port()}/1")
    with Database(settings.require_database_url()) as db:
        assert deliver(db, [SentryTransport()]) == {"sentry": 0}
    assert _sentry_unsent(settings) == (2,)
    init_sentry(fake_sentry.dsn)
    with Database(settings.require_database_url()) as db:
        assert deliver(db, [SentryTransport()]) == {"sentry": 2}
    assert _sentry_unsent(settings) == (0,) and len(fake_sentry.events) == 2


def test_slack_digest_hides_connection_strings_like_sentry() -> None:
    notice = Notice(
        1,
        "opened",
        1,
        "backup",
        "backup_failed",
        "backup",
        "pg_dump: could not reach postgresql://db.internal/app",
        None,
        datetime.now(UTC),
    )
    assert "db.internal" not in digest([notice]) and "<connection string>" in digest([notice])
