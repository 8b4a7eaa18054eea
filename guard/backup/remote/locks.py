"""Locks on a remote: a prune never deletes while a copy to the same remote is under way.

A copy decides what to send from one listing: a file already there (named by a complete backup) is
not sent again, and its new backup's manifest will name it. A prune that lists the remote before
that copy's content list arrives would find the file named by no one and delete it, and the copy
would then publish a backup that lacks it. So each run holds a lock file on the remote, under
locks/, for as long as it reads and writes there:

- it writes its own lock first and lists locks/ after, so of two runs that overlap, whichever lists
  second sees the other's lock (at least one of them gives way; both may, and both try again);
- a prune needs no other live lock there, a copy no prune's (copies to one remote may overlap: the
  files are immutable and the same bytes under the same name);
- one that gives way deletes its lock and tries again until its wait runs out: then RemoteBusy,
  one line naming the other run's kind, host, pid and age;
- the holder rewrites its lock every REFRESH_S; a lock nobody refreshed for STALE_S (its holder was
  killed) no longer counts, and a prune deletes it.

rclone has no atomic create-if-absent on most backends, hence write-then-list; it needs a listing
that shows a file written before it (local folders, SFTP, S3 and most others today).
"""

from __future__ import annotations

import json
import os
import random
import re
import socket
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from guard.backup.remote.mirror import private_folder
from guard.backup.remote.rclone import Rclone, RemoteError
from guard.backup.repo import permissions
from guard.plural import plural

LOCKS = "locks"
COPY, PRUNE = "copy", "prune"
KINDS = (COPY, PRUNE)
LOCK_FILE = re.compile(r"locks/(?P<kind>copy|prune)-(?P<id>[0-9a-f]{32})\.json")
REFRESH_S = 300.0  # restic's refresh interval
STALE_S = 1800.0  # six missed refreshes: restic's "stale" age
WAIT_S = 600.0  # what a run waits for the other one at most (the local repository lock's wait)
POLL_S = 5.0


class RemoteBusy(RemoteError):
    """Another copy or prune holds the remote (exit 3, like a remote that refused)."""


@dataclass(frozen=True)
class Holder:
    """A lock on the remote: whose, and when its holder last refreshed it (the file's time there)."""

    path: str
    kind: str
    refreshed: datetime | None  # None: the remote keeps no times; such a lock counts until removed
    about: str  # "host h, pid p", from the file (or "unknown" when it cannot be read)

    def stale(self, now: datetime) -> bool:
        return self.refreshed is not None and (now - self.refreshed).total_seconds() > STALE_S

    def describe(self, now: datetime) -> str:
        if self.refreshed is None:
            return f"a {self.kind} ({self.about})"
        age = max(0, int((now - self.refreshed).total_seconds()))
        return f"a {self.kind} ({self.about}), its lock refreshed {plural(age, 'second')} ago"


def conflicts(kind: str, other: str) -> bool:
    """Whether a run of `kind` must give way to a live lock of `other`."""
    return kind == PRUNE or other == PRUNE


@contextmanager
def holding(
    rclone: Rclone, kind: str, *, wait_s: float = WAIT_S, refresh_s: float = REFRESH_S
) -> Iterator[None]:
    """Hold a `kind` lock on the remote while the block runs; RemoteBusy when it cannot be had in time."""
    assert kind in KINDS
    path = f"{LOCKS}/{kind}-{uuid.uuid4().hex}.json"
    deadline = time.monotonic() + wait_s
    with private_folder("guard-lock-") as staging:
        while True:
            _write(rclone, staging, path, kind)
            others = [h for h in holders(rclone) if h.path != path]
            now = datetime.now(UTC)
            blocking = [h for h in others if conflicts(kind, h.kind) and not h.stale(now)]
            if not blocking:
                break
            rclone.delete([path])
            if time.monotonic() >= deadline:
                raise RemoteBusy(
                    f"{rclone.label} is busy: {blocking[0].describe(now)}; try again when it ends "
                    f"(a lock stops counting {plural(int(STALE_S // 60), 'minute')} after its last refresh)"
                )
            # both of two runs may give way at once: a random pause keeps them from meeting again
            time.sleep(min(POLL_S * (0.5 + random.random()), max(0.0, deadline - time.monotonic())))
        if kind == PRUNE:  # the locks of killed runs: nobody else removes them
            rclone.delete([h.path for h in others if h.stale(now)])
        stop = threading.Event()
        refresher = threading.Thread(
            target=_refresh, args=(rclone, staging, path, kind, stop, refresh_s), daemon=True
        )
        refresher.start()
        try:
            yield
        finally:
            stop.set()
            refresher.join()
            rclone.delete([path])


def holders(rclone: Rclone) -> list[Holder]:
    """The locks on the remote now (a file under locks/ of another name is not one and is left alone)."""
    listed = rclone.listing(under=LOCKS, times=True)
    found = [(e, m) for e in listed.values() if (m := LOCK_FILE.fullmatch(e.path))]
    about = _about(rclone, [e.path for e, _ in found])
    return [Holder(e.path, m["kind"], e.modified, about.get(e.path, "unknown")) for e, m in found]


def _about(rclone: Rclone, paths: list[str]) -> dict[str, str]:
    """Who holds each lock, from the files themselves (small; a torn or odd one says "unknown")."""
    if not paths:
        return {}
    out: dict[str, str] = {}
    with private_folder("guard-lock-read-") as folder:
        try:
            rclone.fetch(paths, folder)
        except RemoteError:
            return {}  # removed meanwhile: the next look sees it gone
        for path in paths:
            try:
                body = json.loads((folder / path).read_bytes())
                out[path] = f"host {str(body['host'])[:64]}, pid {int(body['pid'])}"
            except (OSError, ValueError, KeyError, TypeError):
                continue
    return out


def _write(rclone: Rclone, staging: Path, path: str, kind: str) -> None:
    """(Re)write the lock: a new local file, so the remote's time for it is now (rclone keeps it)."""
    target = staging / path
    permissions.make_folder(target.parent, exist_ok=True)
    at = datetime.now(UTC).isoformat()
    body = {"kind": kind, "host": socket.gethostname(), "pid": os.getpid(), "at": at}
    target.unlink(missing_ok=True)
    permissions.write_file(target, json.dumps(body).encode())
    rclone.send(staging, [path], force=True)


def _refresh(
    rclone: Rclone, staging: Path, path: str, kind: str, stop: threading.Event, every_s: float
) -> None:
    """Rewrite the lock every `every_s` until stopped; a failed rewrite is tried again at the next."""
    while not stop.wait(every_s):
        try:
            _write(rclone, staging, path, kind)
        except RemoteError:
            continue  # the remote is away: the run itself fails on its next call, or it comes back
