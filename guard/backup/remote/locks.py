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
import logging
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
_PRINTABLE = re.compile(r"[^\w.:-]")
REFRESH_S = 300.0  # restic's refresh interval
STALE_S = 1800.0  # six missed refreshes: restic's "stale" age
# How long after its last write this run still trusts its lock to be its own: two refreshes short of
# STALE_S, the margin for a pruning host's clock running ahead of this one's.
TRUSTED_S = STALE_S - 2 * REFRESH_S
WAIT_S = 600.0  # what a run waits for the other one at most (the local repository lock's wait)
POLL_S = 5.0

log = logging.getLogger(__name__)


class RemoteBusy(RemoteError):
    """Another copy or prune holds the remote (exit 3, like a remote that refused)."""


@dataclass(frozen=True)
class Holder:
    """A lock on the remote: whose, and when its holder last refreshed it (the file's time there)."""

    path: str
    kind: str
    refreshed: datetime | None  # None: the remote keeps no times; such a lock counts until removed

    def stale(self, now: datetime) -> bool:
        return self.refreshed is not None and (now - self.refreshed).total_seconds() > STALE_S

    def describe(self, now: datetime, about: str) -> str:
        """One line on whose lock this is (`about`: "host h, pid p") and how fresh it is."""
        if self.refreshed is None:
            return f"a {self.kind} ({about})"
        age = max(0, int((now - self.refreshed).total_seconds()))
        return f"a {self.kind} ({about}), its lock refreshed {plural(age, 'second')} ago"


def conflicts(kind: str, other: str) -> bool:
    """Whether a run of `kind` must give way to a live lock of `other`."""
    return kind == PRUNE or other == PRUNE


class Held:
    """A lock this run holds: when it was last written (this host's monotonic clock), and whether it
    may have been lost (a gap between refreshes long enough for a prune to take it for a dead run's)."""

    def __init__(self, rclone: Rclone, path: str) -> None:
        self.rclone, self.path = rclone, path
        self.written_at = time.monotonic()
        self.lost = False

    def gap(self) -> float:
        return time.monotonic() - self.written_at

    def confirm(self) -> None:
        """Raise RemoteError unless the lock is still this run's: refreshed in time, still on the remote.

        A copy calls it just before its manifests go: a prune may delete content only once it took
        this lock for a killed run's, which needs it unrefreshed for STALE_S (a suspended host, a
        remote refusing the rewrites); then the copy must not publish what it sent.
        """
        if self.lost or self.gap() > TRUSTED_S:
            self.lost = True
            raise RemoteError(
                f"lost the lock on {self.rclone.label}: not refreshed for "
                f"{plural(int(self.gap()), 'second')}, so a prune may have taken it for a killed run's; "
                "no backup was marked copied"
            )
        if self.path not in self.rclone.listing(under=LOCKS):
            self.lost = True
            raise RemoteError(
                f"lost the lock on {self.rclone.label}: it was removed there; no backup was marked copied"
            )


@contextmanager
def holding(
    rclone: Rclone, kind: str, *, wait_s: float = WAIT_S, refresh_s: float = REFRESH_S
) -> Iterator[Held]:
    """Hold a `kind` lock on the remote while the block runs; RemoteBusy when it cannot be had in time."""
    assert kind in KINDS
    path = f"{LOCKS}/{kind}-{uuid.uuid4().hex}.json"
    deadline = time.monotonic() + wait_s
    with private_folder("guard-lock-") as staging:
        while True:
            _write(rclone, staging, path, kind)
            try:
                others = [h for h in holders(rclone) if h.path != path]
            except BaseException:
                _release(rclone, path)
                raise
            now = datetime.now(UTC)
            blocking = [h for h in others if conflicts(kind, h.kind) and not h.stale(now)]
            if not blocking:
                break
            rclone.delete([path])
            if time.monotonic() >= deadline:
                raise RemoteBusy(
                    f"{rclone.label} is busy: {blocking[0].describe(now, _about(rclone, blocking[0].path))}; "
                    "try again when it ends "
                    f"(a lock stops counting {plural(int(STALE_S // 60), 'minute')} after its last refresh)"
                )
            # both of two runs may give way at once: a random pause keeps them from meeting again
            time.sleep(min(POLL_S * (0.5 + random.random()), max(0.0, deadline - time.monotonic())))
        held = Held(rclone, path)
        stop = threading.Event()
        refresher = threading.Thread(
            target=_refresh, args=(held, staging, kind, stop, refresh_s), daemon=True
        )
        refresher.start()
        try:
            if kind == PRUNE:  # the locks of killed runs: nobody else removes them
                rclone.delete([h.path for h in others if h.stale(now)])
            yield held
        finally:
            stop.set()
            refresher.join()
            _release(rclone, path)


def _release(rclone: Rclone, path: str) -> None:
    """Delete this run's lock; if the remote refuses, the run's own outcome stands (it goes stale)."""
    try:
        rclone.delete([path])
    except RemoteError as exc:
        log.warning("could not remove the lock %s (%s); it stops counting once stale", path, exc)


def holders(rclone: Rclone) -> list[Holder]:
    """The locks on the remote now (a file under locks/ of another name is not one and is left alone)."""
    listed = rclone.listing(under=LOCKS, times=True)
    found = [(e, m) for e in listed.values() if (m := LOCK_FILE.fullmatch(e.path))]
    return [Holder(e.path, m["kind"], e.modified) for e, m in found]


def _about(rclone: Rclone, path: str) -> str:
    """Who holds a lock, from the file itself ("unknown" when it is gone, torn or odd): read only
    for the message that names it."""
    with private_folder("guard-lock-read-") as folder:
        try:
            rclone.fetch([path], folder)
            body = json.loads((folder / path).read_bytes())
            host = _PRINTABLE.sub("?", str(body["host"]))[:64]  # anyone who can write there wrote it
            return f"host {host}, pid {int(body['pid'])}"
        except (RemoteError, OSError, ValueError, KeyError, TypeError):
            return "unknown"


def _write(rclone: Rclone, staging: Path, path: str, kind: str) -> None:
    """(Re)write the lock: a new local file, so the remote's time for it is now (rclone keeps it)."""
    target = staging / path
    permissions.make_folder(target.parent, exist_ok=True)
    at = datetime.now(UTC).isoformat()
    body = {"kind": kind, "host": socket.gethostname(), "pid": os.getpid(), "at": at}
    target.unlink(missing_ok=True)
    permissions.write_file(target, json.dumps(body).encode())
    rclone.send(staging, [path], force=True)


def _refresh(held: Held, staging: Path, kind: str, stop: threading.Event, every_s: float) -> None:
    """Rewrite the lock every `every_s` until stopped. A failed rewrite is tried again at the next; after
    a gap past TRUSTED_S the lock is lost and never written again (a prune may have taken it, and the
    content with it: recreating it would hide that)."""
    while not stop.wait(every_s):
        if held.gap() > TRUSTED_S:
            held.lost = True
            return
        try:
            _write(held.rclone, staging, held.path, kind)
            held.written_at = time.monotonic()
        except Exception as exc:  # noqa: BLE001 - any failure: the copy's confirm() judges the gap
            log.warning("could not refresh the lock %s (%s)", held.path, exc)
