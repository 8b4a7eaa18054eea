"""Give the app and guard cores of their own, for `bench.sync --only triggers --cores`.

On a machine's shared cores, the CPU guard spends checking is CPU the app's writes wait for, so a
saturated pgbench alongside guard mostly measures the sharing. With a split, the app (pgbench and its
PostgreSQL backends) runs on core 0 only, in every variant, "without" included, and guard on core 1:

- `python`: guard's Python processes (the listener, the worker and its pool) and this bench. guard's
  checks in PostgreSQL share the app's core, as they would on the app's database server with guard's
  workers on hosts of their own.
- `all`: guard's PostgreSQL backends too (application_name guard-...), as if the database had a
  core to spare for them.

PostgreSQL's own background processes (WAL writer, checkpointer, autovacuum) are left on both cores.
A backend is moved within a few milliseconds of connecting (a thread looks every 5 ms).
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from types import TracebackType

import psycopg

APP, GUARD = {0}, {1}
MODES = ("python", "all")
BACKENDS = """
SELECT pid, application_name FROM pg_stat_activity WHERE datname = %s AND backend_type = 'client backend'
"""
LOOK_S = 0.005


class CoreSplit:
    """While entered: this process (and what it starts) on guard's core, backends pinned by name."""

    def __init__(self, server_url: str, database: str, mode: str) -> None:
        if mode not in MODES:
            raise ValueError(f"cores: {mode!r} is not one of {', '.join(MODES)}")
        if os.cpu_count() is None or len(os.sched_getaffinity(0)) < 2:
            raise RuntimeError("cores: a split needs two cores")
        self.server_url, self.database, self.mode = server_url, database, mode
        self.before = os.sched_getaffinity(0)
        self.stop = threading.Event()
        self.thread = threading.Thread()

    def app(self) -> Callable[[], None]:
        """A subprocess preexec_fn that puts the app's client (pgbench) on the app's core."""
        return lambda: os.sched_setaffinity(0, APP)

    def __enter__(self) -> CoreSplit:
        os.sched_setaffinity(0, GUARD)  # the bench and the stack it spawns: guard's side
        self.stop.clear()
        self.thread = threading.Thread(target=self._pin, daemon=True)
        self.thread.start()
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop.set()
        self.thread.join()
        os.sched_setaffinity(0, self.before)

    def _pin(self) -> None:
        pinned: set[int] = set()
        with psycopg.connect(self.server_url, autocommit=True) as conn:
            own = conn.execute("SELECT pg_backend_pid()").fetchone()
            if own:  # the looking is the bench's, not the app's
                os.sched_setaffinity(own[0], GUARD)
            while not self.stop.wait(LOOK_S):
                for pid, name in conn.execute(BACKENDS, (self.database,)).fetchall():
                    if pid in pinned:
                        continue
                    try:
                        os.sched_setaffinity(
                            pid, GUARD if name.startswith("guard") and self.mode == "all" else APP
                        )
                    except (ProcessLookupError, PermissionError):
                        continue
                    pinned.add(pid)
