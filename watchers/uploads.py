"""The uploads watcher: files created, moved in or deleted under the scanned folders become checks.

Run as `python -m watchers.uploads`. Temporary and half-written files are ignored until they have
been quiet for SETTLE_S. inotify drops events silently when its queue overflows, so on start it asks
for a files sweep and every `watch_reconcile_seconds` it walks the folders and checks whatever
differs from the last walk.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable, Iterable

from watchdog.events import FileSystemEvent, FileSystemEventHandler
from watchdog.observers import Observer

from guard.config.settings import Settings
from guard.continuous import liveness
from guard.fs.root import UploadsRoot
from watchers.lifecycle import StopFlag, retrying, run_process
from watchers.publish import Publisher, producer
from watchers.pulse import Pulse

log = logging.getLogger("guard.fs.root")

SETTLE_S = 1.0
TICK_S = 0.25
CHUNK = 500
TEMP_SUFFIXES = (".tmp", ".temp", ".part", ".partial", ".crdownload", ".download", ".swp", "~")
IGNORED_EVENTS = {"opened", "closed_no_write"}

Snapshot = dict[str, tuple[float, int]]
Publish = Callable[[list[str]], None]


def is_temporary(relpath: str) -> bool:
    """Tell whether a name is a temporary or in-progress upload (dotfiles, .part, .tmp, ...)."""
    name = relpath.rsplit("/", 1)[-1]
    return name.startswith((".", "~")) or name.endswith(TEMP_SUFFIXES)


def diff(old: Snapshot, new: Snapshot) -> list[str]:
    """Return the paths added, removed or changed between two walks."""
    return sorted(p for p in old.keys() | new.keys() if old.get(p) != new.get(p))


class Pending:
    """Paths waiting to settle: each event restarts its clock; quiet ones are handed out."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._touched: dict[str, float] = {}

    def add(self, paths: Iterable[str]) -> None:
        now = time.monotonic()
        with self._lock:
            for path in paths:
                if not is_temporary(path):
                    self._touched[path] = now

    def settled(self, quiet: float = SETTLE_S) -> list[str]:
        cutoff = time.monotonic() - quiet
        with self._lock:
            ready = sorted(p for p, t in self._touched.items() if t <= cutoff)
            for path in ready:
                del self._touched[path]
        return ready

    def __len__(self) -> int:
        return len(self._touched)


class Handler(FileSystemEventHandler):
    """Turn watchdog events into relative paths waiting to settle."""

    def __init__(self, watcher: UploadsWatcher) -> None:
        self.watcher = watcher

    def on_any_event(self, event: FileSystemEvent) -> None:
        if event.event_type in IGNORED_EVENTS:
            return
        paths = [os.fsdecode(event.src_path)]
        if event.event_type == "moved":
            paths.append(os.fsdecode(event.dest_path))
        for path in paths:
            self.watcher.touched(path, is_dir=event.is_directory)


class UploadsWatcher:
    """Watch the scanned folders, publish settled paths in chunks, reconcile by walking."""

    def __init__(
        self,
        settings: Settings,
        publish: Publish,
        stop: StopFlag,
        request_sweep: Callable[[], None] | None = None,
    ) -> None:
        self.settings, self.publish, self.stop = settings, publish, stop
        self.request_sweep = request_sweep
        self.root = UploadsRoot(settings.require_uploads_root())
        self.pending = Pending()
        self.snapshot: Snapshot = {}
        self.published = 0

    def relative(self, path: str) -> str | None:
        rel = os.path.relpath(path, self.root.real)
        return None if rel.startswith("..") else rel.replace(os.sep, "/")

    def touched(self, path: str, *, is_dir: bool) -> None:
        rel = self.relative(path)
        if rel is None:
            return
        if not is_dir:
            self.pending.add([rel])
            return
        known = [p for p in self.snapshot if p.startswith(f"{rel}/")]  # a folder left or arrived
        walked = list(self.walk((rel,))) if os.path.isdir(path) else []
        self.pending.add(known + walked)

    def walk(self, folders: tuple[str, ...] | None = None) -> Snapshot:
        """Return every regular file under the folders with its mtime and size."""
        found: Snapshot = {}
        for prefix, entries in self.root.walk(folders or self.settings.scan_dirs):
            for entry in entries:
                try:
                    info = entry.stat(follow_symlinks=False)
                except FileNotFoundError:
                    continue  # deleted since the folder was listed
                found[prefix + entry.name] = (info.st_mtime, info.st_size)
        return found

    def reconcile(self) -> None:
        """Walk the folders and check every path that differs from the last walk."""
        current = self.walk()
        missed = diff(self.snapshot, current)
        self.snapshot = current
        if missed:
            log.info("reconcile: %d paths changed since the last walk", len(missed))
            self.pending.add(missed)

    def run(self) -> None:
        observer = Observer()
        handler = Handler(self)
        for folder in self.settings.scan_dirs:
            path = self.root.real / folder
            if path.is_dir():
                observer.schedule(handler, str(path), recursive=True)
            else:
                log.warning("scanned folder %s does not exist; not watched", path)
        observer.start()
        try:
            self.snapshot = self.walk()
            if self.request_sweep is not None:
                self.request_sweep()
            log.info("watching %s (%d files)", ", ".join(self.settings.scan_dirs), len(self.snapshot))
            self.loop()
        finally:
            observer.stop()
            observer.join(5)

    def loop(self) -> None:
        """Each tick: reconcile when due, then publish what settled (backing off while the broker is away)."""
        publishing = retrying(self.stop, log, "cannot publish")
        next_walk = time.monotonic() + self.settings.watch_reconcile_seconds
        while not self.stop.wait(TICK_S):
            if time.monotonic() >= next_walk:
                self.reconcile()
                next_walk = time.monotonic() + self.settings.watch_reconcile_seconds
            publishing(self.publish_settled)

    def publish_settled(self) -> None:
        """Publish the settled paths; on failure put them back (nothing is lost) and raise."""
        ready = self.pending.settled()
        try:
            self.flush(ready)
        except BaseException:
            self.pending.add(ready)
            raise

    def flush(self, ready: list[str]) -> None:
        for start in range(0, len(ready), CHUNK):
            self.publish(ready[start : start + CHUNK])
            self.published += len(ready[start : start + CHUNK])


def serve(settings: Settings, stop: StopFlag) -> None:
    """Run one uploads watcher that hands settled paths to Celery."""
    publisher = Publisher(producer(settings))
    with Pulse(settings, liveness.WATCHER):
        UploadsWatcher(settings, publisher.check_files, stop, publisher.sweep_files).run()


def main() -> int:
    return run_process("guard-uploads", serve)


if __name__ == "__main__":
    raise SystemExit(main())
