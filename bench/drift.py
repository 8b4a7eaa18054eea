"""Benchmark: `guard check drift` on 60 tables built by 180 migrations, against a psql replay.

Run: .venv/bin/python -m bench.drift [--tables 60] [--runs 3]
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import subprocess
import time
from pathlib import Path

import psycopg

from guard.checks import CheckContext
from guard.checks.drift import run as run_drift
from guard.config.settings import Settings
from guard.db.database import Database
from guard.db.servers import create_database, drop_database, url_with_database
from guard.schema.history import apply_and_record, ensure_migrations_table, read_migrations

SERVER = "postgresql://postgres@127.0.0.1:5432/postgres"
WORK = Path(__file__).resolve().parent / "work" / "drift"


def migration_scripts(tables: int) -> dict[str, str]:
    """Three migrations per table: create it, index and constrain it, then add a column and a view."""
    scripts: dict[str, str] = {}
    for n in range(tables):
        t = f"t{n:03d}"
        ref = f'"owner_id" INTEGER REFERENCES "t{n - 1:03d}"("id"),' if n else ""
        scripts[f"2024{n:04d}0001_create_{t}"] = (
            f'CREATE TABLE "{t}" ("id" SERIAL PRIMARY KEY, {ref} "name" TEXT NOT NULL,'
            f" \"status\" VARCHAR(20) NOT NULL DEFAULT 'new',"
            f' "created_at" TIMESTAMP(3) NOT NULL DEFAULT CURRENT_TIMESTAMP);\n'
        )
        scripts[f"2024{n:04d}0002_index_{t}"] = (
            f'CREATE UNIQUE INDEX "{t}_name_key" ON "{t}" ("name");\n'
            f'CREATE INDEX ON "{t}" (lower("name")) WHERE "status" = \'new\';\n'
            f'ALTER TABLE "{t}" ADD CHECK (length("name") > 0);\n'
        )
        scripts[f"2024{n:04d}0003_extend_{t}"] = (
            f'ALTER TABLE "{t}" ADD COLUMN "score" INTEGER NOT NULL DEFAULT 0;\n'
            f'CREATE VIEW "{t}_new" AS SELECT "id", "name" FROM "{t}" WHERE "status" = \'new\';\n'
        )
    return scripts


def write_folder(scripts: dict[str, str]) -> Path:
    folder = WORK / "migrations"
    shutil.rmtree(folder, ignore_errors=True)
    for name, text in scripts.items():
        (folder / name).mkdir(parents=True)
        (folder / name / "migration.sql").write_text(text)
    return folder


def recreate(name: str) -> str:
    with psycopg.connect(SERVER, autocommit=True) as conn:
        conn.execute(drop_database(name))
        conn.execute(create_database(name, "template1", utf8=False))
    return url_with_database(SERVER, name)


def drop(name: str) -> None:
    with psycopg.connect(SERVER, autocommit=True) as conn:
        conn.execute(drop_database(name))


def time_psql(folder: Path) -> tuple[float, float]:
    """Return (create database + psql replay, psql replay alone) in seconds."""
    started = time.perf_counter()
    url = recreate("guard_bench_psql")
    created = time.perf_counter()
    files = [str(p / "migration.sql") for p in sorted(folder.iterdir())]
    args = ["psql", url, "-q", "-v", "ON_ERROR_STOP=1", "-X"]
    for f in files:
        args += ["-f", f]
    subprocess.run(args, check=True)
    done = time.perf_counter()
    drop("guard_bench_psql")
    return done - started, done - created


def time_drift(url: str, folder: Path) -> tuple[float, int]:
    started = time.perf_counter()
    result = run_drift(CheckContext(Settings(database_url=url, migrations_dir=folder)))
    elapsed = time.perf_counter() - started
    assert result.ok, result.counts
    return elapsed, int(result.info["migrations_replayed"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--tables", type=int, default=60)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    folder = write_folder(migration_scripts(args.tables))
    live = recreate("guard_bench_live")
    with Database(live) as db:
        ensure_migrations_table(db)
        for migration in read_migrations(folder):
            apply_and_record(db, migration)
    try:
        psql = [time_psql(folder) for _ in range(args.runs)]
        drift = [time_drift(live, folder) for _ in range(args.runs)]
    finally:
        drop("guard_bench_live")
    with_create = statistics.median(p[0] for p in psql)
    alone = statistics.median(p[1] for p in psql)
    guard_s = statistics.median(d[0] for d in drift)
    print(f"tables={args.tables} migrations={drift[0][1]} runs={args.runs} (medians)")
    print(f"psql replay alone:                 {alone:.3f}s")
    print(f"createdb + psql replay:            {with_create:.3f}s")
    print(f"guard check drift (total):         {guard_s:.3f}s")
    print(f"ratio drift / psql alone:          {guard_s / alone:.2f}x")
    print(f"ratio drift / createdb + psql:     {guard_s / with_create:.2f}x")


if __name__ == "__main__":
    main()
