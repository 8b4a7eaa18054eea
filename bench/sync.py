"""Continuous-sync benchmarks: commit-to-finding latency, backlog under load, trigger cost.

`.venv/bin/python -m bench.sync [--seconds 60]` against the local PostgreSQL and Redis. Scratch
data under bench/work/; every process it starts is stopped at the end.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path
from typing import BinaryIO

import psycopg
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict

from bench import floor
from bench.common import drop_broker_keys, paced, percentile
from bench.cores import MODES, CoreSplit
from bench.cpu import CpuMeter
from guard.config.settings import Settings
from guard.continuous import outbox
from guard.continuous.capture import TRIGGER_NAMES, install, uninstall
from guard.continuous.outbox import set_listener_idle
from guard.db import servers as server
from guard.db.database import Database
from guard.schema.history import apply_and_record, ensure_migrations_table, read_migrations

ROOT = Path(__file__).resolve().parent.parent
WORK = ROOT / "bench" / "work" / "sync"
BIN = Path(sys.executable).parent
SERVER = os.environ.get("GUARD_BENCH_SERVER_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
REDIS_URL = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0")  # the stack's broker, as it reads it
MIGRATIONS = ROOT / "examples" / "thulobazaar" / "prisma" / "migrations"
PGBENCH_MAX_TPS = 6000  # listings a second no run here reaches: the files made for a run
PGBENCH_SCRIPT = """\\set n random(1, 1000000000)
INSERT INTO ads (title, slug, category_id, user_id)
  VALUES ('Bench ad', 'bench-' || :client_id || '-' || :n, 1, 1) RETURNING id AS ad \\gset
INSERT INTO ad_images (ad_id, filename, file_path)
  VALUES (:ad, 'f.webp', 'uploads/ads/bench-' || :ad || '.webp');
