"""Profile one continuous check: `process_rows` for one new ad at a time, per statement and in all.

`.venv/bin/python -m bench.sync_task [--ads 6000] [--tasks 400] [--table ad_images]` against the
local PostgreSQL: a fresh database of the example app with guard installed and `--ads` ads, then
`--tasks` new ads (every other one bad), each checked on its own as a worker would; with
`--table ad_images`, as many file rows too and then `--tasks` new ones, each naming a new file.
Prints the median time of each statement the check sent (timed around the seam's calls; in the
worker's pipelined transaction a statement sent with `submit()` shows only its sending, and its wait
lands in the next read's time), the task's wall time and its Python CPU time (`time.process_time`).
To profile an older tree, copy this file into its export (bench/work/sync/baseline-<commit>/bench/)
and run it there with PYTHONPATH set to it.
"""

from __future__ import annotations

import argparse
import collections
import os
import statistics
import time
import uuid
from typing import Any

import psycopg

from bench import sync as bench
from guard.config.settings import Settings
from guard.continuous import process
from guard.continuous.capture import install
from guard.db import database

TIMES: dict[str, list[float]] = collections.defaultdict(list)


def timed(name: str) -> None:
    """Wrap one Database method so that each call's time is kept under its statement's first words."""
    real = getattr(database.Database, name)

    def wrapper(self: database.Database, query: Any, *args: Any, **kwargs: Any) -> Any:
        started = time.perf_counter()
        try:
            return real(self, query, *args, **kwargs)
        finally:
            text = query if isinstance(query, str) else query.as_string()
            TIMES[" ".join(text.split())[:70]].append((time.perf_counter() - started) * 1000)

    setattr(database.Database, name, wrapper)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--ads", type=int, default=6000, help="ads in the table (the latency bench's mean)")
    parser.add_argument("--tasks", type=int, default=400)
    parser.add_argument(
        "--table",
        choices=["ads", "ad_images"],
        default="ads",
        help="whose new rows the tasks check (ad_images: a row naming a new file; --ads rows there too)",
    )
    args = parser.parse_args()
    name = f"guard_bench_sync_task_{os.getpid()}"
    url = bench.fresh_database(name)
    try:
        settings = Settings(database_url=url, uploads_root=str(bench.WORK))
        with database.Database(url) as db:
            install(db, settings)
            db.execute(
                "INSERT INTO ads (title, slug, category_id, user_id)"
                " SELECT 't', 'ad-' || i || '-x', 1, 1 FROM generate_series(1, %s) i",
                (args.ads,),
            )
            if args.table == "ad_images":  # as many file rows, each naming a file of its own
                db.execute(
                    "INSERT INTO ad_images (ad_id, filename, file_path)"
                    " SELECT i, 'f', 'uploads/ads/pre-' || i || '.webp' FROM generate_series(1, %s) i",
                    (args.ads,),
                )
                db.execute("VACUUM ANALYZE ad_images")
            db.execute("VACUUM ANALYZE ads")
        for name_ in ("execute", "fetch_all", "fetch_one", "submit"):
            if hasattr(database.Database, name_):
                timed(name_)
        wall, cpu = [], []
        with psycopg.connect(url, autocommit=True) as conn:
            for i in range(args.tasks + 20):
                slug = f"Bad Slug {uuid.uuid4().hex[:8]}" if i % 2 == 0 else f"ad-{uuid.uuid4().hex[:8]}-1"
                paths: list[str] = []
                if args.table == "ads":
                    row = conn.execute(
                        "INSERT INTO ads (title, slug, category_id, user_id)"
                        " VALUES ('t', %s, 1, 1) RETURNING id",
                        (slug,),
                    ).fetchone()
                else:
                    paths = [f"uploads/ads/new-{uuid.uuid4().hex[:8]}.webp"]
                    row = conn.execute(
                        "INSERT INTO ad_images (ad_id, filename, file_path) VALUES (1, 'f', %s) RETURNING id",
                        (paths[0],),
                    ).fetchone()
                assert row is not None
                if i == 20:  # the first ones warm the connection, the plans and prepared statements
                    TIMES.clear()
                started, cpu_started = time.perf_counter(), time.process_time()
                process.process_rows(settings, args.table, [str(row[0])], paths, [])
                if i >= 20:
                    wall.append((time.perf_counter() - started) * 1000)
                    cpu.append((time.process_time() - cpu_started) * 1000)
        for text, values in sorted(TIMES.items(), key=lambda kv: -sum(kv[1])):
            print(f"{statistics.median(values):7.2f} ms median {len(values):5d}x  {text}")
        print(
            f"{args.ads} {args.table if args.table == 'ads' else 'ads and file rows'}, {args.tasks} tasks"
            f" on {args.table}: process_rows wall p50 {statistics.median(wall):.2f} ms, "
            f"p99 {bench.percentile(wall, 99):.2f} ms; Python CPU p50 {statistics.median(cpu):.2f} ms"
        )
    finally:
        bench.drop_database(name)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
