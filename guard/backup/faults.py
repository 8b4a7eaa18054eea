"""Fault injection for tests: crash or fail with ENOSPC at named points, driven by one environment variable.

GUARD_BACKUP_FAULT is read only by the backup code. Values:
  kill:<point>        SIGKILL this process when it reaches <point> (snapshot, dump, manifest, published;
                      pack: between a pack's rename and its index's; repacked: prune, between a new
                      pack and the removal of the old one)
  kill:objects:<n>    SIGKILL after the n-th new object is written
  enospc:<n>          fail the n-th new object write with "No space left on device"
  pause:<point>:<file> at <point> (any crash point, or walk: just before the uploads walk), create
                      <file>.reached, then wait until <file> exists (a slow backup, held where the test
                      wants it; gives up after PAUSE_MAX_S)
  swap:<point>:<path>:<target>
                      once, at <point>, do what a concurrent process could: rename <path> aside and
                      put a symlink to <target> in its place (copy: before an upload is opened to be
                      copied in; place: before a restored file is written into its folder)
  touch:<point>:<path>
                      once, at <point>, create a file at <path> (place: a file appearing meanwhile)
  nofile:<point>      let no new file descriptor be opened at <point> (folder: opening a listed
                      folder), by lowering RLIMIT_NOFILE there: the kernel's own EMFILE
"""

from __future__ import annotations

import errno
import os
import resource
import signal
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

FAULT_ENV = "GUARD_BACKUP_FAULT"
PAUSE_MAX_S = 600.0


def _spec() -> str:
    return os.environ.get(FAULT_ENV, "")


def crash_point(name: str) -> None:
    """Die here, as kill -9 would, when the fault variable names this point."""
    spec = _spec()
    if spec == f"kill:{name}":
        os.kill(os.getpid(), signal.SIGKILL)
    elif spec.startswith(f"pause:{name}:"):
        _pause(Path(spec.split(":", 2)[2]))


def _pause(release: Path) -> None:
    """Say this point is reached, then wait until the test releases it (or PAUSE_MAX_S passes)."""
    Path(f"{release}.reached").touch()
    deadline = time.monotonic() + PAUSE_MAX_S
    while not release.exists() and time.monotonic() < deadline:
        time.sleep(0.05)


def pause_point(name: str) -> None:
    """Hold here until the test releases us, when the fault variable names this point."""
    spec = _spec()
    if spec.startswith(f"pause:{name}:"):
        _pause(Path(spec.split(":", 2)[2]))


_raced: set[str] = set()


def race_point(name: str) -> None:
    """Swap a folder for a symlink, or create a file, once, when the fault variable names this point."""
    spec = _spec()
    if not spec.startswith(("swap:", "touch:")) or name in _raced:
        return
    kind, point, args = spec.split(":", 2)
    if point != name:
        return
    _raced.add(name)
    if kind == "swap":
        path, _, target = args.partition(":")
        os.rename(path, f"{path}.swapped")
        os.symlink(target, path)
    else:
        with open(args, "xb") as handle:
            handle.write(b"appeared meanwhile\n")


@contextmanager
def descriptor_limit(name: str) -> Iterator[None]:
    """Inside the block, fail every new descriptor with EMFILE when the fault variable names this point."""
    if _spec() != f"nofile:{name}":
        yield
        return
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    lowest = os.open(os.devnull, os.O_RDONLY)  # the lowest free descriptor: a limit there leaves none
    os.close(lowest)
    resource.setrlimit(resource.RLIMIT_NOFILE, (lowest, hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


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
