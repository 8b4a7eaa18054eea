"""A demo world as `guard serve` sees it (demo, install, sweeps, a backup, a drill) and a running server."""

from __future__ import annotations

import os
import subprocess
import sys
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
import redis

from guard.continuous import canary, liveness
from guard.db.database import Database
from tests.acceptance.cli import MIGRATIONS_DIR, ROOT, guard
from tests.conftest import drop_database, unique_name

REDIS_URL = os.environ.get("GUARD_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
HOSTILE = "<script>alert(1)</script>.webp"
# Secrets that must never show on a page, in JSON or in metrics (the local server trusts, so the
# password in the URL is never checked, only carried).
DB_PASSWORD = "pw-never-shown-7f3a"
WEBHOOK = "https://hooks.slack.com/services/T000/B000/webhook-never-shown-9c1d"
DSN = "https://key-never-shown-41be@o1.ingest.sentry.io/1"
QUEUED = {"events": 3, "sweeps": 1}


@dataclass(frozen=True)
class World:
    name: str
    plain_url: str  # for the test's own queries
    env: dict[str, str]
    backup_dir: Path


@contextmanager
def serve_world(tmp: Path, *, drill: bool = True) -> Iterator[World]:
    """Build a demo world, install guard, sweep it, plant a hostile file name, back up and drill."""
    name = unique_name("guard_serve")
    done = guard("demo", "--ads", "300", "--bad", "0.05", "--db", name, "--uploads", str(tmp / "uploads"))
    assert done.returncode == 0, done.stderr
    plain = f"postgresql://postgres@127.0.0.1:5432/{name}"
    prefix = f"guard-serve-test-{uuid.uuid4().hex[:8]}:"
    env = {
        "DATABASE_URL": f"postgresql://postgres:{DB_PASSWORD}@127.0.0.1:5432/{name}",
        "UPLOADS_ROOT": str(tmp / "uploads"),
        "MIGRATIONS_DIR": MIGRATIONS_DIR,
        "BACKUP_DIR": str(tmp / "backups"),
        "REDIS_URL": REDIS_URL,
        "BROKER_PREFIX": prefix,
        "SLACK_WEBHOOK_URL": WEBHOOK,
        "SENTRY_DSN": DSN,
        "WEB_CACHE_SECONDS": "0",
    }
    client = redis.Redis.from_url(REDIS_URL)
    try:
        for step in (["install"], ["sweep", "all", "--here"]):
            ran = guard(*step, env=env)
            assert ran.returncode in (0, 1), ran.stderr
        with psycopg.connect(plain, autocommit=True) as conn:
            conn.execute(
                "INSERT INTO ad_images (ad_id, filename, file_path) SELECT min(id), %s, %s FROM ads",
                (HOSTILE, f"uploads/ads/{HOSTILE}"),
            )
            # the app fixes its blank titles: the next integrity sweep resolves their findings
            conn.execute("UPDATE ads SET title = 'fixed' WHERE title IS NULL OR btrim(title) = ''")
        sweeps = (["sweep", "integrity", "--here"], ["sweep", "files", "--here"])
        for step in (*sweeps, ["backup"], *([["restore", "drill"]] if drill else [])):
            ran = guard(*step, env=env)
            assert ran.returncode in (0, 1), ran.stderr
        ran = guard("predeploy", "--only", "integrity", env=env)  # fails: one 'fail' in the history
        assert ran.returncode == 1, ran.stderr
        with Database(plain) as db:  # two processes' heartbeats and a canary that came through
            liveness.record(db, liveness.WORKER, "w1@test", "test-host", 101)
            liveness.record(db, liveness.WORKER, "w2@test", "test-host", 102)
            liveness.record(db, liveness.LISTENER, "l1@test", "test-host", 103)
            canary.arrived(db, [str(canary.send(db))])
            canary.send(db)  # one still on its way
        for queue, n in QUEUED.items():
            client.rpush(prefix + queue, *[b"{}"] * n)
        yield World(name, plain, env, tmp / "backups")
    finally:
        for queue in QUEUED:
            client.delete(prefix + queue)
        client.close()
        drop_database(name)


@dataclass
class Server:
    process: subprocess.Popen[str]
    url: str

    def get(self, path: str, headers: dict[str, str] | None = None) -> tuple[int, str, dict[str, str]]:
        request = urllib.request.Request(self.url + path.lstrip("/"), headers=headers or {})
        try:
            with urllib.request.urlopen(request, timeout=30) as answer:
                return answer.status, answer.read().decode("utf-8"), dict(answer.headers)
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read().decode("utf-8"), dict(exc.headers)


@contextmanager
def running_serve(env: dict[str, str], *args: str) -> Iterator[Server]:
    """Start `guard serve --port 0` (any free port); read the address it says it listens on."""
    process = subprocess.Popen(
        [sys.executable, "-m", "guard", "serve", "--port", "0", *args],
        env={**os.environ, **env},
        cwd=ROOT,
        stderr=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
        text=True,
    )
    try:
        assert process.stderr is not None
        line = process.stderr.readline()  # the server's first line, or '' when it exited first
        assert line.startswith("guard serve: http://"), line + process.stderr.read()
        address = line.split()[2]
        port = address.rsplit(":", 1)[1].rstrip("/")
        yield Server(process, f"http://127.0.0.1:{port}/")
    finally:
        process.terminate()
        process.wait(timeout=30)


def rows(url: str, query: str, params: Any = None) -> list[tuple[Any, ...]]:
    with psycopg.connect(url, autocommit=True) as conn:
        return conn.execute(query, params).fetchall()


def queue_length(prefix: str, queue: str) -> int:
    client = redis.Redis.from_url(REDIS_URL)
    try:
        return int(client.llen(prefix + queue))
    finally:
        client.close()


def secrets() -> tuple[str, ...]:
    return (DB_PASSWORD, WEBHOOK, DSN, "webhook-never-shown", "key-never-shown")


def root() -> Path:
    return ROOT
