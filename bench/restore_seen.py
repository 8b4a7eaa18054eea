"""Restore-to-finding latency: an old dump restored over the demo world, until its drift finding is open.

`.venv/bin/python -m bench.restore_seen [--ads 2000] [--rounds 3]` against the local PostgreSQL and
Redis, with a real listener and Celery worker (default settings: the fingerprint is read every
SCHEMA_WATCH_SECONDS=2). Both ways of restoring: `pg_restore --clean` over the live database, and
dropping and re-creating it before `pg_restore`. The clock starts when the restore starts and stops
when the drift finding is open in guard.findings. Scratch data under bench/work/; every process it
starts is stopped at the end.
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import statistics
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import psycopg

from bench.common import drop_broker_keys
from guard.config.settings import Settings
from guard.continuous.capture import install
from guard.db import servers as server
from guard.db.database import Database
from guard.demo.world import build_world

ROOT = Path(__file__).resolve().parent.parent
WORK = ROOT / "bench" / "work" / "restore_seen"
BIN = Path(sys.executable).parent
SERVER = os.environ.get("GUARD_BENCH_SERVER_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
REDIS = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0")
MIGRATIONS = ROOT / "examples" / "thulobazaar" / "prisma" / "migrations"
LIVE, TEMPLATE, OLD = "guard_bench_restore", "guard_bench_restore_tmpl", "guard_bench_restore_old"
# the finding each way of restoring must open (see tests/integration/test_sync_restore.py)
SEEN = {
    "pg_restore --clean": ("column_missing", "column:categories.form_template"),
    "drop, create, pg_restore": ("table_missing", "table:user_favorites"),
}
DEADLINE_S = 120.0


def url_for(name: str) -> str:
    return server.url_with_database(SERVER, name)


def admin(*statements: psycopg.sql.Composed) -> None:
    with psycopg.connect(SERVER, autocommit=True) as conn:
        for statement in statements:
            conn.execute(statement)


def old_dump() -> Path:
    """Dump a database with the init migration's schema and no history, like the write-up's old dump."""
    admin(server.drop_database(OLD), server.create_database(OLD))
    with Database(url_for(OLD)) as db:
        db.execute((MIGRATIONS / "20240101000000_init" / "migration.sql").read_text())
    dump = WORK / "old.dump"
    subprocess.run(["pg_dump", "-Fc", "-f", str(dump), "-d", url_for(OLD)], check=True)
    admin(server.drop_database(OLD))
    return dump


def template(ads: int) -> Path:
    """Build the demo world once (guard installed) as a template each round copies."""
    uploads = WORK / "uploads"
    build_world(SERVER, TEMPLATE, uploads, ads, 0.02)
    with Database(url_for(TEMPLATE)) as db:
        install(db, Settings(database_url=url_for(TEMPLATE)))
    return uploads


def fresh_live() -> None:
    admin(server.drop_database(LIVE), server.create_database(LIVE, TEMPLATE))


@contextmanager
def stack(uploads: Path, prefix: str) -> Iterator[None]:
    """A listener and a worker on the live database, killed (their whole groups) at the end."""
    env = {
        **os.environ,
        "DATABASE_URL": url_for(LIVE),
        "UPLOADS_ROOT": str(uploads),
        "MIGRATIONS_DIR": str(MIGRATIONS),
        "REDIS_URL": REDIS,
        "BROKER_PREFIX": prefix,
    }
    env.pop("GUARD_CONFIG", None)
    procs = []
    for name, argv in (
        (
            "worker",
            [
                str(BIN / "celery"),
                "-A",
                "workers",
                "worker",
                "-Q",
                "events,sweeps,alerts",
                "-c",
                "2",
                "-n",
                f"bench-{prefix[:-1]}@%h",
                "--without-gossip",
                "--without-mingle",
                "--loglevel",
                "INFO",
            ],
        ),
        ("listener", [str(BIN / "python"), "-m", "watchers.listener"]),
    ):
        log = (WORK / f"{name}.log").open("ab")
        procs.append(
            subprocess.Popen(
                argv, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
            )
        )
    try:
        yield
    finally:
        for proc in procs:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(30)
        drop_broker_keys(REDIS, prefix)


def poll(predicate: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + DEADLINE_S
    while not predicate():
        if time.monotonic() > deadline:
            raise SystemExit(f"bench: gave up waiting for {what}")
        time.sleep(0.05)


def query(sql: str, params: tuple[object, ...] = ()) -> int:
    """Return a count from the live database, 0 while it (or guard's schema) is away."""
    try:
        with Database(url_for(LIVE)) as db:
            row = db.fetch_one(sql, params)
    except Exception:  # noqa: BLE001 (mid-restore: the database or the table is not there yet)
        return 0
    return int(row[0]) if row else 0


def quiet() -> None:
    """Wait for the listener's first look at the fresh copy and the checks it sent to finish."""
    finished = (
        "SELECT count(*) FROM guard.task_runs "
        "WHERE run_key LIKE 'guard-schema-%%' AND finished_at IS NOT NULL"
    )
    poll(lambda: query(finished) >= 2, "the first look's sweeps")


def restore(way: str, dump: Path) -> float:
    """Restore the old dump one way; return how long the restore itself took."""
    started = time.monotonic()
    if way == "pg_restore --clean":
        subprocess.run(
            ["pg_restore", "--clean", "--if-exists", "-d", url_for(LIVE), str(dump)], capture_output=True
        )
    else:
        admin(server.drop_database(LIVE), server.create_database(LIVE, "template0", utf8=False))
        subprocess.run(["pg_restore", "-d", url_for(LIVE), str(dump)], check=True, capture_output=True)
    return time.monotonic() - started


def one_round(way: str, dump: Path) -> tuple[float, float]:
    kind, subject = SEEN[way]
    opened = "SELECT count(*) FROM guard.findings WHERE kind = %s AND subject = %s AND resolved_at IS NULL"
    quiet()
    started = time.monotonic()
    took = restore(way, dump)
    poll(lambda: query(opened, (kind, subject)) > 0, f"{kind} {subject}")
    return took, time.monotonic() - started


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--ads", type=int, default=2000, help="ads in the demo world (default 2000, as make run)"
    )
    parser.add_argument("--rounds", type=int, default=3, help="rounds of each way (default 3)")
    args = parser.parse_args()
    shutil.rmtree(WORK, ignore_errors=True)
    WORK.mkdir(parents=True)
    dump = old_dump()
    uploads = template(args.ads)
    print("| way | round | restore s | restore to open drift finding s |\n| --- | --- | --- | --- |")
    seen: dict[str, list[float]] = {way: [] for way in SEEN}
    try:
        for way in SEEN:
            for n in range(1, args.rounds + 1):
                fresh_live()
                with stack(uploads, f"guard-bench-restore-{uuid.uuid4().hex[:8]}:"):
                    took, total = one_round(way, dump)
                seen[way].append(total)
                print(f"| {way} | {n} | {took:.2f} | {total:.2f} |", flush=True)
    finally:
        admin(server.drop_database(LIVE), server.drop_database(TEMPLATE))
    for way, values in seen.items():
        print(f"{way}: median {statistics.median(values):.2f} s, max {max(values):.2f} s (goal < 10 s)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
