"""Fault injection for tests: crash or fail with ENOSPC at named points, driven by one environment variable.

GUARD_BACKUP_FAULT is read only by the backup code. Values:
  kill:<point>        SIGKILL this process when it reaches <point> (snapshot, dump, manifest, published;
                      pack: between a pack's rename and its index's; repacked: prune, between a new
                      pack and the removal of the old one)
  kill:objects:<n>    SIGKILL after the n-th new object is written
  enospc:<n>          fail the n-th new object write with "No space left on device"
  pause:<point>:<file>  at <point> (walk: just before the uploads walk), create <file>.reached and wait
                      until <file> exists (at most PAUSE_MAX_S), so a test can act while it is held
"""

from __future__ import annotations

import errno
import os
import signal
import time
from pathlib import Path

FAULT_ENV = "GUARD_BACKUP_FAULT"
PAUSE_MAX_S = 120.0


def _spec() -> str:
    return os.environ.get(FAULT_ENV, "")


def crash_point(name: str) -> None:
    """Die here, as kill -9 would, when the fault variable names this point."""
    if _spec() == f"kill:{name}":
        os.kill(os.getpid(), signal.SIGKILL)


def pause_point(name: str) -> None:
    """Hold here until the test releases us, when the fault variable names this point."""
    prefix = f"pause:{name}:"
    spec = _spec()
    if not spec.startswith(prefix):
        return
    release = Path(spec[len(prefix) :])
    release.with_name(f"{release.name}.reached").touch()
    deadline = time.monotonic() + PAUSE_MAX_S
    while not release.exists() and time.monotonic() < deadline:
        time.sleep(0.05)


class ObjectFaults:
    """Count new object writes and inject the configured crash or full disk."""

    def __init__(self) -> None:
        kind, _, count = _spec().rpartition(":")
        self.kind = kind
        self.at = int(count) if count.isdigit() else 0
        self.written = 0

    def before_write(self) -> None:
        if self.kind == "enospc" and self.written + 1 == self.at:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    def after_write(self) -> None:
        self.written += 1
        if self.kind == "kill:objects" and self.written == self.at:
            os.kill(os.getpid(), signal.SIGKILL)
