"""Where the app's writes lose time with guard alongside: one pgbench run of the listings, probed.

`.venv/bin/python -m bench.alongside_profile [--seconds 10] [--rate 300] [--tree REF]` against the
local PostgreSQL and Redis: a fresh database of the example app with guard installed, the Procfile's
listener and worker (`--tree`: a commit's), then pgbench of the app's listings (bench/sync.py's
script, 4 clients; `--rate`: that many a second). While it runs it samples, and then prints:

- the CPU of each process by role (bench/cpu.py), guard's and the app's backends apart;
- what the backends waited on (`pg_stat_activity` wait events, every 2 ms), as backends on average;
- how often the listener's flag was up (every 10 ms): the triggers send a NOTIFY only then;
- the WAL written a second and the commits (`pg_stat_wal`, `pg_stat_database`).

These are the probes behind bench/RESULTS.md's round 5 of issue 17. Each listing's image file
exists, as in `bench.sync --only triggers`.
"""

from __future__ import annotations

import argparse
import collections
import os
import subprocess
import threading
import time
from typing import Any

import psycopg

from bench import sync as bench
from bench.cpu import CpuMeter
from guard.config.settings import Settings
from guard.continuous.capture import install
from guard.db.database import Database

WAITS = """
SELECT coalesce(nullif(application_name, ''), backend_type), wait_event_type, wait_event
FROM pg_stat_activity WHERE datname = current_database() AND state = 'active' AND pid <> pg_backend_pid()
"""
WAL = "SELECT wal_records, wal_bytes, wal_sync FROM pg_stat_wal"
FLAG = "SELECT idle FROM guard.listener_state"
COMMITS = "SELECT xact_commit FROM pg_stat_database WHERE datname = current_database()"


def sample(url: str, stop: threading.Event, every: float, query: str, out: list[tuple[Any, ...]]) -> None:
    """Run `query` every `every` seconds until stopped, keeping each row with its sample's number."""
    with psycopg.connect(url, autocommit=True) as conn:
        n = 0
        while not stop.is_set():
            out.extend((n, *row) for row in conn.execute(query))
            n += 1
            stop.wait(every)
        out.append((n,))  # how many samples were taken


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seconds", type=int, default=10, help="pgbench's run (default 10)")
    parser.add_argument(
        "--rate", type=int, help="listings a second (pgbench -R); default: as fast as they go"
    )
    parser.add_argument("--tree", metavar="REF", help="run this commit's listener and worker")
    args = parser.parse_args()
    bench.WORK.mkdir(parents=True, exist_ok=True)
    uploads = bench.WORK / "uploads"
    (uploads / "uploads" / "ads").mkdir(parents=True, exist_ok=True)
    name = f"guard_bench_alongside_{os.getpid()}"
    url = bench.fresh_database(name)
    code = bench.ROOT if args.tree is None else bench.baseline_tree(args.tree)
    stack = bench.Stack(url, uploads, code=code)
    try:
        with Database(url) as db:
            install(db, Settings(database_url=url))
        bench.existing_files(url, uploads, args.seconds + 2)
        stack.start()
        script = bench.WORK / "alongside.sql"
        script.write_text(bench.PGBENCH_SCRIPT)
        argv = [*bench.pgbench_argv(script, args.seconds, args.rate), url]
        pgbench = subprocess.Popen(argv, stdout=subprocess.PIPE, text=True)
        time.sleep(1)  # its connections are up: the meter names their backends
        stop = threading.Event()
        flags: list[tuple[Any, ...]] = []
        waits: list[tuple[Any, ...]] = []
        probes = [
            threading.Thread(target=sample, args=(url, stop, 0.01, FLAG, flags)),
            threading.Thread(target=sample, args=(url, stop, 0.002, WAITS, waits)),
        ]
        meter = CpuMeter(bench.SERVER, name, {}, stack.roles())
        with psycopg.connect(url, autocommit=True) as conn:
            wal0, commits0 = conn.execute(WAL).fetchone(), conn.execute(COMMITS).fetchone()
            before, started = meter.sample(), time.perf_counter()
            for probe in probes:
                probe.start()
            time.sleep(max(1, args.seconds - 2))
            stop.set()
            for probe in probes:
                probe.join(10)
            after, wall = meter.sample(), time.perf_counter() - started
            wal1, commits1 = conn.execute(WAL).fetchone(), conn.execute(COMMITS).fetchone()
        out = pgbench.communicate()[0]
        tps = next((line.strip() for line in out.splitlines() if line.startswith("tps")), "tps: none")
        print(f"pgbench ({'rate ' + str(args.rate) if args.rate else 'as fast as it goes'}): {tps}")
        print("\n".join(meter.report(before, after, wall, 0)))
        counted = collections.Counter(tuple(w[1:]) for w in waits if len(w) > 1)
        taken = max(1, int(waits[-1][0])) if waits else 1
        print(f"wait events, backends on average over {taken} samples (state active; none = on CPU):")
        for (app, kind, event), n in counted.most_common(12):
            print(f"  {n / taken:5.2f}  {app}: {kind or 'none'} {event or ''}")
        up = [f[1] for f in flags if len(f) > 1]
        print(f"listener flag up (triggers notify): {100 * sum(bool(u) for u in up) / max(1, len(up)):.1f}%")
        if wal0 and wal1 and commits0 and commits1:
            records, mb, syncs = ((float(b) - float(a)) / wall for a, b in zip(wal0, wal1, strict=True))
            print(
                f"WAL: {records:.0f} records/s, {mb / 1e6:.2f} MB/s, {syncs:.0f} syncs/s; "
                f"{(commits1[0] - commits0[0]) / wall:.0f} commits/s"
            )
    finally:
        stack.stop()
        bench.drop_database(name)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
