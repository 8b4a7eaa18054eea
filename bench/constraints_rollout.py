"""Benchmark: roll the rules out as constraints on the 500,000-ad world while an app keeps writing.

Usage: .venv/bin/python -m bench.constraints_rollout [--ads 500000] [--reuse]

Builds (or with --reuse, reuses) a `guard demo --bad 0.01` world, copies its database into a scratch
one (so the world stays as built), and there, while an app writer inserts and updates ads (one
autocommit write every ~2 ms, each timed):
1. `guard constraints migrate` writes the NOT VALID step (the planted rows hold the rest back), and
   it is applied as Prisma applies a file (one multi-statement query) and recorded;
2. the broken rows are found, then fixed 500 per transaction;
3. `migrate` again writes the unique index and validate steps, and each is applied the same way.
Prints one JSON object: the wall time of each step and the longest, 99th-percentile and count of the
app's writes during it (goal: no write waits more than 1 s).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg

from bench.common import SERVER_URL, WORK, world
from guard.config.settings import Settings
from guard.constraints.plan import read_plan
from guard.constraints.rollout import plan_rollout, read_written, write_rollout
from guard.db.database import Database
from guard.db.servers import create_database, drop_database, url_with_database
from guard.schema.history import MigrationFile, apply_and_record

ROOT = Path(__file__).resolve().parent.parent
MIGRATIONS = ROOT / "examples" / "thulobazaar" / "prisma" / "migrations"
WORLD = "guard_bench_constraints"
SCRATCH = "guard_bench_constraints_run"
PAUSE_S = 0.002
BLANKS = r"E' \t\r\n\f\013'"
# The broken rows, found first (no row locks), then fixed a batch per transaction, as one would on a
# live database: one big UPDATE would hold the row locks of every row it fixed until it committed.
FIX_ROWS = (
    (
        "SELECT id FROM ads WHERE slug IS NULL OR btrim(slug, {b}) = ''"
        " OR slug !~ '^[a-z0-9]+(-[a-z0-9]+)*-[0-9]+$'"
        " OR slug IN (SELECT slug FROM ads GROUP BY slug HAVING count(*) > 1)",
        "UPDATE ads SET slug = 'ad-' || id WHERE id = ANY(%s)",
    ),
    (
        "SELECT id FROM ads WHERE btrim(title, {b}) = ''",
        "UPDATE ads SET title = 'Untitled ' || id WHERE id = ANY(%s)",
    ),
    (
        "SELECT id FROM categories WHERE btrim(name, {b}) = ''",
        "UPDATE categories SET name = 'Category ' || id WHERE id = ANY(%s)",
    ),
    (
        "SELECT id FROM ad_images WHERE file_path IS NULL OR btrim(file_path, {b}) = ''",
        "UPDATE ad_images SET file_path = 'uploads/ads/fixed-' || id || '.webp' WHERE id = ANY(%s)",
    ),
    (
        "SELECT i.id FROM ad_images i LEFT JOIN ads a ON a.id = i.ad_id WHERE a.id IS NULL",
        "DELETE FROM ad_images WHERE id = ANY(%s)",
    ),
)
FIX_BATCH = 500
INSERT_AD = "INSERT INTO ads (title, slug, category_id, user_id) VALUES ('Bench ad', %s, %s, %s) RETURNING id"
UPDATE_AD = "UPDATE ads SET title = %s, updated_at = now() WHERE id = %s"


@dataclass
class Writer:
    """The app: one connection inserting and updating ads until told to stop, timing every write."""

    url: str
    writes: list[tuple[float, float]] = field(default_factory=list)  # (finished at, seconds)
    errors: list[str] = field(default_factory=list)
    stop: threading.Event = field(default_factory=threading.Event)

    def run(self) -> None:
        rng = random.Random(1)
        with psycopg.connect(self.url, autocommit=True) as conn:
            row = conn.execute("SELECT min(id), max(id) FROM categories").fetchone()
            user = conn.execute("SELECT min(id) FROM users").fetchone()
            top = conn.execute("SELECT max(id) FROM ads").fetchone()
            assert row and user and top
            n = 0
            while not self.stop.is_set():
                n += 1
                if n % 2:
                    query, params = INSERT_AD, (f"bench-ad-{n}", row[0], user[0])
                else:
                    query, params = UPDATE_AD, (f"Bench {n}", rng.randint(1, top[0]))
                self._timed(lambda q=query, p=params: conn.execute(q, p))
                time.sleep(PAUSE_S)

    def _timed(self, write: Callable[[], object]) -> None:
        started = time.perf_counter()
        try:
            write()
        except psycopg.Error as exc:
            self.errors.append(str(exc).splitlines()[0])
        self.writes.append((time.perf_counter(), time.perf_counter() - started))

    def during(self, start: float, end: float) -> dict[str, Any]:
        waits = sorted(s for at, s in self.writes if start <= at <= end)
        if not waits:
            return {"writes": 0}
        return {
            "writes": len(waits),
            "max_write_ms": round(waits[-1] * 1000, 1),
            "p99_write_ms": round(waits[int(len(waits) * 0.99)] * 1000, 1),
        }


def step(report: list[dict[str, Any]], writer: Writer, label: str, work: Callable[[], object]) -> None:
    print(f"{label} ...", file=sys.stderr, flush=True)
    started = time.perf_counter()
    work()
    ended = time.perf_counter()
    # A write that started during the step may finish just after it: count it with the step.
    time.sleep(0.2)
    report.append({"step": label, "wall_s": round(ended - started, 2), **writer.during(started, ended + 0.2)})


def apply_folders(url: str, folders: list[Path]) -> None:
    with Database(url) as db:
        for script in folders:
            apply_and_record(db, MigrationFile(script.parent.name, script, script.read_bytes()))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ads", type=int, default=500_000)
    parser.add_argument("--reuse", action="store_true", help="reuse bench/work's world")
    args = parser.parse_args()
    truth = world(WORLD, args.ads, 0.01, args.reuse)
    with psycopg.connect(SERVER_URL, autocommit=True) as conn:
        conn.execute(drop_database(SCRATCH))
        conn.execute(create_database(SCRATCH, WORLD, utf8=False))
    url = url_with_database(SERVER_URL, SCRATCH)
    folder = WORK / "constraints_rollout" / "migrations"
    shutil.rmtree(folder.parent, ignore_errors=True)
    shutil.copytree(MIGRATIONS, folder)
    settings = Settings(database_url=url, migrations_dir=folder)  # type: ignore[arg-type]
    writer = Writer(url)
    thread = threading.Thread(target=writer.run, daemon=True)
    steps: list[dict[str, Any]] = []
    written: list[Path] = []

    def migrate() -> None:
        plans = read_plan(settings)
        written.extend(write_rollout(folder, plan_rollout(plans, read_written(folder))))

    try:
        thread.start()
        time.sleep(1.0)  # the app is writing before the first step
        step(steps, writer, "migrate (write not_valid)", migrate)
        step(steps, writer, "apply not_valid", lambda: apply_folders(url, written[:1]))
        step(steps, writer, "fix rows", lambda: _fix_rows(url))
        step(steps, writer, "migrate (write unique, validate)", migrate)
        for script in written[1:]:
            name = script.parent.name.split("_", 1)[1]
            step(steps, writer, f"apply {name}", lambda s=script: apply_folders(url, [s]))  # type: ignore[misc]
        writer.stop.set()
        thread.join()
    finally:
        writer.stop.set()
        with psycopg.connect(SERVER_URL, autocommit=True) as conn:
            conn.execute(drop_database(SCRATCH))
    report = {
        "ads": truth["ads"],
        "image_rows": truth.get("image_rows"),
        "files": [p.parent.name for p in written],
        "steps": steps,
        "app": {
            **writer.during(0, float("inf")),
            "refused": len(writer.errors),
            "refusals": sorted(set(writer.errors)),
        },
        "load_average": [round(x, 1) for x in os.getloadavg()],
    }
    print(json.dumps(report, indent=2))


def _fix_rows(url: str) -> None:
    with psycopg.connect(url, autocommit=True) as conn:
        for find, fix in FIX_ROWS:
            ids = [row[0] for row in conn.execute(find.replace("{b}", BLANKS).encode())]
            for n in range(0, len(ids), FIX_BATCH):
                conn.execute(fix, (ids[n : n + FIX_BATCH],))


if __name__ == "__main__":
    main()
