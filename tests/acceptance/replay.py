"""The incident replays' harness: a clean demo world, the stack as `make run` runs it, and the ledger.

A replay builds a demo world with nothing planted (what `guard demo --bad 0` builds: `guard predeploy`
passes on it), gives it a writable copy of the migrations, a backup repository and guard's capture
triggers (`guard install`), then starts the four processes of the Procfile (listener, uploads
watcher, Celery worker, beat) with the settings `scripts/run-stack.sh` uses. The test then makes an
incident happen and waits, by deadline, for the stack to open its findings on its own; nothing here
asks for a sweep.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql

from guard.config.settings import Settings
from guard.continuous import outbox
from guard.continuous.capture import install
from guard.db.database import Database
from guard.demo.world import build_world
from guard.findings import ledger
from tests.conftest import SERVER_URL, drop_database, unique_name, url_for
from tests.integration.sync_stack import BIN, Stack, wait_for
from tests.prisma_cli import project

ROOT = Path(__file__).resolve().parents[2]
GUARD = [str(BIN / "guard")]
ADS = 200
SEED = 1
# Generous on purpose: a loaded two-core machine runs five test suites at once. The stack opens a
# finding in well under a second when idle; the deadline only bounds how long a broken stack hangs.
DETECT_S = 60.0
ORPHAN_GRACE = "5"  # seconds, as `make run` has it, for the stack and every guard call alike
Key = tuple[str, str, str]  # (check, kind, subject), as guard.findings and `--json` name a finding


def build_demo(name: str, uploads: Path) -> None:
    """Build a clean demo world in process (what `guard demo --bad 0` builds, without its start-up)."""
    build_world(SERVER_URL, name, uploads, ADS, 0.0, seed=SEED)


def run(argv: list[str], env: dict[str, str], timeout: float = 300) -> subprocess.CompletedProcess[str]:
    """Run a command from the repository root with the replay's settings and nothing inherited."""
    base = {k: v for k, v in os.environ.items() if k != "GUARD_CONFIG"}
    return subprocess.run(
        argv, env={**base, **env}, cwd=ROOT, capture_output=True, text=True, timeout=timeout, check=False
    )


@dataclass(frozen=True)
class World:
    """One replay's database, uploads root, migrations copy and backup repository."""

    name: str
    uploads: Path
    migrations: Path
    backups: Path
    quarantine: Path

    @property
    def url(self) -> str:
        return url_for(self.name)

    @property
    def env(self) -> dict[str, str]:
        """The settings every `guard` call and every process of the stack gets."""
        return {
            "DATABASE_URL": self.url,
            "UPLOADS_ROOT": str(self.uploads),
            "MIGRATIONS_DIR": str(self.migrations),
            "BACKUP_DIR": str(self.backups),
            "ORPHAN_GRACE": ORPHAN_GRACE,
        }

    @classmethod
    def build(cls, tmp: Path) -> World:
        """Build the demo world and install guard on it (capture triggers, outbox, ledger), as
        `guard demo` and `guard install` do; in process, since the replays are not about them."""
        name = unique_name("guard_replay")
        world = cls(name, tmp / "public", project(tmp), tmp / "backups", tmp / "quarantine")
        build_demo(name, world.uploads)
        with Database(world.url) as db:
            install(db, Settings(database_url=world.url))
        return world


