"""Real processes for the continuous-sync tests: Celery workers, listeners, the uploads watcher.

Each stack has its own broker key prefix on the shared Redis (or its own private redis-server), its
own database and uploads folder; every process it starts is killed in close(), always.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import redis
from celery import Celery

from guard.db.database import Database

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
SHARED_REDIS = os.environ.get("GUARD_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")


def seed_owner(db: Database) -> None:
    """Insert user 1 and category 1, which every ad the sync tests write belongs to."""
    db.execute("INSERT INTO users (id, email) VALUES (1, 'a@example.com')")
    db.execute("INSERT INTO categories (id, name, slug) VALUES (1, 'Cars', 'cars')")


def wait_for(predicate: Callable[[], Any], what: str, timeout: float = 45.0) -> Any:
    """Poll until predicate() is truthy; fail naming what never happened (a deadline, not a timing)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.2)
    raise AssertionError(f"gave up waiting for: {what}")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class PrivateRedis:
    """A redis-server of our own on a free port, so restarting it disturbs nobody else."""

    def __init__(self, workdir: Path) -> None:
        self.port = free_port()
        self.workdir = workdir
        self.proc: subprocess.Popen[bytes] | None = None
        self.url = f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        self.proc = subprocess.Popen(
            [
                "redis-server",
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                str(self.workdir),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        client = redis.Redis.from_url(self.url)
        wait_for(lambda: _pings(client), "private redis to answer", 10)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)
        self.proc = None


def _pings(client: redis.Redis) -> bool:
    try:
        return bool(client.ping())
    except redis.exceptions.ConnectionError:
        return False


class FakeSentry:
    """An HTTP server that accepts Sentry envelopes; keeps the events guard sent, every check-in and
    every exception event (what the SDK's own integrations capture)."""

    def __init__(self) -> None:
        self.events: list[dict[str, Any]] = []
        self.check_ins: list[dict[str, Any]] = []
        self.exceptions: list[dict[str, Any]] = []
        self.bodies: list[bytes] = []  # every envelope as it came, headers of the request included
        store, check_ins, exceptions, bodies = self.events, self.check_ins, self.exceptions, self.bodies

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 (http.server's naming)
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                if self.headers.get("Content-Encoding") == "gzip":
                    import gzip

                    body = gzip.decompress(body)
                bodies.append(str(self.headers).encode() + b"\n" + body)
                for line in body.splitlines():
                    try:
                        item = json.loads(line)
                    except ValueError:
                        continue
                    if isinstance(item, dict) and item.get("logger") == "incident-guard":
                        store.append(item)
                    elif isinstance(item, dict) and "check_in_id" in item:
                        check_ins.append(item)
                    elif isinstance(item, dict) and "exception" in item:
                        exceptions.append(item)
                self.send_response(200)
                self.end_headers()
                self.wfile.write(b"{}")

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()
        self.dsn = f"http://public@127.0.0.1:{self.server.server_address[1]}/1"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


class Stack:
    """Start and always stop the sync processes for one test database and uploads root."""

    def __init__(
        self, db_url: str, uploads_root: Path, logdir: Path, redis_url: str = SHARED_REDIS, **settings: str
    ) -> None:
        self.prefix = f"guardtest-{uuid.uuid4().hex[:10]}:"
        self.redis_url = redis_url
        self.logdir = logdir
        self.env = {
            **os.environ,
            "DATABASE_URL": db_url,
            "UPLOADS_ROOT": str(uploads_root),
            "REDIS_URL": redis_url,
            "BROKER_PREFIX": self.prefix,
            "LEASE_SECONDS": "3",
            "PYTHONUNBUFFERED": "1",
            **{k.upper(): v for k, v in settings.items()},
        }
        self.env.pop("GUARD_CONFIG", None)
        self.procs: dict[str, subprocess.Popen[bytes]] = {}

    def start(self, name: str, argv: list[str]) -> subprocess.Popen[bytes]:
        log = (self.logdir / f"{name}.log").open("ab")
        proc = subprocess.Popen(
            argv, cwd=ROOT, env=self.env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
        self.procs[name] = proc
        return proc

    def worker(
        self, name: str = "worker", concurrency: int = 2, loglevel: str = "WARNING"
    ) -> subprocess.Popen[bytes]:
        """Start a Celery worker on every queue; at INFO it logs each task it receives and ends."""
        return self.start(
            name,
            [
                str(BIN / "celery"),
                "-A",
                "workers",
                "worker",
                "-Q",
                "events,sweeps,alerts",
                "-c",
                str(concurrency),
                "-n",
                f"{name}-{self.prefix[:-1]}@%h",
                "--without-gossip",
                "--without-mingle",
                "--without-heartbeat",
                "--loglevel",
                loglevel,
            ],
        )

    def listener(self, name: str = "listener") -> subprocess.Popen[bytes]:
        return self.start(name, [str(BIN / "python"), "-m", "watchers.listener"])

    def watcher(self, name: str = "watcher") -> subprocess.Popen[bytes]:
        return self.start(name, [str(BIN / "python"), "-m", "watchers.uploads"])

    def beat(self, name: str = "beat") -> subprocess.Popen[bytes]:
        """Start celery beat with its schedule file in this stack's log folder."""
        schedule = str(self.logdir / f"{name}-schedule")
        return self.start(
            name, [str(BIN / "celery"), "-A", "workers", "beat", "--loglevel", "INFO", "--schedule", schedule]
        )

    def kill(self, name: str, sig: int = signal.SIGKILL) -> None:
        """Send a signal to a process and, for SIGKILL, its whole group (a worker's children too)."""
        proc = self.procs.pop(name)
        if proc.poll() is None:
            if sig == signal.SIGKILL:
                os.killpg(proc.pid, sig)
            else:
                proc.send_signal(sig)
        proc.wait(30)

    def client(self) -> Celery:
        app = Celery("incident-guard-test", broker=self.redis_url)
        app.conf.broker_transport_options = {"global_keyprefix": self.prefix}
        return app

    def log(self, name: str) -> str:
        path = self.logdir / f"{name}.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def close(self) -> None:
        for name in list(self.procs):
            proc = self.procs[name]
            if proc.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(30)
            self.procs.pop(name)
        try:
            client = redis.Redis.from_url(self.redis_url)
            keys = list(client.scan_iter(match=f"{self.prefix}*", count=1000))
            if keys:
                client.delete(*keys)
        except redis.exceptions.ConnectionError:
            pass
