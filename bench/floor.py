"""The continuous path's latency floor, at the latency bench's rate: what PostgreSQL and Celery alone cost.

- NOTIFY: one connection sends `NOTIFY` (autocommit: its own transaction and commit, as an app's
  write), another LISTENs; the time from before the send to the wake-up.
- Celery: publish -> an empty task starts, on the same Redis, with guard's worker settings and the
  Procfile's `-c 2` (bench/floor_app.py); the time from before the publish to the task's start.

A guard finding needs at least one of each (the writer's commit wakes the listener, the listener
publishes, a worker runs), so their sum is a floor under commit -> open finding that guard's own
code does not set. `bench.sync --only latency` runs this after each tree's run, in the same
invocation; alone: `.venv/bin/python -m bench.floor [--rate 200] [--seconds 20]`.
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import psycopg

from bench.common import drop_broker_keys, paced, percentile

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
SERVER = os.environ.get("GUARD_BENCH_SERVER_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
REDIS_URL = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0")
CHANNEL = "guard_bench_floor"
PREFIX = f"guard-bench-floor-{uuid.uuid4().hex[:8]}:"  # this process's, for every floor it measures


@dataclass(frozen=True)
class Floor:
    notify_ms: list[float]
    celery_ms: list[float]
    sent: int

    def line(self) -> str:
        n50, n99 = percentile(self.notify_ms, 50), percentile(self.notify_ms, 99)
        c50, c99 = percentile(self.celery_ms, 50), percentile(self.celery_ms, 99)
        lost = self.sent - len(self.celery_ms)
        return (
            f"  floor at the same rate: NOTIFY commit -> wake-up p50 {n50:.2f} ms, p99 {n99:.2f} ms; "
            f"Celery publish -> task starts (-c 2) p50 {c50:.2f} ms, p99 {c99:.2f} ms"
            f" ({len(self.celery_ms)} of {self.sent} seen{'' if not lost else f', {lost} missing'});"
            f" sum p50 {n50 + c50:.1f} ms, p99 {n99 + c99:.1f} ms"
        )


def notify_floor(url: str, rate: int, seconds: float) -> list[float]:
    sent: dict[str, float] = {}
    woke: dict[str, float] = {}
    stop = threading.Event()
    with psycopg.connect(url, autocommit=True) as listener, psycopg.connect(url, autocommit=True) as sender:
        listener.execute(f"LISTEN {CHANNEL}")

        def listen() -> None:
            while not stop.is_set():
                for note in listener.notifies(timeout=0.2):
                    woke[note.payload] = time.time()

        thread = threading.Thread(target=listen, daemon=True)
        thread.start()

        def send(i: int) -> None:
            key = str(i)
            sent[key] = time.time()
            sender.execute("SELECT pg_notify(%s, %s)", (CHANNEL, key))

        paced(rate, seconds, send)
        deadline = time.monotonic() + 10
        while len(woke) < len(sent) and time.monotonic() < deadline:
            time.sleep(0.05)
        stop.set()
        thread.join(5)
    return [(woke[k] - t) * 1000 for k, t in sent.items() if k in woke]


def celery_floor(rate: int, seconds: float, concurrency: int = 2) -> tuple[list[float], int]:
    import redis

    prefix = PREFIX
    env = {**os.environ, "BROKER_PREFIX": prefix, "REDIS_URL": REDIS_URL, "PYTHONPATH": str(ROOT)}
    os.environ["BROKER_PREFIX"] = prefix  # the publishing side's app reads it at import
    from bench import floor_app

    seen_key = floor_app.SEEN
    assert seen_key.startswith(prefix)
    client = redis.Redis.from_url(REDIS_URL)
    argv = [
        str(BIN / "celery"),
        "-A",
        "bench.floor_app",
        "worker",
        "-Q",
        floor_app.QUEUE,
        "-c",
        str(concurrency),
    ]
    argv += ["--without-gossip", "--without-mingle", "--loglevel", "WARNING"]
    worker = subprocess.Popen(
        argv, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True
    )
    sent: dict[str, float] = {}
    try:
        floor_app.started.delay("warm-up")  # the worker is up once its first task ran
        deadline = time.monotonic() + 60
        while not client.hexists(seen_key, "warm-up"):
            if time.monotonic() > deadline or worker.poll() is not None:
                raise SystemExit("bench.floor: the floor's Celery worker did not start")
            time.sleep(0.05)

        def send(i: int) -> None:
            key = str(i)
            sent[key] = time.time()
            floor_app.started.delay(key)

        paced(rate, seconds, send)
        deadline = time.monotonic() + 10
        while client.hlen(seen_key) < len(sent) + 1 and time.monotonic() < deadline:
            time.sleep(0.05)
        seen = {k.decode(): float(v) for k, v in client.hgetall(seen_key).items()}
    finally:
        if worker.poll() is None:
            worker.send_signal(signal.SIGTERM)
        try:
            worker.wait(15)
        except subprocess.TimeoutExpired:
            os.killpg(worker.pid, signal.SIGKILL)
            worker.wait(5)
        drop_broker_keys(REDIS_URL, prefix)
    return [(seen[k] - t) * 1000 for k, t in sent.items() if k in seen], len(sent)


def measure(url: str, rate: int, seconds: float) -> Floor:
    notify = notify_floor(url, rate, seconds)
    celery, sent = celery_floor(rate, seconds)
    return Floor(notify, celery, sent)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rate", type=int, default=200, help="sends a second (the latency bench's 200)")
    parser.add_argument("--seconds", type=float, default=20.0)
    args = parser.parse_args()
    print(measure(SERVER, args.rate, args.seconds).line().strip(), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
