"""Benchmark `guard drift repair --apply` against the old one-transaction script, while an app writes.

Usage: .venv/bin/python -m bench.drift_repair [--ads 500000] [--reuse]

Builds (or with --reuse, reuses) the 500,000-ad world of bench.repair_slugs, copies it twice, and
gives each copy incident 1's drift plus what a careless hotfix loses: no `user_favorites`, no
`ads.custom_fields`, no `categories.form_template`, two indexes and a foreign key of `ads` gone, and
`ads.title` nullable. Then, with an app writer updating ads one row per statement on its own
connection and timing every write:
- `online`: the real command `guard drift repair --apply --no-backup` (indexes CONCURRENTLY,
  constraints NOT VALID then VALIDATE, one statement at a time under lock_timeout);
- `one_transaction`: the same repair as plain statements in one BEGIN/COMMIT through psql (what
  `guard drift sql` printed before it had an online form).
The longest write is how long the app was held up. Prints one JSON object; drops both copies.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import threading
import time
from typing import Any

import psycopg

from bench.common import SERVER_URL, WORK, timed, world
from bench.repair_slugs import WORLD
from guard.checks.drift import detect
from guard.config.settings import Settings
from guard.db import servers as server
from guard.demo.world import MIGRATIONS
from guard.schema.remedy import migration_script

DRIFT = (
    'DROP TABLE "user_favorites"',
    'ALTER TABLE "ads" DROP COLUMN "custom_fields"',
    'ALTER TABLE "categories" DROP COLUMN "form_template"',
    'DROP INDEX "ads_user_id_idx"',
    'DROP INDEX "ads_lower_title_idx"',
    'ALTER TABLE "ads" DROP CONSTRAINT "ads_user_id_fkey"',
    'ALTER TABLE "ads" ALTER COLUMN "title" DROP NOT NULL',
    "VACUUM ANALYZE ads",
)
APP_WRITE = "UPDATE ads SET updated_at = now() WHERE id = %s"


class Writer(threading.Thread):
    """Update one random ad at a time and keep each write's duration, and the writes refused."""

    def __init__(self, url: str, ads: int) -> None:
        super().__init__(daemon=True)
        self.url, self.ads = url, ads
        self.stop = threading.Event()
        self.durations: list[float] = []
        self.refused: list[str] = []

    def run(self) -> None:
        rng = random.Random(7)
        with psycopg.connect(self.url, autocommit=True, application_name="bench-app") as conn:
            while not self.stop.is_set():
                started = time.perf_counter()
                try:
                    conn.execute(APP_WRITE, (rng.randint(1, self.ads),))
                except psycopg.errors.DatabaseError as exc:  # a deadlock victim: the app saw an error
                    self.refused.append(type(exc).__name__)
                self.durations.append(time.perf_counter() - started)

    def summary(self) -> dict[str, Any]:
        ordered = sorted(self.durations)
        return {
            "writes": len(ordered),
            "refused": self.refused,
            "longest_write_s": round(ordered[-1], 4) if ordered else None,
            "p99_write_s": round(ordered[int(len(ordered) * 0.99)], 4) if ordered else None,
        }


def copy_with_drift(name: str) -> str:
    with psycopg.connect(SERVER_URL, autocommit=True) as conn:
        conn.execute(server.drop_database(name))
        conn.execute(server.create_database(name, WORLD, utf8=False))
    url = server.url_with_database(SERVER_URL, name)
    with psycopg.connect(url, autocommit=True) as conn:
        for statement in DRIFT:
            conn.execute(statement.encode())
    return url


def while_writing(url: str, ads: int, command: list[str], env: dict[str, str]) -> dict[str, Any]:
    writer = Writer(url, ads)
    writer.start()
    time.sleep(1.0)  # the writer is up to speed before the repair starts
    run = timed(command, env=env)
    writer.stop.set()
    writer.join()
    return {"exit": run.returncode, "wall_s": round(run.wall_s, 2), **writer.summary()}


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--ads", type=int, default=500_000)
    parser.add_argument("--reuse", action="store_true")
    args = parser.parse_args()
    world(WORLD, args.ads, 0.01, args.reuse)
    report: dict[str, Any] = {"ads": args.ads}
    names = ("guard_bench_drift_online", "guard_bench_drift_plain")
    try:
        url = copy_with_drift(names[0])
        env = {"DATABASE_URL": url, "MIGRATIONS_DIR": str(MIGRATIONS)}
        print("guard drift repair --apply (online) ...", file=sys.stderr)
        command = [sys.executable, "-m", "guard", "drift", "repair", "--apply", "--no-backup", "--json"]
        report["online"] = while_writing(url, args.ads, command, env)
        after = detect(Settings(database_url=url, migrations_dir=MIGRATIONS))  # type: ignore[arg-type]
        report["online"]["drift_after"] = len(after.findings())
        url = copy_with_drift(names[1])
        drift = detect(Settings(database_url=url, migrations_dir=MIGRATIONS))  # type: ignore[arg-type]
        # the plain statements the old `guard drift sql` wrote, in one transaction
        script = WORK / "drift_repair_one_transaction.sql"
        plain = migration_script((d.statements for d in drift.differences), "-- one transaction")
        script.write_text(f"BEGIN;\n{plain}COMMIT;\n")
        print("the same repair in one transaction (psql) ...", file=sys.stderr)
        psql = ["psql", url, "-q", "-X", "-v", "ON_ERROR_STOP=1", "-f", str(script)]
        report["one_transaction"] = while_writing(url, args.ads, psql, {})
    finally:
        with psycopg.connect(SERVER_URL, autocommit=True) as conn:
            for name in names:
                conn.execute(server.drop_database(name))
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
