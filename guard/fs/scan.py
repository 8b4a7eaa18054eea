"""A walk of the scanned folders in a forked child, so it runs on another core while we read the rows.

Why a process and not a thread: without the compiled lister the walk is mostly Python work (a DirEntry
and a name per file), and with it most of the time is the kernel's getdents; either way a thread would
take turns with the thread reading rows. A forked child needs no imports and no re-configuration, and
it sends each folder's paths as one bytes value, each path followed by a NUL (a file name cannot
contain NUL; guard.fs.pathsets.list_folder builds it), which the parent matches without decoding.

The child keeps its whole output until the walk is done and only then writes it: a pipe holds 64 KiB,
so writing as it goes would stall the walk until the parent, busy with the database, starts reading.
Where fork is unavailable or unsafe (guard.fs.forking), the same walk runs in this process instead, with
the same results.
"""

from __future__ import annotations

import os
import pickle
import signal
import traceback
from collections.abc import Iterator
from types import TracebackType
from typing import Any, BinaryIO, NoReturn, Self

from guard.errors import UnreachableError
from guard.fs import pathsets
from guard.fs.forking import fork_is_safe
from guard.fs.root import UploadsRoot, WalkRecord


class BackgroundWalk:
    """The regular files under some folders, as blobs of root-relative paths, walked in a child process."""

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

    def blobs(self) -> Iterator[bytes]:
        """Yield blobs of NUL-terminated root-relative file paths; then self.record has what else was seen."""
        if self._pipe is None:
            yield from walk_blobs(self.root, self.folders, self.record)
            return
        while True:
            try:
                kind, payload = pickle.load(self._pipe)
            except EOFError:
                self.close()
                raise RuntimeError("the folder walk's child process ended without finishing") from None
            if kind == "files":
                yield payload
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

    def batches(self) -> Iterator[list[str]]:
        """Yield the walked paths as str, a folder at a time (for callers that want names, not bytes)."""
        for blob in self.blobs():
            yield pathsets.paths_of(blob)

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
        frames += [("files", blob) for blob in walk_blobs(root, folders, record)]
    except UnreachableError as exc:
        return [("unreachable", str(exc))]
    except BaseException:
        return [("failed", traceback.format_exc())]
    frames.append(("done", record))
    return frames


def walk_blobs(root: UploadsRoot, folders: tuple[str, ...], record: WalkRecord) -> Iterator[bytes]:
    """Yield each folder's regular files as one blob, as UploadsRoot.walk would list them.

    Symlinks and symlinked folders are not followed; a folder removed while we walk is skipped and,
    not read to the end, proves nothing absent; one we may not read makes the whole walk unreachable.
    """
    for folder in folders:
        start = root.real / folder
        if not start.is_dir() or os.path.realpath(start) != str(start):
            continue  # absent, or reached through a symlink: never walked
        stack = [(str(start), folder)]
        while stack:
            current, current_rel = stack.pop()
            prefix = f"{current_rel}/"
            try:
                blob, others = pathsets.list_folder(current, prefix)
            except PermissionError as exc:
                raise UnreachableError(f"cannot read {current}: {exc.strerror}") from None
            except (FileNotFoundError, NotADirectoryError):
                continue
            for name, is_folder in others:  # rare: folders, symlinks, sockets
                if is_folder:
                    stack.append((os.path.join(current, name), prefix + name))
                record.others.add(prefix + name)
            record.folders.add(current_rel)
            if blob:
                yield blob
