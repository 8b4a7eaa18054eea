"""A walk of the scanned folders in a forked child, so it runs on another core while we read the rows.

Why a process and not a thread: the walk is mostly Python work (a DirEntry and a name per file), so a
thread holds the GIL against the thread reading rows and the two take turns on one core. A forked child
needs no imports and no re-configuration, and it sends each batch of paths as one NUL-joined bytes value
(a file name cannot contain NUL), which costs a fraction of pickling a million str objects.

The child keeps its whole output until the walk is done and only then writes it: a pipe holds 64 KiB,
so writing as it goes would stall the walk until the parent, busy with the database, starts reading.
Where fork is unavailable or unsafe (guard.fs.forking), the same walk runs in this process instead, with
the same results.
"""

from __future__ import annotations

import os
import pickle
import signal
import sys
import traceback
from collections.abc import Iterator
from types import TracebackType
from typing import Any, BinaryIO, NoReturn, Self

from guard.errors import UnreachableError
from guard.fs.forking import fork_is_safe
from guard.fs.root import UploadsRoot, WalkRecord

SEP = "\0"
# How os.fsencode and os.fsdecode spell names as bytes, applied to a whole batch at once.
FS_ENCODING, FS_ERRORS = sys.getfilesystemencoding(), sys.getfilesystemencodeerrors()


class BackgroundWalk:
    """The regular files under some folders, as batches of root-relative paths, walked in a child process."""

    def __init__(self, root: UploadsRoot, folders: tuple[str, ...]) -> None:
        self.root, self.folders = root, folders
        self.record = WalkRecord()
        self._pid = 0
        self._pipe: BinaryIO | None = None
        if fork_is_safe():
            self._start()

    def _start(self) -> None:
        read_fd, write_fd = os.pipe()
        pid = os.fork()
        if pid == 0:  # the child: walk, write, and leave without running any of the parent's cleanup
            os.close(read_fd)
            _walk_and_exit(self.root, self.folders, write_fd)
        os.close(write_fd)
        self._pid, self._pipe = pid, os.fdopen(read_fd, "rb")

    def batches(self) -> Iterator[list[str]]:
        """Yield batches of root-relative file paths; afterwards self.record holds what else was seen."""
        if self._pipe is None:
            yield from self._walk_here()
            return
        while True:
            try:
                kind, payload = pickle.load(self._pipe)
            except EOFError:
                self.close()
                raise RuntimeError("the folder walk's child process ended without finishing") from None
            if kind == "files":
                yield payload.decode(FS_ENCODING, FS_ERRORS).split(SEP)
            elif kind == "done":
                self.record = payload
                self.close()
                return
            elif kind == "unreachable":
                self.close()
                raise UnreachableError(payload)
            else:
                self.close()
                raise RuntimeError(f"the folder walk failed in its child process:\n{payload}")

    def _walk_here(self) -> Iterator[list[str]]:
        for prefix, entries in self.root.walk(self.folders, self.record):
            yield [prefix + entry.name for entry in entries]

    def close(self) -> None:
        """Stop the child if it is still running and reap it."""
        if self._pipe is not None:
            self._pipe.close()
            self._pipe = None
        if self._pid:
            # Unreaped, the child still exists even when it has finished, so the kill cannot miss or
            # hit another process; it ends a walk nobody is going to read.
            os.kill(self._pid, signal.SIGKILL)
            os.waitpid(self._pid, 0)
            self._pid = 0

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


def _walk_and_exit(root: UploadsRoot, folders: tuple[str, ...], write_fd: int) -> NoReturn:
    """Walk in the child, send the frames, exit: never return into the parent's code."""
    status = 1
    try:
        frames = _walk_frames(root, folders)
        with os.fdopen(write_fd, "wb") as out:
            for frame in frames:
                pickle.dump(frame, out, protocol=pickle.HIGHEST_PROTOCOL)
        status = 0
    finally:
        os._exit(status)


def _walk_frames(root: UploadsRoot, folders: tuple[str, ...]) -> list[tuple[str, Any]]:
    frames: list[tuple[str, Any]] = []
    record = WalkRecord()
    try:
        for prefix, entries in root.walk(folders, record):
            # One join with the prefix in the separator: no str per path is built here.
            text = prefix + (SEP + prefix).join([entry.name for entry in entries])
            frames.append(("files", text.encode(FS_ENCODING, FS_ERRORS)))
    except UnreachableError as exc:
        return [("unreachable", str(exc))]
    except BaseException:
        return [("failed", traceback.format_exc())]
    frames.append(("done", record))
    return frames
