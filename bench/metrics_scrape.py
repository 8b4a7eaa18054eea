"""Benchmark one `/metrics` scrape of a running `guard serve` on the 500,000-ad world.

Usage: .venv/bin/python -m bench.metrics_scrape [--ads 500000] [--reuse] [--scrapes 60]

Builds (or with --reuse, reuses) `guard demo --ads N --bad 0.01` under bench/work/, installs guard
and sweeps it once (so guard.findings holds every planted finding), puts a few tasks on the broker
queues, then starts the real `guard serve` twice: with WEB_CACHE_SECONDS=0 (every scrape reads the
database and Redis: the cost of one reading) and with the default cache (what a scrape every 15 s
mostly costs). Each scrape is timed over HTTP from this process. Side by side, in the same run: the
page (/), /api/status, `guard status --json` (the command an operator had before) as a whole
process, and the findings tally a scrape reads against counting the findings ledger itself.
Then it shows that no query scans a table of the app's two ways: the seq_scan and idx_scan
counters of pg_stat_user_tables before and after the uncached scrapes (every app table's delta is
0), and EXPLAIN of every query the reading runs (every relation it names is in the guard schema).
Prints one JSON object.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
import urllib.request
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import psycopg
import redis

from bench.common import ROOT, timed, world
from guard.db.database import load_query

WORLD = "guard_bench_metrics"
READING_QUERIES = (
    "web_tables",
    "web_tally",
    "web_checks_history",
    "web_outbox",
    "web_capture_age",
    "web_heartbeats",
    "web_canary",
    "web_predeploy",
    "web_examples",
    "web_open_daily",
)
STATS = """
SELECT schemaname || '.' || relname, coalesce(seq_scan, 0), coalesce(idx_scan, 0)
FROM pg_stat_user_tables ORDER BY 1
"""


def prepare(url: str, env: dict[str, str]) -> int:
    """Install (or upgrade) guard; sweep once unless a reused world already has its findings."""
    steps = [["install", "--no-sweep"], ["sweep", "integrity", "--here"], ["sweep", "files", "--here"]]
    with psycopg.connect(url, autocommit=True) as conn:
        installed = conn.execute("SELECT to_regclass('guard.findings')").fetchone()
        if installed and installed[0]:
            row = conn.execute("SELECT count(*) FROM guard.findings WHERE resolved_at IS NULL").fetchone()
            if row and row[0]:
                steps = steps[:1]
    for step in steps:
        run = timed([sys.executable, "-m", "guard", *step], env=env)
        if run.returncode not in (0, 1):
            raise SystemExit(f"guard {' '.join(step)} failed with {run.returncode}")
    with psycopg.connect(url, autocommit=True) as conn:
        row = conn.execute("SELECT count(*) FROM guard.findings WHERE resolved_at IS NULL").fetchone()
    return int(row[0]) if row else 0


@contextmanager
def serving(env: dict[str, str]) -> Iterator[str]:
    process = subprocess.Popen(
        [sys.executable, "-m", "guard", "serve", "--port", "0"],
        env={**os.environ, **env},
        cwd=ROOT,
        stderr=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
        text=True,
    )
    try:
        assert process.stderr is not None
        line = process.stderr.readline()
        if not line.startswith("guard serve: http://"):
            raise SystemExit(f"guard serve did not start: {line}{process.stderr.read()}")
        yield line.split()[2]
    finally:
        process.terminate()
        process.wait(timeout=30)


def fetch_ms(url: str) -> tuple[float, bytes]:
    started = time.perf_counter()
    with urllib.request.urlopen(url, timeout=60) as answer:
        body: bytes = answer.read()
    return (time.perf_counter() - started) * 1000, body


def summary(ms: list[float]) -> dict[str, float]:
    ordered = sorted(ms)
    return {
        "median_ms": round(statistics.median(ordered), 2),
        "p95_ms": round(ordered[int(len(ordered) * 0.95) - 1], 2),
        "min_ms": round(ordered[0], 2),
        "max_ms": round(ordered[-1], 2),
        "n": len(ordered),
    }


def stats(url: str) -> dict[str, tuple[int, int]]:
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("SELECT pg_stat_clear_snapshot()")
        return {str(r[0]): (int(r[1]), int(r[2])) for r in conn.execute(STATS).fetchall()}


def scans_after(url: str, before: dict[str, tuple[int, int]], scrapes: int) -> dict[str, dict[str, int]]:
    """Wait until the server's backend has flushed its counters (the tally shows the scrapes)."""
    deadline = time.monotonic() + 30
    while True:
        after = stats(url)
        delta = {
            name: {
                "seq_scan": a[0] - before.get(name, (0, 0))[0],
                "idx_scan": a[1] - before.get(name, (0, 0))[1],
            }
            for name, a in after.items()
        }
        if time.monotonic() > deadline:  # the statistics never showed our own scans: no claim either way
            raise SystemExit("pg_stat_user_tables did not show the scrapes' own reads within 30 s")
        if delta.get("guard.finding_tally", {}).get("seq_scan", 0) >= scrapes:
            return {
                k: v for k, v in delta.items() if v["seq_scan"] or v["idx_scan"] or not k.startswith("guard.")
            }
        time.sleep(0.5)


