"""Give the app and guard cores of their own, for `bench.sync --only triggers --cores`.

On a machine's shared cores, the CPU guard spends checking is CPU the app's writes wait for, so a
saturated pgbench alongside guard mostly measures the sharing. With a split, the app (pgbench and its
PostgreSQL backends) runs on one core (the first this process may use) in every variant, "without"
included, and guard on the second:

- `python`: guard's Python processes (the listener, the worker and its pool) and this bench. guard's
  checks in PostgreSQL share the app's core, as they would on the app's database server with guard's
  workers on hosts of their own.
- `all`: guard's PostgreSQL backends too (application_name guard-...), as if the database had a
  core to spare for them.

Left on both cores: PostgreSQL's own background processes (WAL writer, checkpointer, autovacuum) and
Redis, the broker guard's processes publish to and consume from. Every other backend of the bench's
database is the app's, the bench's own idle connection included. Backends already connected are
placed before the run; one that connects later within 5 ms (a thread looks that often).
"""

from __future__ import annotations

import os
import threading
from pathlib import Path
from types import TracebackType

import psycopg

MODES = ("python", "all")
BACKENDS = """
SELECT pid, backend_start, application_name FROM pg_stat_activity
WHERE datname = %s AND backend_type = 'client backend'
"""
LOOK_S = 0.005


class CoreSplit:
    """While entered: this process (and what it starts) on guard's core, backends pinned by name.

    Fails rather than measure an unsplit machine: fewer than two cores allowed, a server whose
    backends are not local processes, or a backend this process may not move.
    """

    def __init__(self, server_url: str, database: str, mode: str) -> None:
        if mode not in MODES:
            raise ValueError(f"cores: {mode!r} is not one of {', '.join(MODES)}")
        self.before = os.sched_getaffinity(0)
        if len(self.before) < 2:
            raise RuntimeError("cores: a split needs two cores")
        self.app_core, self.guard_core = sorted(self.before)[:2]
        self.server_url, self.database, self.mode = server_url, database, mode
        self.stop = threading.Event()
        self.thread = threading.Thread()
        self.conn: psycopg.Connection[tuple[object, ...]] | None = None
        self.pinned: set[tuple[int, object]] = set()
        self.failure: BaseException | None = None

    def app(self, argv: list[str]) -> list[str]:
        """The app's client (pgbench) started on the app's core (taskset: no preexec_fn in a
        threaded process)."""
        return ["taskset", "-c", str(self.app_core), *argv]

    def __enter__(self) -> CoreSplit:
        os.sched_setaffinity(0, {self.guard_core})  # the bench and the stack it spawns: guard's side
        self.conn = psycopg.connect(self.server_url, autocommit=True, application_name="bench-cores")
        own = self.conn.execute("SELECT pg_backend_pid()").fetchone()
        assert own is not None
        self._move(int(own[0]), self.guard_core)  # the looking is the bench's, not the app's
        self.pinned.clear()
        self._pass()  # what is connected already is placed before the run starts
        self.stop.clear()
        self.failure = None
        self.thread = threading.Thread(target=self._pin, daemon=True)
        self.thread.start()
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop.set()
        self.thread.join()
        if self.conn is not None:
            self.conn.close()
        os.sched_setaffinity(0, self.before)
        if self.failure is not None and kind is None:
            raise RuntimeError(f"cores: pinning failed: {self.failure}") from self.failure

    def _move(self, pid: int, core: int) -> None:
        try:
            comm = Path(f"/proc/{pid}/comm").read_text().strip()
        except OSError:
            return  # gone already
        if not comm.startswith("postgres"):
            raise RuntimeError(f"cores: backend {pid} is not a local PostgreSQL process ({comm!r})")
        try:
            os.sched_setaffinity(pid, {core})
        except ProcessLookupError:
            return

    def _pass(self) -> None:
        assert self.conn is not None
        for pid, started, name in self.conn.execute(BACKENDS, (self.database,)).fetchall():
            if (pid, started) in self.pinned:
                continue
            guards = str(name).startswith("guard") and self.mode == "all"
            self._move(int(pid), self.guard_core if guards else self.app_core)
            self.pinned.add((pid, started))

    def _pin(self) -> None:
        try:
            while not self.stop.wait(LOOK_S):
                self._pass()
        except BaseException as exc:  # noqa: BLE001 - reported by __exit__, in the bench's thread
            self.failure = exc
