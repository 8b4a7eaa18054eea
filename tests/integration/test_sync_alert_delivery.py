"""Alerts from guard.notifications: Slack digests at most once per interval; a dead channel keeps
its notices and never blocks or loses a check."""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import sentry_sdk
from sync_stack import FakeSentry, free_port

from guard.alerts import Notice, TransportError
from guard.alerts.delivery import deliver
from guard.alerts.sentry import SentryTransport, init_sentry
from guard.alerts.slack import SlackTransport, digest
from guard.config.settings import Settings
from guard.continuous.capture import install
from guard.continuous.process import process_rows
from guard.db.database import Database

pytestmark = pytest.mark.integration

RETRY_AFTER_S = 1
SECRET = "T0000/B0000/not-for-logs-3f9a"  # the part of a webhook URL that is its password


class FakeSlack:
    """A webhook that answers the first POST with `first` (429: with Retry-After), the rest with 200."""

    def __init__(self, first: int = 200) -> None:
        self.messages: list[str] = []
        self.arrivals: list[tuple[float, int]] = []  # when each POST came, and the answer
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802
                body = self.rfile.read(int(self.headers["Content-Length"]))
                status = first if not fake.arrivals else 200
                fake.arrivals.append((time.monotonic(), status))
                if status == 200:
                    fake.messages.append(json.loads(body)["text"])
                self.send_response(status)
                if status == 429:
                    self.send_header("Retry-After", str(RETRY_AFTER_S))
                self.end_headers()
                self.wfile.write(b"ok" if status == 200 else b"try later")

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


@pytest.fixture
def limited() -> Iterator[FakeSlack]:
    fake = FakeSlack(first=429)
    yield fake
    fake.close()


def test_a_429_is_waited_out_and_the_digest_is_delivered_once(
    settings: Settings, limited: FakeSlack, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    process_rows(settings, "ads", ["1", "2"])
    with Database(settings.require_database_url()) as db:
        assert deliver(db, [SlackTransport(limited.url, min_interval=0)]) == {"slack": 2}
    assert [status for _, status in limited.arrivals] == [429, 200]
    assert len(limited.messages) == 1 and limited.messages[0].startswith("incident-guard: 2 opened")
    (asked, _), (retried, _) = limited.arrivals
    assert retried - asked >= RETRY_AFTER_S
    assert SECRET not in caplog.text


def test_a_failed_delivery_is_retried_with_backoff_in_the_same_run(settings: Settings) -> None:
    flaky = FakeSlack(first=503)
    try:
        process_rows(settings, "ads", ["1", "2"])
        with Database(settings.require_database_url()) as db:
            assert deliver(db, [SlackTransport(flaky.url, min_interval=0)]) == {"slack": 2}
        assert [status for _, status in flaky.arrivals] == [503, 200] and len(flaky.messages) == 1
    finally:
        flaky.close()


def test_an_unreachable_webhook_never_appears_in_a_log_line_or_an_error(
    settings: Settings, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    process_rows(settings, "ads", ["1", "2"])
    dead = SlackTransport(f"http://127.0.0.1:{free_port()}/services/{SECRET}", min_interval=0)
    with pytest.raises(TransportError) as raised:
        dead.notify([])
    assert SECRET not in str(raised.value)
    with Database(settings.require_database_url()) as db:
        assert deliver(db, [dead]) == {"slack": 0}
    assert "slack unreachable" in caplog.text and SECRET not in caplog.text


def test_an_invalid_webhook_url_is_not_echoed() -> None:
    with pytest.raises(TransportError) as raised:
        SlackTransport(f"ftp://hooks.example/services/{SECRET}").notify([])
    assert SECRET not in str(raised.value)
