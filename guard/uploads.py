"""The one seam to the uploads folder: a streamed walk and safe resolution under the root."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

from guard.errors import UnreachableError

FileBatch = tuple[str, list[os.DirEntry[str]]]
BATCH = 10_000


class UploadsRoot:
    """The folder stored paths are relative to; nothing outside it is ever followed."""

    def __init__(self, root: Path) -> None:
        self.root = root
        try:
            self.real = Path(os.path.realpath(root, strict=True))
        except OSError as exc:
            raise UnreachableError(f"uploads root {root} cannot be read: {exc.strerror}") from None
        if not self.real.is_dir():
            raise UnreachableError(f"uploads root {root} is not a folder")

    def walk(self, folders: tuple[str, ...]) -> Iterator[FileBatch]:
        """Yield (folder prefix, regular files) batches; symlinks and symlinked folders are not followed."""
        for folder in folders:
            start = self.real / folder
            if start.is_symlink() or not start.is_dir():
                continue
            yield from self._walk_dir(str(start), folder)

    def _walk_dir(self, path: str, rel: str) -> Iterator[FileBatch]:
        stack = [(path, rel)]
        while stack:
            current, current_rel = stack.pop()
            prefix = f"{current_rel}/"
            batch: list[os.DirEntry[str]] = []
            try:
                with os.scandir(current) as entries:
                    for entry in entries:
                        if entry.is_dir(follow_symlinks=False):
                            stack.append((entry.path, prefix + entry.name))
                        elif entry.is_file(follow_symlinks=False):
                            batch.append(entry)
                            if len(batch) == BATCH:
                                yield prefix, batch
                                batch = []
            except PermissionError as exc:
                raise UnreachableError(f"cannot read {current}: {exc.strerror}") from None
            if batch:
                yield prefix, batch

    def resolve(self, relpath: str) -> tuple[str, Path | None]:
        """Resolve a safe relative path: ('ok', real), ('missing', None) or ('escapes', None)."""
        real = Path(os.path.realpath(self.real / relpath))
        if real != self.real and self.real not in real.parents:
            return "escapes", None
        if real.is_file():
            return "ok", real
        return "missing", None

    def relative(self, real: Path) -> str:
        """Return the root-relative spelling of a resolved path inside the root."""
        return real.relative_to(self.real).as_posix()

    def readable(self) -> bool:
        return os.access(self.real, os.R_OK | os.X_OK)
