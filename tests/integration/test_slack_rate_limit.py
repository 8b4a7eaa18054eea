"""Slack: a 429 with Retry-After is waited out and the digest goes once; the webhook never leaks."""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from sync_stack import free_port

from guard.alerts import TransportError
from guard.alerts.delivery import deliver
from guard.alerts.slack import SlackTransport
from guard.config.settings import Settings
from guard.continuous.capture import install
from guard.continuous.process import process_rows
from guard.db.database import Database

pytestmark = pytest.mark.integration

RETRY_AFTER_S = 1
SECRET = "T0000/B0000/not-for-logs-3f9a"  # the part of a webhook URL that is its password


class RateLimitedSlack:
    """Answer the first POST with `first` (429: with Retry-After), every later one with 200."""

    def __init__(self, first: int = 429) -> None:
        self.arrivals: list[tuple[float, int]] = []
        self.messages: list[str] = []
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 (http.server's naming)
                body = self.rfile.read(int(self.headers["Content-Length"]))
                status = first if not fake.arrivals else 200
                fake.arrivals.append((time.monotonic(), status))
                if status == 200:
                    fake.messages.append(json.loads(body)["text"])
                self.send_response(status)
                if status == 429:
                    self.send_header("Retry-After", str(RETRY_AFTER_S))
                self.end_headers()
                self.wfile.write(b"ok" if status == 200 else b"rate_limited")

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/services/{SECRET}"


@pytest.fixture
def slack() -> Iterator[RateLimitedSlack]:
    fake = RateLimitedSlack()
    yield fake
    fake.server.shutdown()
    fake.server.server_close()


@pytest.fixture
def settings(db_url: str, tmp_path: Path) -> Settings:
    s = Settings(database_url=db_url, uploads_root=tmp_path)
    with Database(db_url) as db:
        db.execute("INSERT INTO users (id, email) VALUES (1, 'a@example.com')")
        db.execute("INSERT INTO categories (id, name, slug) VALUES (1, 'Cars', 'cars')")
        db.execute("INSERT INTO ads (id, title, slug, category_id, user_id) VALUES (1, 't', 'Bad 1', 1, 1)")
        install(db, s)
    return s


def test_a_429_is_waited_out_and_the_digest_is_delivered_once(
    settings: Settings, slack: RateLimitedSlack, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    process_rows(settings, "ads", ["1"])
    with Database(settings.require_database_url()) as db:
        assert deliver(db, [SlackTransport(slack.url, min_interval=0)]) == {"slack": 1}
    assert [status for _, status in slack.arrivals] == [429, 200]
    assert len(slack.messages) == 1 and slack.messages[0].startswith("incident-guard: 1 opened")
    (asked, _), (retried, _) = slack.arrivals
    assert retried - asked >= RETRY_AFTER_S
    assert SECRET not in caplog.text


def test_an_unreachable_webhook_never_appears_in_a_log_line_or_an_error(
    settings: Settings, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    process_rows(settings, "ads", ["1"])
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


def test_a_failed_delivery_is_retried_with_backoff_in_the_same_run(settings: Settings) -> None:
    flaky = RateLimitedSlack(first=503)
    try:
        process_rows(settings, "ads", ["1"])
        with Database(settings.require_database_url()) as db:
            assert deliver(db, [SlackTransport(flaky.url, min_interval=0)]) == {"slack": 1}
        assert [status for _, status in flaky.arrivals] == [503, 200] and len(flaky.messages) == 1
    finally:
        flaky.server.shutdown()
        flaky.server.server_close()
