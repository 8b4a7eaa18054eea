"""Sentry Crons on the beat tasks: beat's check-in opens the run, the real worker's check-in closes it.

Beat itself is not started (its cron entries fire at minute boundaries at the earliest); a real
`celery.beat.Scheduler` of the workers app applies the entries the way beat does, with Sentry
initialised through the same `beat_init` signal, in a child process so the SDK's patches never touch
the test process. A real worker runs the task and reports its end.
"""

from __future__ import annotations

import gzip
import json
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from sync_stack import ROOT, Stack, wait_for

from guard.database import Database
from guard.install import install
from guard.settings import Settings

pytestmark = pytest.mark.integration

# What beat does for each due entry, with Sentry started by the signal beat sends on start.
BEAT = """
import sys
import sentry_sdk
from celery import signals
from celery.beat import Scheduler
from workers.app import app

signals.beat_init.send(sender=None)
scheduler = Scheduler(app=app)
with app.producer_or_acquire() as producer:
    for name in sys.argv[1:]:
        scheduler.apply_entry(scheduler.schedule[name], producer=producer)
sentry_sdk.flush(5)
"""


class FakeCrons:
    """An HTTP server that keeps the check-in items of the Sentry envelopes it receives."""

    def __init__(self) -> None:
        self.check_ins: list[dict[str, Any]] = []
        store = self.check_ins
        lock = threading.Lock()

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 (http.server's naming)
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                if self.headers.get("Content-Encoding") == "gzip":
                    body = gzip.decompress(body)
                items = []
                for line in body.splitlines():
                    try:
                        items.append(json.loads(line))
                    except ValueError:
                        continue
                with lock:
                    store.extend(i for i in items if isinstance(i, dict) and "check_in_id" in i)
                self.send_response(200)
                self.end_headers()
                self.wfile.write(b"{}")

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.dsn = f"http://public@127.0.0.1:{self.server.server_address[1]}/1"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def crons() -> Iterator[FakeCrons]:
    fake = FakeCrons()
    yield fake
    fake.close()


def test_a_beat_task_checks_in_when_sent_and_when_the_worker_finishes_it(
    db_url: str, tmp_path: Path, crons: FakeCrons
) -> None:
    with Database(db_url) as db:
        install(db, Settings(database_url=db_url, uploads_root=tmp_path))
    stack = Stack(db_url, tmp_path, tmp_path, sentry_dsn=crons.dsn)
    try:
        stack.worker()
        beat = subprocess.run(
            [sys.executable, "-c", BEAT, "sweep-integrity", "deliver-alerts"],
            cwd=ROOT,
            env=stack.env,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert beat.returncode == 0, beat.stderr
        done = wait_for(
            lambda: [c for c in crons.check_ins if c.get("status") in ("ok", "error")],
            "the worker's closing check-in",
        )
    finally:
        stack.close()

    # the 10-second alert delivery is not a cron job and has no monitor
    opened = [c for c in crons.check_ins if c.get("status") == "in_progress"]
    assert [c["monitor_slug"] for c in opened] == ["sweep-integrity"]
    assert opened[0]["monitor_config"]["schedule"] == {"type": "crontab", "value": "0 * * * *"}
    assert [(c["monitor_slug"], c["status"]) for c in done] == [("sweep-integrity", "ok")]
    assert done[0]["check_in_id"] == opened[0]["check_in_id"]
