"""The one seam to the uploads folder: a streamed walk and safe resolution under the root."""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from itertools import islice
from pathlib import Path

from guard.errors import UnreachableError

FileBatch = tuple[str, list[os.DirEntry[str]]]
BATCH = 10_000


@dataclass
class WalkRecord:
    """What a walk saw besides regular files: folders read to the end, and other entries."""

    folders: set[str] = field(default_factory=set)
    others: set[str] = field(default_factory=set)

    def knows_absent(self, relpath: str) -> bool:
        """Tell whether the walk proves nothing exists at a path it did not yield as a file."""
        parent = relpath.rpartition("/")[0]
        return parent in self.folders and relpath not in self.others


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
        self._real_text = str(self.real)
        self._real_prefix = os.path.join(self._real_text, "")

    def walk(self, folders: tuple[str, ...], record: WalkRecord | None = None) -> Iterator[FileBatch]:
        """Yield (folder prefix, regular files) batches; symlinks and symlinked folders are not followed."""
        for folder in folders:
            start = self.real / folder
            if not start.is_dir() or os.path.realpath(start) != str(start):
                continue  # absent, or reached through a symlink: never walked
            yield from self._walk_dir(str(start), folder, record)

    def _walk_dir(self, path: str, rel: str, record: WalkRecord | None) -> Iterator[FileBatch]:
        stack = [(path, rel)]
        while stack:
            current, current_rel = stack.pop()
            prefix = f"{current_rel}/"
            try:
                with os.scandir(current) as entries:
                    while chunk := list(islice(entries, BATCH)):
                        files = [e for e in chunk if e.is_file(follow_symlinks=False)]
                        if len(files) != len(chunk):  # rare: folders, symlinks, sockets
                            self._note_others(chunk, prefix, stack, record)
                        if files:
                            yield prefix, files
            except PermissionError as exc:
                raise UnreachableError(f"cannot read {current}: {exc.strerror}") from None
            except (FileNotFoundError, NotADirectoryError):
                continue  # removed while we walked: not read to the end, so proves nothing absent
            if record is not None:
                record.folders.add(current_rel)

    @staticmethod
    def _note_others(
        chunk: list[os.DirEntry[str]], prefix: str, stack: list[tuple[str, str]], record: WalkRecord | None
    ) -> None:
        """Queue the sub-folders of a chunk and record every entry that is not a regular file."""
        for entry in chunk:
            if entry.is_file(follow_symlinks=False):
                continue
            if entry.is_dir(follow_symlinks=False):
                stack.append((entry.path, prefix + entry.name))
            if record is not None:
                record.others.add(prefix + entry.name)

    def require_folders(self, folders: tuple[str, ...]) -> None:
        """Fail when a scanned folder is missing: a sweep of nothing would find no orphans."""
        for folder in folders:
            if not (self.real / folder).is_dir():
                raise UnreachableError(f"scanned folder {folder!r} is not a folder under {self.root}")

    def resolve(self, relpath: str) -> tuple[str, Path | None]:
        """Resolve a safe relative path: ('ok', real), ('missing', None) or ('escapes', None)."""
        resolved = os.path.realpath(self.real / relpath)
        # A string test: Path.parents builds a Path per ancestor, ten times the cost of the realpath.
        if resolved != self._real_text and not resolved.startswith(self._real_prefix):
            return "escapes", None
        real = Path(resolved)
        if real.is_file():
            return "ok", real
        return "missing", None

    def relative(self, real: Path) -> str:
        """Return the root-relative spelling of a resolved path inside the root."""
        return real.relative_to(self.real).as_posix()

    def readable(self) -> bool:
        return os.access(self.real, os.R_OK | os.X_OK)
