"""Shared benchmark plumbing: build or reuse a demo world, time a command, read its peak memory."""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
WORK = ROOT / "bench" / "work"
SERVER_URL = os.environ.get("GUARD_SERVER_URL", "postgresql://postgres@127.0.0.1:5432/postgres")


@dataclass(frozen=True)
class Run:
    """One timed command: wall seconds, peak resident memory of the process tree's largest child."""

    wall_s: float
    max_rss_mb: float
    returncode: int
    stdout: str


def percentile(values: list[float], p: float) -> float:
    """The p-th percentile, nearest rank between the ends (NaN for no values)."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(p / 100 * (len(ordered) - 1))))]


def paced(rate: int, seconds: float, send: Callable[[int], object]) -> int:
    """Call send(0), send(1), ... `rate` times a second for `seconds` (catching up when behind, never
    past the end); return how many were sent."""
    sent = 0
    start = time.perf_counter()
    while (elapsed := time.perf_counter() - start) < seconds:
        while sent < int(elapsed * rate) + 1 and time.perf_counter() - start < seconds:
            send(sent)
            sent += 1
        time.sleep(0.001)
    return sent


def drop_broker_keys(redis_url: str, prefix: str) -> None:
    """Delete what a bench's Celery processes left in Redis under their BROKER_PREFIX (queues,
    unacked messages, bindings): a stopped stack should leave the shared Redis as it found it."""
    import redis  # only the benches that start workers need it

    client = redis.Redis.from_url(redis_url)
    try:
        keys = list(client.scan_iter(match=f"{prefix}*", count=1000))
        if keys:
            client.delete(*keys)
    except redis.RedisError as exc:  # a cleanup: never the error a bench run reports
        print(f"bench: could not delete the {prefix}* keys from Redis: {exc}", file=sys.stderr)
    finally:
        client.close()


def timed(command: list[str], env: dict[str, str] | None = None, cwd: Path = ROOT) -> Run:
    """Run a command and return its wall time and peak RSS (from wait4's rusage)."""
    started = time.perf_counter()
    proc = subprocess.Popen(
        command,
        env={**os.environ, **(env or {})},
        cwd=cwd,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    out = proc.stdout.read() if proc.stdout else ""
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - started
    proc.returncode = os.waitstatus_to_exitcode(status)
    return Run(wall, usage.ru_maxrss / 1024, proc.returncode, out)


def median_of(runs: list[Run]) -> Run:
    ordered = sorted(runs, key=lambda r: r.wall_s)
    return ordered[len(ordered) // 2]


def spread(runs: list[Run]) -> str:
    walls = [r.wall_s for r in runs]
    low, high = min(walls), max(walls)
    return f"median {statistics.median(walls):.2f} s (min {low:.2f}, max {high:.2f}, n={len(walls)})"


def world(name: str, ads: int, bad: float, reuse: bool) -> dict[str, Any]:
    """Build a demo world under bench/work/<name>, or reuse the one recorded there."""
    truth_file = WORK / f"{name}.truth.json"
    if reuse and truth_file.exists():
        truth: dict[str, Any] = json.loads(truth_file.read_text())
        if truth.get("ads") == ads and Path(truth["uploads_root"]).is_dir():
            return truth
    WORK.mkdir(parents=True, exist_ok=True)
    print(f"building world {name}: {ads:,} ads ...", file=sys.stderr)
    run = timed(
        [
            sys.executable,
            "-m",
            "guard",
            "demo",
            "--ads",
            str(ads),
            "--bad",
            str(bad),
            "--db",
            name,
            "--uploads",
            str(WORK / name),
        ]
    )
    if run.returncode != 0:
        raise SystemExit(f"guard demo failed with {run.returncode}")
    truth = json.loads(run.stdout)
    truth["build_wall_s"] = round(run.wall_s, 1)
    truth["build_max_rss_mb"] = round(run.max_rss_mb)
    truth_file.write_text(json.dumps(truth, indent=2))
    return truth