UPDATE ads SET slug = 'bench-upd-' || :ad, updated_at = now() WHERE id = :ad;
"""


def url_for(name: str) -> str:
    return server.url_with_database(SERVER, name)


# --slug-index: the app's own index on ads.slug (a Prisma `@@index([slug])`), which the reference
# schema lacks; with it the unique rule's keyed check reads the index instead of scanning `ads` twice.
SLUG_INDEX = False
# --ads: listings the app already has when a run starts. 0 (the default) starts from an empty table
# whose statistics never catch up during a run: PostgreSQL then plans the checks' keyed reads as scans.
WORLD_ADS = 0


def fresh_database(name: str) -> str:
    with psycopg.connect(SERVER, autocommit=True) as conn:
        conn.execute(server.drop_database(name))
        conn.execute(server.create_database(name))
    url = url_for(name)
    with Database(url) as db:
        ensure_migrations_table(db)
        for migration in read_migrations(MIGRATIONS):
            apply_and_record(db, migration)
        db.execute("INSERT INTO users (id, email) VALUES (1, 'bench@example.com')")
        db.execute("INSERT INTO categories (id, name, slug) VALUES (1, 'Cars', 'cars')")
        if SLUG_INDEX:
            db.execute("CREATE INDEX ads_slug_idx ON ads (slug)")
        if WORLD_ADS:
            # good listings already there, and statistics that know them (as on a live app's database)
            db.execute(
                "INSERT INTO ads (title, slug, category_id, user_id)"
                " SELECT 'old', 'old-' || n, 1, 1 FROM generate_series(1, %s) n",
                (WORLD_ADS,),
            )
            db.execute("ANALYZE ads")
    return url


def drop_database(name: str) -> None:
    with psycopg.connect(SERVER, autocommit=True) as conn:
        conn.execute(server.drop_database(name))


class Stack:
    """The Procfile's listener and `instances` workers of `concurrency` processes each; always stopped."""

    def __init__(
        self, url: str, uploads: Path, concurrency: int = 2, instances: int = 1, code: Path = ROOT
    ) -> None:
        self.concurrency, self.instances, self.code = concurrency, instances, code
        self.prefix = f"guard-bench-{uuid.uuid4().hex[:8]}:"
        self.env = {
            **os.environ,
            "DATABASE_URL": url,
            "UPLOADS_ROOT": str(uploads),
            "BROKER_PREFIX": self.prefix,
            "REDIS_URL": REDIS_URL,
            "PYTHONUNBUFFERED": "1",
            "PYTHONPATH": str(code),  # before the editable install: --baseline runs an older tree
        }
        self.procs: list[subprocess.Popen[bytes]] = []

    def start(self, listener: bool = True) -> None:
        log = (WORK / "stack.log").open("ab")
        workers = [
            [
                str(BIN / "celery"),
                "-A",
                "workers",
                "worker",
                "-Q",
                "events,sweeps,alerts",
                "-c",
                str(self.concurrency),
                "-n",
                f"bench-{self.prefix[:-1]}-{i}@%h",
                "--without-gossip",
                "--without-mingle",
                "--loglevel",
                "WARNING",
            ]
            for i in range(self.instances)
        ]
        for argv in workers:
            self.spawn(argv, log)
        if listener:
            self.start_listener()
        time.sleep(4 + self.instances)

    def start_listener(self) -> None:
        self.spawn([str(BIN / "python"), "-m", "watchers.listener"], (WORK / "stack.log").open("ab"))

    def spawn(self, argv: list[str], log: BinaryIO) -> None:
        self.procs.append(
            subprocess.Popen(
                argv,
                cwd=self.code,
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        )

    def roles(self) -> dict[str, int]:
        """Each process by role, for the CPU meter (a worker's pool processes are its children)."""
        names = [f"worker {i + 1}" for i in range(self.instances)] + ["listener"]
        return {name: proc.pid for name, proc in zip(names, self.procs, strict=False)}

    def describe(self) -> str:
        return f"{self.instances} worker{'s' if self.instances > 1 else ''} x -c {self.concurrency}"

    def stop(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)  # warm shutdown; the worker stops its own children
        for proc in self.procs:
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(5)
        drop_broker_keys(REDIS_URL, self.prefix)


def paced_writes(
    url: str,
    rate: int,
    seconds: float,
    bad_every: int,
    commits: dict[str, float],
    writers: int = 1,
    threads: dict[str, int] | None = None,
) -> int:
    """Insert ads at `rate` per second from `writers` connections; every bad_every-th has a bad slug."""
    if writers > 1:
        counts = [0] * writers

        def one(i: int) -> None:
            counts[i] = paced_writes(url, rate // writers, seconds, bad_every, commits)

        threads = [threading.Thread(target=one, args=(i,)) for i in range(writers)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        return sum(counts)
    if threads is not None:
        threads["writer"] = threading.get_native_id()
    with psycopg.connect(url, autocommit=True, application_name="bench-writer") as conn:

        def write(n: int) -> None:
            bad = (n + 1) % bad_every == 0
            slug = f"Bad Slug {uuid.uuid4().hex[:8]}" if bad else f"ad-{uuid.uuid4().hex[:8]}-1"
            row = conn.execute(
                "INSERT INTO ads (title, slug, category_id, user_id) VALUES ('t', %s, 1, 1) RETURNING id",
                (slug,),
            ).fetchone()
            if bad and row:
                commits[f"ads:{row[0]}"] = time.time()

        return paced(rate, seconds, write)


HOLE_S = 30.0  # how long the finding poller looks for an id it skipped over
POLL_S = 0.002  # how often the bench looks for new findings: up to this much is in every latency figure
FLOOR_S = 20.0  # latency: how long bench/floor.py measures the floor after each run (0: not at all)
STAGES = (
    ("commit -> collected (listener wake-up, waiting, collect)", "changed_at", None),
    ("collected -> claim begins (collect commit, park)", "dispatched_at", "changed_at"),
    (
        "claim begins -> worker's transaction begins (claim, publish, commit, Celery)",
        "processed_at",
        "dispatched_at",
    ),
    ("worker's transaction begins -> finding visible (check, findings, commit, poll)", None, "processed_at"),
)


def watch_findings(
    url: str, seen: dict[str, float], stop: threading.Event, threads: dict[str, int] | None = None
) -> None:
    """Record when each finding is first visible (polled every POLL_S).

    Ids commit out of order across workers, so an id skipped over is looked for again on every poll
    (a transaction still open, or a gap the sequence left) for HOLE_S; each poll returns only new rows.
    The first version re-read a window of the last 100 ids every time: 50,000 rows a second parsed on
    the same two cores as what it measures.
    """
    last = 0
    holes: dict[int, float] = {}  # ids below `last` not seen yet, and since when
    if threads is not None:
        threads["finding poller"] = threading.get_native_id()
    with psycopg.connect(url, autocommit=True, application_name="bench-poller") as conn:
        while not stop.is_set():
            # two primary-key lookups, not "id > %s OR id = ANY(%s)": planned as a scan of the whole
            # findings table (500 a second), that cost the bench's own backend 8% of a core
            rows = conn.execute(
                "SELECT id, subject FROM guard.findings WHERE id > %s"
                " UNION ALL SELECT id, subject FROM guard.findings WHERE id = ANY(%s) ORDER BY id",
                (last, list(holes)),
            ).fetchall()
            now = time.time()
            for fid, subject in rows:
                seen.setdefault(subject, now)
                holes.pop(fid, None)
                if fid > last:
                    holes.update(dict.fromkeys(range(last + 1, fid), now))
                    last = fid
            for hole in [h for h, since in holes.items() if now - since > HOLE_S]:
                del holes[hole]
            time.sleep(POLL_S)


def backlog(url: str) -> int:
    """Changes not yet checked: captured but not collected, plus collected but not processed."""
    with Database(url) as db:
        return outbox.backlog(db)


def drained(db: Database) -> None:
    """Wait until every change is checked (at most DRAIN_S); say so if some were not."""
    deadline = time.monotonic() + DRAIN_S
    while (left := outbox.backlog(db)) and time.monotonic() < deadline:
        time.sleep(0.05)
    if left:
        print(f"pgbench: {left} changes still unchecked {DRAIN_S} s after the run", flush=True)


BREAKDOWN = """
SELECT row_key, extract(epoch FROM changed_at)::float8, extract(epoch FROM dispatched_at)::float8,
       extract(epoch FROM processed_at)::float8
FROM guard.outbox WHERE tbl = 'ads' AND row_key = ANY(%s)
"""


def breakdown(url: str, commits: dict[str, float], seen: dict[str, float]) -> list[str]:
    """Where each bad row's time went, from the outbox's own timestamps (same clock as the writer).

    changed_at is when collect wrote the outbox row (clock_timestamp), dispatched_at when the claiming
    transaction began, processed_at when the worker's transaction began (now()).
    """
    keys = [s.split(":", 1)[1] for s in commits if s in seen]
    with psycopg.connect(url, autocommit=True) as conn:
        rows = conn.execute(BREAKDOWN, (keys,)).fetchall()
    lines = []
    for name, end, begin in STAGES:
        spans = []
        for key, changed, dispatched, processed in rows:
            marks = {"changed_at": changed, "dispatched_at": dispatched, "processed_at": processed}
            t0 = commits[f"ads:{key}"] if begin is None else marks[begin]
            t1 = seen[f"ads:{key}"] if end is None else marks[end]
            if t0 is not None and t1 is not None:
                spans.append((t1 - t0) * 1000)
        if spans:
            lines.append(
                f"  {name}: p50 {percentile(spans, 50):.1f} ms, p99 {percentile(spans, 99):.1f} ms, "
                f"mean {statistics.mean(spans):.1f} ms"
            )
    return lines


def tasks(url: str) -> str:
    """How many worker transactions checked the changes (each has its own now(): processed_at)."""
    with psycopg.connect(url, autocommit=True) as conn:
        row = conn.execute(
            "SELECT count(DISTINCT processed_at), count(processed_at) FROM guard.outbox"
        ).fetchone()
    count, rows = (int(row[0]), int(row[1])) if row else (0, 0)
    return f"{count} worker transactions checked {rows} outbox rows ({rows / max(1, count):.1f} each)"


def baseline_tree(ref: str) -> Path:
    """Export commit `ref` (only what it tracks) next to the scratch data, to run its processes."""
    commit = subprocess.run(
        ["git", "rev-parse", "--short", ref], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout.strip()
    tree = WORK / f"baseline-{commit}"
    if not tree.exists():
        tree.mkdir(parents=True)
        archive = subprocess.run(["git", "archive", commit], cwd=ROOT, capture_output=True, check=True).stdout
        subprocess.run(["tar", "-x", "-C", str(tree)], input=archive, check=True)
    return tree


def bench_latency(
    url: str, uploads: Path, seconds: float, rate: int = 200, concurrency: int = 2, code: Path = ROOT
) -> None:
    stack = Stack(url, uploads, concurrency, code=code)
    stack.start()
    commits: dict[str, float] = {}
    seen: dict[str, float] = {}
    stop = threading.Event()
    threads: dict[str, int] = {"writer": threading.get_native_id()}
    watcher = threading.Thread(target=watch_findings, args=(url, seen, stop, threads), daemon=True)
    watcher.start()
    meter = CpuMeter(SERVER, str(psycopg.conninfo.conninfo_to_dict(url)["dbname"]), threads, stack.roles())
    try:
        time.sleep(0.1)  # the poller has connected and named its thread
        before, started = meter.sample(), time.perf_counter()
        written = paced_writes(url, rate, seconds, 2, commits)
        after, wall = meter.sample(), time.perf_counter() - started
        deadline = time.time() + 30
        while time.time() < deadline and not all(s in seen for s in commits):
            time.sleep(0.1)
    finally:
        stop.set()
        watcher.join(5)
        stack.stop()
    lat = [(seen[s] - t) * 1000 for s, t in commits.items() if s in seen]
    which = "this tree" if code == ROOT else code.name.replace("baseline-", "commit ")
    print(
        f"[{which}] latency @{rate} writes/s for {seconds:.0f}s ({stack.describe()}, findings polled every "
        f"{POLL_S * 1000:.0f} ms): {written} writes, {len(commits)} bad rows, "
        f"{len(lat)} findings opened; commit->open finding p50 {percentile(lat, 50):.1f} ms, "
        f"p99 {percentile(lat, 99):.1f} ms, max {max(lat):.0f} ms; "
        f"missing {len(commits) - len(lat)}",
        flush=True,
    )
    print("\n".join(breakdown(url, commits, seen)), flush=True)
    print(f"  {tasks(url)}", flush=True)
    print(f"  CPU while writing ({wall:.1f} s wall, 2 cores = 200%):", flush=True)
    print("\n".join(meter.report(before, after, wall, written)), flush=True)
    if FLOOR_S > 0:  # the same machine a moment later, guard's processes stopped (bench/floor.py)
        print(floor.measure(url, rate, FLOOR_S).line(), flush=True)


def bench_backlog(
    url: str,
    uploads: Path,
    seconds: float,
    rate: int = 2000,
    concurrency: int = 2,
    instances: int = 1,
    code: Path = ROOT,
) -> None:
    stack = Stack(url, uploads, concurrency, instances, code)
    stack.start()
    samples: list[tuple[float, int]] = []
    stop = threading.Event()

    def sample() -> None:
        t0 = time.time()
        while not stop.is_set():
            samples.append((time.time() - t0, backlog(url)))
            stop.wait(2)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    meter = CpuMeter(SERVER, str(psycopg.conninfo.conninfo_to_dict(url)["dbname"]), {}, stack.roles())
    try:
        before, started = meter.sample(), time.perf_counter()
        written = paced_writes(url, rate, seconds, 10, {}, writers=min(16, max(1, rate // 100)))
        after, wall = meter.sample(), time.perf_counter() - started
        stop.set()
        sampler.join(10)
        drain_start = time.time()
        while backlog(url) and time.time() - drain_start < 120:
            time.sleep(0.05)
        drained = time.time() - drain_start
    finally:
        stack.stop()
    shown = ", ".join(f"{t:.0f}s:{n}" for t, n in samples)
    print(
        f"[{code.name}] backlog @{rate} writes/s for {seconds:.0f}s ({stack.describe()}; {written} writes, "
        f"{written / seconds:.0f}/s achieved): unprocessed over time [{shown}], max "
        f"{max(n for _, n in samples)}; drained {drained:.2f}s after writes stopped; {tasks(url)}",
        flush=True,
    )
    print(f"  CPU while writing ({wall:.1f} s wall, 2 cores = 200%):", flush=True)
    print("\n".join(meter.report(before, after, wall, written)), flush=True)


def bench_throughput(
    url: str, uploads: Path, rows: int, concurrency: int, instances: int, code: Path = ROOT
) -> float:
    """Checking capacity: `rows` changes captured while nothing runs, then drained by the stack.

    The workers start first; the clock runs from the listener's start to an empty backlog.
    """
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(
            "INSERT INTO ads (title, slug, category_id, user_id)"
            " SELECT 't', CASE WHEN i %% 10 = 0 THEN 'Bad ' || i ELSE 'ad-' || i END, 1, 1"
            " FROM generate_series(1, %s) i",
            (rows,),
        )
    stack = Stack(url, uploads, concurrency, instances, code)
    try:
        stack.start(listener=False)
        started = time.time()
        stack.start_listener()
        while backlog(url) and time.time() - started < 600:
            time.sleep(0.05)
        took = time.time() - started
    finally:
        stack.stop()
    print(
        f"[{code.name}] throughput ({stack.describe()}): {rows} captured changes checked in {took:.2f} s "
        f"= {rows / took:.0f} changes/s (from the listener's start, its own start-up included)",
        flush=True,
    )
    return rows / took


class Pgbench:
    """One pgbench run: transactions a second and, from its per-transaction log, latency in ms."""

    def __init__(self, tps: float, latencies_ms: list[float]) -> None:
        self.tps, self.listings = tps, len(latencies_ms)
        self.wal_bytes = float("nan")  # the WAL written per listing, set by bench_triggers
        latencies = latencies_ms or [0.0]
        self.p50, self.p99 = percentile(latencies, 50), percentile(latencies, 99)


def pgbench_argv(script: Path, seconds: int, rate: int | None = None) -> list[str]:
    """pgbench of the app's listings as every bench runs it: 4 clients on 2 threads, `rate` a second."""
    argv = ["pgbench", "-n", "-c", "4", "-j", "2", "-T", str(seconds), "-f", str(script)]
    return argv + (["-R", str(rate)] if rate else [])


def pgbench(
    url: str, seconds: int, wrapped: bool, rate: int | None = None, cores: CoreSplit | None = None
) -> Pgbench:
    """Run the app's listing writes; with `rate`, at that many listings a second (pgbench -R); with
    `cores`, on the app's core."""
    script = WORK / ("app_writes_tx.sql" if wrapped else "app_writes.sql")
    body = PGBENCH_SCRIPT.replace("\\gset", "\\gset", 1)
    script.write_text(f"BEGIN;\n{body}COMMIT;\n" if wrapped else body)
    logs = WORK / "pgbench-log"
    shutil.rmtree(logs, ignore_errors=True)
    logs.mkdir(parents=True)
    argv = [*pgbench_argv(script, seconds, rate), "--log", f"--log-prefix={logs / 'tx'}", url]
    out = subprocess.run(
        cores.app(argv) if cores is not None else argv, capture_output=True, text=True, check=True
    ).stdout
    match = re.search(r"tps = ([0-9.]+)", out)
    # the log's third column: the listing's latency in microseconds, from its scheduled start under
    # -R (schedule lag included); a failed or skipped one says so instead and is left out
    columns = [line.split() for log in logs.iterdir() for line in log.read_text().splitlines()]
    latencies = [int(c[2]) / 1000 for c in columns if len(c) > 2 and c[2].isdigit()]
    if len(latencies) < len(columns):
        print(f"pgbench: {len(columns) - len(latencies)} listings failed or skipped", flush=True)
    return Pgbench(float(match.group(1)) if match else 0.0, latencies)


def existing_files(url: str, uploads: Path, seconds: int) -> None:
    """Create the image files the next `seconds` of listings will name, so the app is healthy: a
    listing whose file is missing opens a finding, which is an incident, not the app's steady state."""
    with psycopg.connect(url, autocommit=True) as conn:  # the next ids (a rollback leaves a gap)
        row = conn.execute("SELECT pg_sequence_last_value(pg_get_serial_sequence('ads', 'id'))").fetchone()
    first = int(row[0]) + 1 if row and row[0] is not None else 1
    folder = uploads / "uploads" / "ads"
    for ad in range(first, first + seconds * PGBENCH_MAX_TPS):
        (folder / f"bench-{ad}.webp").touch()
    os.sync()  # their writeback is not the run's: it would compete with the WAL's fsyncs


VARIANTS = ("without", "noop", "append", "busy", "idle", "alongside")
# bytes from the insert position, which needs no statistics flush; the whole server's WAL, so the
# bench's database should be the only one busy (autovacuum and the checkpointer count too)
WAL_POSITION = "SELECT pg_current_wal_insert_lsn()"
WAL_SINCE = "SELECT pg_wal_lsn_diff(pg_current_wal_insert_lsn(), %s)"
DRAIN_S = 30
CAPTURE_FUNCTIONS = """
SELECT DISTINCT n.nspname, p.proname FROM pg_trigger t
JOIN pg_proc p ON p.oid = t.tgfoid JOIN pg_namespace n ON n.oid = p.pronamespace
WHERE t.tgname = ANY(%s)
"""


def empty_capture(db: Database) -> None:
    """Give every capture trigger an empty body: the "noop" variant, what a row trigger costs the
    app's write before it does anything (its WHEN clause and the call), the floor under "busy"."""
    for schema, function in db.fetch_all(CAPTURE_FUNCTIONS, (list(TRIGGER_NAMES),)):
        name = sql.Identifier(str(schema), str(function))
        body = "RETURNS trigger LANGUAGE plpgsql SECURITY DEFINER AS $$BEGIN RETURN NULL; END$$"
        db.execute(sql.SQL("CREATE OR REPLACE FUNCTION {}() " + body).format(name))


WAKE_UP_CHECK = re.compile(
    r"\n\s*IF EXISTS \(SELECT FROM guard\.listener_state WHERE idle\) THEN\n.*?END IF;", re.S
)


def capture_without_wake_up(db: Database) -> None:
    """Drop the wake-up check from every capture trigger (the "append" variant): the capture row
    alone, so "busy" against it is what asking whether a listener is idle costs each changed row."""
    for schema, function in db.fetch_all(CAPTURE_FUNCTIONS, (list(TRIGGER_NAMES),)):
        name = sql.Identifier(str(schema), str(function))
        row = db.fetch_one("SELECT pg_get_functiondef(%s::regproc)", (f"{schema}.{function}",))
        body, found = WAKE_UP_CHECK.subn("", str(row[0]) if row else "")
        if found != 1:
            raise SystemExit(f"bench: {name.as_string()}'s body has no wake-up check to drop")
        db.execute(body)


def bench_triggers(
    url: str,
    uploads: Path,
    seconds: int,
    wrapped: bool,
    rounds: int,
    variants: list[str],
    rate: int | None = None,
    missing_files: bool = False,
    cores: str | None = None,
) -> None:
    """pgbench without triggers and with them: "noop" with their bodies emptied (empty_capture),
    "append" with the capture row but no wake-up check (capture_without_wake_up), "busy" and "idle"
    with no listener (the flag forced down or up), "alongside" with the Procfile's listener and
    worker running and checking.

    "without" runs with the same listener and worker started (idle: no guard schema to drain), so
    the two differ only by the triggers and the work they cause. The variants alternate, round after
    round, so drift in the machine's load hits them alike. Each listing's image file exists unless
    `missing_files` (then every listing is an incident, a finding opened and announced). With `rate`
    the listings come at that pace (pgbench -R) and the cost is their latency, not the tps. With
    `cores` the app and guard run on cores of their own (bench/cores.py).
    """
    settings = Settings(database_url=url)
    split = CoreSplit(SERVER, str(conninfo_to_dict(url)["dbname"]), cores) if cores else None
    runs: dict[str, list[Pgbench]] = {v: [] for v in variants}
    with Database(url) as db:
        for _ in range(rounds):
            for variant in runs:
                uninstall(db)
                if variant != "without":
                    install(db, settings)
                    # under a stream of writes a listener drains without waiting ("busy"); the
                    # "idle" run is the worst case, every write sending pg_notify
                    set_listener_idle(db, variant == "idle")
                if variant == "noop":
                    empty_capture(db)
                if variant == "append":
                    capture_without_wake_up(db)
                if variant == "alongside" and not missing_files:
                    existing_files(url, uploads, seconds)
                db.execute("CHECKPOINT")
                stack = Stack(url, uploads) if variant in ("without", "alongside") else None
                with split or contextlib.nullcontext():
                    try:
                        if stack is not None:
                            stack.start()
                        wal = db.fetch_one(WAL_POSITION)
                        run = pgbench(url, seconds, wrapped, rate, split)
                        if variant == "alongside":  # guard's WAL for these listings: all checked
                            drained(db)
                    finally:
                        if stack is not None:
                            stack.stop()
                after = db.fetch_one(WAL_SINCE, (wal[0],)) if wal else None
                if after and run.listings:
                    run.wal_bytes = float(after[0]) / run.listings
                runs[variant].append(run)
    shape = "one transaction per listing" if wrapped else "each statement its own transaction"
    world = "every image file missing" if missing_files else "image files exist"
    if rate is None:
        tps = {k: [round(r.tps) for r in v] for k, v in runs.items()}
        best, median = max(tps["without"]), statistics.median(tps["without"])
        shown = "; ".join(
            f"{k} {v}: best {max(v):.0f} tps ({100 * (best - max(v)) / best:+.1f}% slower), "
            f"median {statistics.median(v):.0f} ({100 * (median - statistics.median(v)) / median:+.1f}%)"
            for k, v in tps.items()
        )
        pace = "as fast as they go"
    else:
        base50 = statistics.median(r.p50 for r in runs["without"]) or 1e-9
        base99 = statistics.median(r.p99 for r in runs["without"]) or 1e-9
        shown = "; ".join(
            f"{k}: p50 {[round(r.p50, 2) for r in v]} ms"
            f" ({100 * (statistics.median(r.p50 for r in v) - base50) / base50:+.0f}%),"
            f" p99 {[round(r.p99, 2) for r in v]} ms"
            f" ({100 * (statistics.median(r.p99 for r in v) - base99) / base99:+.0f}%),"
            f" tps {[round(r.tps) for r in v]}"
            for k, v in runs.items()
        )
        pace = f"{rate} listings/s (pgbench -R), latency per listing, medians compared"
    shown += "; WAL bytes a listing (median): " + ", ".join(
        f"{k} {statistics.median(r.wal_bytes for r in v):.0f}" for k, v in runs.items()
    )
    print(
        f"pgbench app writes (insert ad, insert image, update slug; {shape}; {world}; 4 clients, "
        f"{pace}; {seconds}s x{rounds}{'; cores split: ' + cores if cores else ''}): {shown}",
        flush=True,
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=float, default=60)
    parser.add_argument("--pgbench-seconds", type=int, default=15)
    parser.add_argument("--rounds", type=int, default=2, help="pgbench runs of each trigger variant")
    parser.add_argument(
        "--variants", default="without,alongside", help=f"triggers: which of {', '.join(VARIANTS)} to run"
    )
    parser.add_argument("--only", choices=["latency", "backlog", "triggers", "throughput"])
    parser.add_argument(
        "--pgbench-rate", type=int, help="triggers: listings a second (pgbench -R); latency is the cost"
    )
    parser.add_argument(
        "--missing-files",
        action="store_true",
        help="triggers: no listing's image file exists (every write opens a finding: an incident)",
    )
    parser.add_argument(
        "--cores",
        choices=MODES,
        help="triggers: the app on one core, guard on another: its Python processes, or all (bench/cores.py)",
    )
    parser.add_argument("--rate", type=int, help="writes per second (latency 200, backlog 2000)")
    parser.add_argument("--concurrency", type=int, default=2, help="processes per worker (the Procfile's 2)")
    parser.add_argument("--instances", type=int, default=1, help="worker instances (Procfile worker lines)")
    parser.add_argument("--rows", type=int, default=50000, help="changes the throughput bench drains")
    parser.add_argument(
        "--baseline",
        metavar="REF",
        help="latency: alternate runs of this commit's processes with this tree's",
    )
    parser.add_argument("--poll-ms", type=float, default=2, help="latency: how often findings are looked for")
    parser.add_argument(
        "--floor-seconds",
        type=float,
        default=20.0,
        help="latency: after each run, a bare NOTIFY and a bare Celery task at the same rate for this "
        "long, the floor under commit -> finding (bench/floor.py; 0: skip)",
    )
    parser.add_argument("--tree", metavar="REF", help="backlog, throughput: run this commit's processes")
    parser.add_argument(
        "--repeat",
        type=int,
        default=1,
        help="latency: rounds (with --baseline, of each, the first side alternating)",
    )
    parser.add_argument(
        "--slug-index",
        action="store_true",
        help="give the app's ads.slug an index (the reference schema has none) to see what it saves",
    )
    parser.add_argument(
        "--ads",
        type=int,
        default=0,
        metavar="N",
        help="start from N good listings the app already has, analysed (default 0: an empty table)",
    )
    args = parser.parse_args()
    global FLOOR_S, POLL_S, SLUG_INDEX, WORLD_ADS
    WORLD_ADS = args.ads
    POLL_S = args.poll_ms / 1000
    FLOOR_S = args.floor_seconds
    SLUG_INDEX = args.slug_index
    WORK.mkdir(parents=True, exist_ok=True)
    uploads = WORK / "uploads"
    shutil.rmtree(uploads, ignore_errors=True)
    (uploads / "uploads" / "ads").mkdir(parents=True)
    name = f"guard_bench_sync_{os.getpid()}"
    try:
        if args.only in (None, "triggers"):
            for wrapped in (False, True):
                variants = ["without", *(v for v in args.variants.split(",") if v in VARIANTS[1:])]
                bench_triggers(
                    fresh_database(name),
                    uploads,
                    args.pgbench_seconds,
                    wrapped,
                    args.rounds,
                    variants,
                    args.pgbench_rate,
                    args.missing_files,
                    args.cores,
                )
        for which in ("latency", "backlog", "throughput"):
            if args.only not in (None, which):
                continue
            url = fresh_database(name)
            with Database(url) as db:
                install(db, Settings(database_url=url))
            if which == "latency":
                # with --baseline this side runs HEAD (committed code): edits during a run stay out
                trees = (
                    [ROOT] if args.baseline is None else [baseline_tree(args.baseline), baseline_tree("HEAD")]
                )
                for round_ in range(args.repeat):
                    # ABBA: the machine's load drifts, so the side that runs second alternates
                    for n, code in enumerate(trees if round_ % 2 == 0 else trees[::-1]):
                        if round_ or n:
                            url = fresh_database(name)
                            with Database(url) as db:
                                install(db, Settings(database_url=url))
                        bench_latency(url, uploads, args.seconds, args.rate or 200, args.concurrency, code)
            elif which == "backlog":
                code = ROOT if args.tree is None else baseline_tree(args.tree)
                rate = args.rate or 2000
                bench_backlog(url, uploads, args.seconds, rate, args.concurrency, args.instances, code)
            else:
                code = ROOT if args.tree is None else baseline_tree(args.tree)
                bench_throughput(url, uploads, args.rows, args.concurrency, args.instances, code)
    finally:
        drop_database(name)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
