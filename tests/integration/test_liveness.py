"""Liveness with the real processes: heartbeats, `guard status` telling the truth, the canary's stall.

Real Postgres, real Redis, real Celery worker and beat processes, the real listener and watcher; short
settings (heartbeats every second, a canary every second, a stall after three) and deadlines, never
a sleep that decides the outcome.
"""

from __future__ import annotations

import json
import signal
import subprocess
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from sync_stack import BIN, ROOT, PrivateRedis, Stack, seed_owner, wait_for

from guard.config.settings import Settings
from guard.continuous.capture import install
from guard.db.database import Database

pytestmark = pytest.mark.integration

FAST = {
    "heartbeat_seconds": "1",
    "heartbeat_stale_seconds": "3",
    "canary_seconds": "1",
    "canary_stall_seconds": "3",
}


@pytest.fixture
def stack(db_url: str, tmp_path: Path) -> Iterator[Stack]:
    uploads = tmp_path / "public"
    (uploads / "uploads" / "ads").mkdir(parents=True)
    with Database(db_url) as db:
        seed_owner(db)
        install(db, Settings(database_url=db_url))
    s = Stack(db_url, uploads, tmp_path, **FAST)
    try:
        yield s
    finally:
        s.close()


def status(stack: Stack) -> tuple[int, dict[str, Any]]:
    done = subprocess.run(
        [str(BIN / "guard"), "status", "--json"],
        cwd=ROOT,
        env=stack.env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.stdout, done.stderr
    return done.returncode, json.loads(done.stdout)


def states(report: dict[str, Any]) -> dict[str, str]:
    return {p["process"]: p["state"] for p in report["processes"]}


def heartbeat_kinds(db_url: str) -> set[str]:
    with Database(db_url) as db:
        return {str(r[0]) for r in db.fetch_all("SELECT process FROM guard.heartbeats")}


def stalled_open(db_url: str) -> bool:
    with Database(db_url) as db:
        row = db.fetch_one(
            "SELECT count(*) FROM guard.findings WHERE kind = 'pipeline_stalled' AND resolved_at IS NULL"
        )
    return bool(row and row[0])


def canary_through(stack: Stack) -> bool:
    last = status(stack)[1]["canary"]["last"]
    return last is not None and last["latency_s"] is not None


def start_all(stack: Stack) -> None:
    stack.worker()
    stack.listener()
    stack.watcher()
    stack.beat()


def test_every_process_records_a_heartbeat_and_status_says_alive(stack: Stack, db_url: str) -> None:
    start_all(stack)
    wait_for(lambda: heartbeat_kinds(db_url) == {"listener", "watcher", "worker", "beat"}, "four heartbeats")

    def healthy() -> dict[str, Any] | None:
        code, report = status(stack)
        return report if code == 0 and canary_through(stack) else None

    report = wait_for(healthy, "guard status to exit 0 with a canary through")
    assert report["healthy"] and report["problems"] == []
    assert states(report) == dict.fromkeys(("listener", "watcher", "worker", "beat"), "alive")
    worker = next(p for p in report["processes"] if p["process"] == "worker")
    assert worker["instance"].startswith("worker-guardtest-") and worker["pid"] > 0
    assert 0 <= report["canary"]["last"]["latency_s"] < 60
    human = subprocess.run(
        [str(BIN / "guard"), "status"], cwd=ROOT, env=stack.env, capture_output=True, text=True, timeout=60
    )
    assert "listener   alive" in human.stdout and "canary     last latency" in human.stdout

    stack.kill("listener", signal.SIGTERM)  # a clean stop deletes its row: missing, not stale
    code, report = wait_for(lambda: (r := status(stack))[1]["problems"] and r, "the listener to go")
    assert code == 3 and states(report)["listener"] == "missing"
    assert "listener missing" in report["problems"]


def test_a_stopped_worker_is_not_alive_and_the_stalled_pipeline_opens_then_resolves(
    stack: Stack, db_url: str
) -> None:
    start_all(stack)
    wait_for(lambda: status(stack)[0] == 0, "guard status to exit 0 with everything running")

    stack.kill("worker")  # SIGKILL: no clean stop, its heartbeat goes stale
    code, report = wait_for(
        lambda: (r := status(stack))[1]["problems"] and states(r[1]).get("worker") == "stale" and r,
        "guard status to call the worker stale",
    )
    assert code == 3 and "worker stale" in report["problems"]
    human = subprocess.run(
        [str(BIN / "guard"), "status"], cwd=ROOT, env=stack.env, capture_output=True, text=True, timeout=60
    )
    assert human.returncode == 3 and "worker     STALE" in human.stdout

    wait_for(lambda: stalled_open(db_url), "pipeline_stalled to open", timeout=30)
    code, report = status(stack)
    assert code == 3 and report["canary"]["stalled"] and "pipeline stalled" in report["problems"]
    assert report["open_findings"].get("pipeline") == 1
    with Database(db_url) as db:  # queued for Sentry and Slack like any finding
        opened = db.fetch_one(
            "SELECT count(*) FROM guard.notifications n JOIN guard.findings f ON f.id = n.finding_id "
            "WHERE f.kind = 'pipeline_stalled' AND n.event = 'opened'"
        )
    assert opened == (1,)

    stack.worker()
    wait_for(lambda: not stalled_open(db_url), "pipeline_stalled to resolve", timeout=60)
    wait_for(lambda: status(stack)[0] == 0, "guard status to exit 0 again")


class Webhook:
    """A Slack incoming webhook on localhost that keeps every message's text (refusing the first few)."""

    def __init__(self, refuse: int = 0) -> None:
        self.texts: list[str] = []
        self.refused = 0
        texts, hook = self.texts, self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 (http.server's naming)
                body = self.rfile.read(int(self.headers["Content-Length"]))
                if hook.refused < refuse:
                    hook.refused += 1
                    self.send_response(500)
                    self.end_headers()
                    return
                texts.append(json.loads(body)["text"])
                self.send_response(200)
                self.end_headers()
                self.wfile.write(b"ok")

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/services/T0/B0/liveness"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def test_with_redis_down_beat_itself_opens_pipeline_stalled_and_alerts_slack(
    db_url: str, tmp_path: Path
) -> None:
    with Database(db_url) as db:
        seed_owner(db)
        install(db, Settings(database_url=db_url))
    redis_server, slack = PrivateRedis(tmp_path), Webhook()
    redis_server.start()
    settings = {**FAST, "slack_webhook_url": slack.url, "slack_digest_seconds": "0"}
    stack = Stack(db_url, tmp_path / "none", tmp_path, redis_url=redis_server.url, **settings)
    try:
        stack.worker()
        stack.listener()
        stack.beat()
        wait_for(lambda: canary_through(stack), "a canary through")
        redis_server.stop()  # no task reaches a worker now, not even deliver_alerts
        wait_for(lambda: any("pipeline_stalled" in t for t in slack.texts), "beat's own Slack alert", 60)
        assert stalled_open(db_url)
        redis_server.start()  # an empty Redis: the outbox lease sends the waiting canaries again
        wait_for(lambda: not stalled_open(db_url), "pipeline_stalled to resolve", 90)
    finally:
        stack.close()
        redis_server.stop()
        slack.close()


def test_beat_sends_the_stall_alert_again_when_slack_refused_it_the_first_time(
    db_url: str, tmp_path: Path
) -> None:
    # Slack answers 500 to the first three posts: the whole retried delivery on the turn the stall
    # opens fails, and only a later turn's delivery can bring the alert (the workers cannot: Redis is down).
    with Database(db_url) as db:
        seed_owner(db)
        install(db, Settings(database_url=db_url))
    redis_server, slack = PrivateRedis(tmp_path), Webhook(refuse=3)
    redis_server.start()
    settings = {**FAST, "slack_webhook_url": slack.url, "slack_digest_seconds": "0"}
    stack = Stack(db_url, tmp_path / "none", tmp_path, redis_url=redis_server.url, **settings)
    try:
        stack.worker()
        stack.listener()
        stack.beat()
        wait_for(lambda: canary_through(stack), "a canary through")
        redis_server.stop()
        wait_for(lambda: stalled_open(db_url), "pipeline_stalled to open", 60)
        wait_for(lambda: any("pipeline_stalled" in t for t in slack.texts), "the alert after a refusal", 60)
        assert slack.refused == 3
    finally:
        stack.close()
        redis_server.stop()
        slack.close()