class Replay:
    """The running stack on one world, and what a replay asks of guard."""

    def __init__(self, world: World, logdir: Path) -> None:
        self.world = world
        # the live half of `make run` (scripts/run-stack.sh): short orphan grace and reconcile walks
        self.stack = Stack(
            world.url,
            world.uploads,
            logdir,
            migrations_dir=str(world.migrations),
            backup_dir=str(world.backups),
            orphan_grace=ORPHAN_GRACE,
            watch_reconcile_seconds="15",
        )
        self.logdir = logdir

    def start(self) -> None:
        """Start the Procfile's four processes and wait until each says it is serving."""
        started = time.monotonic()
        self.stack.worker(loglevel="INFO")
        beat_schedule = str(self.logdir / "celerybeat-schedule")
        self.stack.start("beat", [str(BIN / "celery"), "-A", "workers", "beat", "-s", beat_schedule])
        self.stack.listener()
        self.stack.watcher()
        for name, line in (("worker", " ready."), ("listener", "listening on"), ("watcher", "watching ")):
            wait_for(lambda n=name, t=line: t in self.stack.log(n), f"the {name} to start", DETECT_S)
        self.note("the stack started", started)

    def close(self) -> None:
        self.stack.close()

    def guard(self, *args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
        """Run the real `guard` command on this world (its time goes in steps.log)."""
        started = time.monotonic()
        done = run([*GUARD, *args], self.world.env, timeout)
        self.note(f"guard {' '.join(args)} -> {done.returncode}", started)
        with (self.logdir / "transcript.log").open("a") as log:  # what an operator would have seen
            log.write(f"$ guard {' '.join(args)}\n{done.stdout}{done.stderr}(exit {done.returncode})\n\n")
        return done

    def note(self, step: str, started: float) -> None:
        """Append how long a step took to steps.log in the test's folder, to read when one is slow."""
        with (self.logdir / "steps.log").open("a") as log:
            log.write(f"{time.monotonic() - started:7.2f}s  {step}\n")

    def guard_json(self, *args: str) -> tuple[int, dict[str, Any]]:
        done = self.guard(*args, "--json")
        assert done.stdout.strip(), done.stderr
        document: dict[str, Any] = json.loads(done.stdout)
        return done.returncode, document

    def open_findings(self) -> set[Key]:
        """Return what the ledger holds open now (nothing while guard's schema is not there)."""
        try:
            with Database(self.world.url, application_name="guard-replay") as db:
                rows = ledger.list_findings(db, open_only=True)
        except (psycopg.errors.UndefinedTable, psycopg.errors.InvalidSchemaName, psycopg.OperationalError):
            return set()  # the database is being replaced, or guard is not installed on it
        return {(f.check, f.kind, f.subject) for f in rows}

    def wait_open(self, keys: Iterable[Key], what: str) -> set[Key]:
        """Wait until every one of these findings is open; return everything open then."""
        wanted = set(keys)
        assert wanted, "nothing to wait for"
        started = time.monotonic()
        found = wait_for(lambda: self._superset(wanted), f"{what} to open: {sorted(wanted)}", DETECT_S)
        self.note(f"{what} opened", started)
        return set(found)

    def wait_resolved(self, keys: Iterable[Key], what: str) -> None:
        """Wait until none of these findings is open any more."""
        wanted = set(keys)
        started = time.monotonic()
        wait_for(lambda: not self.open_findings() & wanted, f"{what} to resolve: {sorted(wanted)}", DETECT_S)
        self.note(f"{what} resolved", started)

    def _superset(self, wanted: set[Key]) -> set[Key] | None:
        found = self.open_findings()
        return found if wanted <= found else None

    def settled(self) -> bool:
        """Tell whether every captured change has been checked and nothing is open."""
        with Database(self.world.url, application_name="guard-replay") as db:
            waiting = outbox.backlog(db)
        return waiting == 0 and not self.open_findings()

    def listed_open(self) -> dict[Key, int]:
        """What `guard findings --open --json` lists (each finding's id): the operator's view."""
        _, document = self.guard_json("findings", "--open")
        return {(f["check"], f["kind"], f["subject"]): int(f["id"]) for f in document["findings"]}

    def predeploy(self, *args: str, human: bool = True) -> tuple[int, set[Key], str]:
        """Run `guard predeploy --json` (and the table, if asked); return exit code, findings, table."""
        code, document = self.guard_json("predeploy", *args)
        named = {(f["check"], f["kind"], f["subject"]) for c in document["checks"] for f in c["findings"]}
        if not human:
            return code, named, json.dumps(document)
        table = self.guard("predeploy", *args)
        assert table.returncode == code, table.stderr
        return code, named, table.stdout


def dump_old_schema(tmp: Path) -> Path:
    """Return a custom-format dump of the demo world as it was before three migrations and Prisma's
    history: no `categories.form_template`, no `ads.custom_fields`, no `user_favorites` and no
    `_prisma_migrations` (the write-up's incident 1). Same seed, so the same rows as the live world.
    """
    name = unique_name("guard_replay_old")
    build_demo(name, tmp / "old-public")
    try:
        with Database(url_for(name)) as db:
            for statement in OLD_SCHEMA:
                db.execute(statement)
        dump = tmp / "old.dump"
        done = run(["pg_dump", "-Fc", "--no-owner", "-f", str(dump), "-d", url_for(name)], {})
        assert done.returncode == 0, done.stderr
        return dump
    finally:
        drop_database(name)
        shutil.rmtree(tmp / "old-public", ignore_errors=True)


OLD_SCHEMA = (
    "DROP TABLE user_favorites",
    "DROP TABLE _prisma_migrations",
    "ALTER TABLE categories DROP COLUMN form_template",
    "ALTER TABLE ads DROP COLUMN custom_fields",
)


def restore_clean(world: World, dump: Path) -> subprocess.CompletedProcess[str]:
    """Restore the dump over the live database the usual way: `pg_restore --clean --if-exists`."""
    return run(["pg_restore", "--clean", "--if-exists", "--no-owner", "-d", world.url, str(dump)], {})


def restore_recreated(world: World, dump: Path) -> subprocess.CompletedProcess[str]:
    """Drop the live database (ending its sessions, the stack's too), create it and restore into it."""
    with psycopg.connect(SERVER_URL, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP DATABASE {} WITH (FORCE)").format(sql.Identifier(world.name)))
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(world.name)))
    return run(["pg_restore", "--no-owner", "-d", world.url, str(dump)], {})


def columns_present(world: World) -> set[str]:
    """Return `table.column` for every column of the public schema now."""
    with Database(world.url) as db:
        rows = db.fetch_all(
            "SELECT table_name || '.' || column_name FROM information_schema.columns "
            "WHERE table_schema = 'public'"
        )
    return {str(r[0]) for r in rows}


def tables_without_capture(world: World) -> set[str]:
    """Return the watched tables lacking one of guard's three capture triggers."""
    with Database(world.url) as db:
        rows = db.fetch_all(
            "SELECT t FROM unnest(%s::text[]) t WHERE (SELECT count(*) FROM pg_trigger "
            "WHERE tgrelid = to_regclass(t) AND tgname LIKE 'guard\\_capture\\_%%') < 3",
            (list(WATCHED),),
        )
    return {str(r[0]) for r in rows}


WATCHED = ("ad_images", "ads", "categories")  # the tables `guard install` puts triggers on