def query_ms(url: str, names: tuple[str, ...], repeat: int = 20) -> dict[str, dict[str, float]]:
    """Each query's own time, in this process, on one connection: the tally against counting the ledger."""
    found = {}
    with psycopg.connect(url, autocommit=True) as conn:
        for name in names:
            text = load_query(name)
            conn.execute(text).fetchall()
            ms = []
            for _ in range(repeat):
                started = time.perf_counter()
                conn.execute(text).fetchall()
                ms.append((time.perf_counter() - started) * 1000)
            found[name] = summary(ms)
    return found


def relations(plan: Any) -> Iterator[str]:
    if isinstance(plan, dict):
        if "Relation Name" in plan:
            yield f"{plan.get('Schema', '?')}.{plan['Relation Name']}"
        for value in plan.values():
            yield from relations(value)
    elif isinstance(plan, list):
        for item in plan:
            yield from relations(item)


def explained(url: str) -> dict[str, list[str]]:
    """Every relation each reading query's plan reads."""
    import datetime

    params: dict[str, Any] = {"per_kind": 3, "since": datetime.datetime.now(datetime.UTC)}
    found = {}
    with psycopg.connect(url, autocommit=True) as conn:
        for name in READING_QUERIES:
            plan = conn.execute("EXPLAIN (VERBOSE, FORMAT JSON) " + load_query(name), params).fetchone()
            found[name] = sorted(set(relations(plan[0] if plan else [])))
    return found


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--ads", type=int, default=500_000)
    parser.add_argument("--reuse", action="store_true")
    parser.add_argument("--scrapes", type=int, default=60)
    args = parser.parse_args()
    truth = world(WORLD, args.ads, 0.01, args.reuse)
    url = str(truth["database_url"])
    redis_url = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0")
    prefix = f"guard-bench-metrics-{uuid.uuid4().hex[:8]}:"
    env = {
        "DATABASE_URL": url,
        "UPLOADS_ROOT": str(truth["uploads_root"]),
        "REDIS_URL": redis_url,
        "BROKER_PREFIX": prefix,
    }
    open_findings = prepare(url, env)
    client = redis.Redis.from_url(redis_url)
    client.rpush(prefix + "events", *[b"{}"] * 5)
    try:
        result: dict[str, Any] = {
            "ads": truth["ads"],
            "open_findings": open_findings,
            "scrapes": args.scrapes,
        }
        with serving({**env, "WEB_CACHE_SECONDS": "0"}) as address:
            fetch_ms(address + "metrics")  # the connection is opened once, at the first reading
            before = stats(url)
            uncached = [fetch_ms(address + "metrics")[0] for _ in range(args.scrapes)]
            result["scans_during_uncached_scrapes"] = scans_after(url, before, args.scrapes)
            result["metrics_uncached"] = summary(uncached)
            result["page_uncached"] = summary([fetch_ms(address)[0] for _ in range(10)])
            result["api_status_uncached"] = summary([fetch_ms(address + "api/status")[0] for _ in range(10)])
            result["metrics_bytes"] = len(fetch_ms(address + "metrics")[1])
        with serving(env) as address:
            fetch_ms(address + "metrics")
            result["metrics_cached_5s"] = summary(
                [fetch_ms(address + "metrics")[0] for _ in range(args.scrapes)]
            )
        status_runs = [timed([sys.executable, "-m", "guard", "status", "--json"], env=env) for _ in range(5)]
        result["guard_status_json_process"] = summary([r.wall_s * 1000 for r in status_runs])
        # side by side: the tally guard serve reads, and counting the ledger (what it read before)
        result["query_tally_vs_ledger"] = query_ms(url, ("web_tally", "web_findings"))
        result["explain_relations"] = explained(url)
        app_scans = {
            k: v for k, v in result["scans_during_uncached_scrapes"].items() if not k.startswith("guard.")
        }
        result["app_tables_scanned"] = sorted(
            k for k, v in app_scans.items() if v["seq_scan"] or v["idx_scan"]
        )
        result["explain_outside_guard"] = sorted(
            {r for rels in result["explain_relations"].values() for r in rels if not r.startswith("guard.")}
        )
    finally:
        client.delete(prefix + "events")
        client.close()
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
