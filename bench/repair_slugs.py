"""Benchmark `guard repair slugs --apply` on the 500,000-ad world while an app keeps writing.

Usage: .venv/bin/python -m bench.repair_slugs [--ads 500000] [--reuse] [--with-backup]

Builds (or with --reuse, reuses) `guard demo --ads N --bad 0.01` under bench/work/, then runs the
real command `guard repair slugs --apply --no-backup` (--with-backup: with a BACKUP_DIR, so it takes
a guard backup first) while an app writer on its own connection updates ads one row per statement,
half of them rows the repair rewrites, and times every write: the longest is the longest time an app
write waited (for a lock, mostly), the figure the repair's batches and lock_timeout keep small. Then
`guard repair undo` puts the slugs back (timed the same way), so --reuse finds the same world.
Prints one JSON object.
"""

from __future__ import annotations

import argparse
import json
import random
import shutil
import sys
import threading
import time
from pathlib import Path
from typing import Any

import psycopg

from bench.common import WORK, timed, world

WORLD = "guard_bench_repair"
APP_WRITE = "UPDATE ads SET updated_at = now() WHERE id = %s"
BAD_IDS = """
SELECT id FROM ads WHERE slug IS NULL OR btrim(slug) = '' OR slug !~ '^[a-z0-9]+(-[a-z0-9]+)*-[0-9]+$'
   OR slug IN (SELECT slug FROM ads GROUP BY slug HAVING count(*) > 1)
"""


class AppWriter(threading.Thread):
    """Write one row at a time, as fast as the server answers, and keep every write's duration."""

    def __init__(self, url: str, bad: list[int], ads: int) -> None:
        super().__init__(daemon=True)
        self.url, self.bad, self.ads = url, bad, ads
        self.stop = threading.Event()
        self.durations: list[float] = []

    def run(self) -> None:
        rng = random.Random(7)
        with psycopg.connect(self.url, autocommit=True, application_name="bench-app") as conn:
            while not self.stop.is_set():
                key = rng.choice(self.bad) if rng.random() < 0.5 else rng.randint(1, self.ads)
                started = time.perf_counter()
                conn.execute(APP_WRITE, (key,))
                self.durations.append(time.perf_counter() - started)

    def summary(self) -> dict[str, Any]:
        ordered = sorted(self.durations)
        if not ordered:
            return {"writes": 0}
        return {
            "writes": len(ordered),
            "longest_write_s": round(ordered[-1], 4),
            "p99_write_s": round(ordered[int(len(ordered) * 0.99)], 4),
            "median_write_s": round(ordered[len(ordered) // 2], 5),
        }


def while_writing(
    url: str, bad: list[int], ads: int, command: list[str], env: dict[str, str]
) -> dict[str, Any]:
    writer = AppWriter(url, bad, ads)
    writer.start()
    time.sleep(1.0)  # the writer is up to speed before the command starts
    run = timed(command, env=env)
    writer.stop.set()
    writer.join()
    if run.returncode != 0:
        raise SystemExit(f"{' '.join(command)} failed with {run.returncode}")
    return {
        "wall_s": round(run.wall_s, 2),
        "max_rss_mb": round(run.max_rss_mb),
        "stdout": run.stdout,
        **writer.summary(),
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--ads", type=int, default=500_000)
    parser.add_argument("--reuse", action="store_true")
    parser.add_argument("--with-backup", action="store_true")
    args = parser.parse_args()
    truth = world(WORLD, args.ads, 0.01, args.reuse)
    url = str(truth["database_url"])
    with psycopg.connect(url, autocommit=True) as conn:
        bad = [int(r[0]) for r in conn.execute(BAD_IDS).fetchall()]
    env = {"DATABASE_URL": url, "UPLOADS_ROOT": str(truth["uploads_root"])}
    flags = ["--no-backup"]
    if args.with_backup:
        backups = WORK / "repair_backups"
        shutil.rmtree(backups, ignore_errors=True)
        env["BACKUP_DIR"] = str(backups)
        flags = []
    guard = [sys.executable, "-m", "guard", "repair"]
    print(f"guard repair slugs --apply on {args.ads:,} ads ({len(bad):,} bad slugs) ...", file=sys.stderr)
    applied = while_writing(url, bad, args.ads, [*guard, "slugs", "--apply", *flags, "--json"], env)
    result = json.loads(applied.pop("stdout"))
    print("guard repair undo ...", file=sys.stderr)
    undone = while_writing(url, bad, args.ads, [*guard, "undo", result["repair_id"], "--json"], env)
    undone.pop("stdout")
    if args.with_backup:
        shutil.rmtree(Path(env["BACKUP_DIR"]), ignore_errors=True)
    report = {
        "ads": args.ads,
        "bad_slugs": len(bad),
        "changed": result["changed"],
        "left_alone": result["skipped"],
        "backup": result["backup_id"] is not None,
        "apply": applied,
        "undo": undone,
    }
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
