"""A folder's regular files as one bytes value, and the stored paths matched against walked ones.

Both are compiled (_pathsets.c) when a C compiler was there at install, else the pure-Python twins
below, which give the same results: list_folder_py is os.scandir, StoredIndexPy two sets and their
symmetric difference. On a million files the compiled pair leaves out a DirEntry, two str and three
hash-table operations per file, and holds the stored paths as bytes in one table instead of two
million-entry sets of str.

A walked blob is root-relative paths as the file system spells them, each followed by a NUL (a name
cannot hold one). The compiled index compares bytes, which equals comparing their str only where the
file-system encoding is UTF-8 with surrogateescape (every Linux with Python 3.7+ unless a locale says
otherwise), so elsewhere the twin is used.
"""

from __future__ import annotations

import importlib
import os
import sys
from collections.abc import Sequence
from typing import Any, Protocol

from guard.db.psqlcopy import lines_of

SEP = "\0"
# How os.fsencode and os.fsdecode spell names as bytes, applied to a whole blob at once.
FS_ENCODING, FS_ERRORS = sys.getfilesystemencoding(), sys.getfilesystemencodeerrors()
Others = list[tuple[str, bool]]  # (name, is a folder) of every entry that is not a regular file


class StoredIndex(Protocol):
    """The distinct stored paths, then what the walk and they do not have in common."""

    @property
    def rows(self) -> int: ...

    def add_copy(self, chunk: bytes) -> int:
        """Add whole lines of COPY's text format, one stored path each; return how many."""
        ...

    def add_values(self, values: Sequence[str]) -> int:
        """Add stored paths given as str; return how many."""
        ...

    def match(self, blob: bytes) -> int:
        """Match a blob of walked paths (call after every stored path is in); return how many."""
        ...

    def unmatched(self) -> list[str]:
        """Return the stored paths no walked path matched exactly."""
        ...

    def unreferenced(self) -> list[str]:
        """Return the walked paths no stored path matched exactly."""
        ...

    def close(self) -> None:
        """Free the table."""
        ...


def list_folder_py(path: str, prefix: str) -> tuple[bytes, Others]:
    """The pure-Python list_folder: prefix + name of each regular file, NUL-terminated; the others."""
    names: list[str] = []
    others: Others = []
    with os.scandir(path) as entries:
        for entry in entries:
            if entry.is_file(follow_symlinks=False):
                names.append(entry.name)
            else:
                others.append((entry.name, entry.is_dir(follow_symlinks=False)))
    if not names:
        return b"", others
    # One join with the prefix in the separator: no str per path is built here.
    return (prefix + (SEP + prefix).join(names) + SEP).encode(FS_ENCODING, FS_ERRORS), others


def paths_of(blob: bytes) -> list[str]:
    """Split a walked blob into its paths, as os.fsdecode spells them."""
    return blob.decode(FS_ENCODING, FS_ERRORS).split(SEP)[:-1]


class StoredIndexPy:
    """The pure-Python StoredIndex: a set of the stored paths, one of the walked, a symmetric difference."""

    def __init__(self) -> None:
        self.stored: set[str] = set()
        self.walked: set[str] = set()
        self.odd: list[str] = []
        self.rows = 0
        self._differed = False

    def add_copy(self, chunk: bytes) -> int:
        return self.add_values(lines_of(chunk.decode("utf-8")))

    def add_values(self, values: Sequence[str]) -> int:
        self.stored.update(values)
        self.rows += len(values)
        return len(values)

    def match(self, blob: bytes) -> int:
        batch = paths_of(blob)
        names = len(batch)
        # A walked path has a normal spelling, so an exact match is a safe reference, except a name
        # with a backslash: such a stored path is unsafe and never a reference, so it skips matching.
        if b"\\" in blob:  # one C-level search instead of a test per name
            self.odd += [p for p in batch if "\\" in p]
            batch = [p for p in batch if "\\" not in p]
        self.walked.update(batch)
        return names

    def unmatched(self) -> list[str]:
        self._difference()
        return list(self.stored)

    def unreferenced(self) -> list[str]:
        self._difference()
        return [*self.walked, *self.odd]

    def _difference(self) -> None:
        """Leave in each set only what the other lacks: one probe per stored path, no third big set."""
        if self._differed:
            return
        self._differed = True
        walked = self.walked
        walked ^= self.stored
        unmatched = walked & self.stored  # iterates the small side
        walked -= unmatched
        self.stored = unmatched

    def close(self) -> None:
        self.stored, self.walked, self.odd = set(), set(), []


try:
    _module: Any = importlib.import_module("guard.fs._pathsets")
except ImportError:  # built without a C compiler: the pure-Python twins, same results
    _module = None
COMPILED = _module is not None and FS_ENCODING == "utf-8" and FS_ERRORS == "surrogateescape"
list_folder = _module.list_folder if COMPILED else list_folder_py


def stored_index() -> StoredIndex:
    """Return an empty index: the compiled one where it can be used, else its twin."""
    index: StoredIndex = _module.StoredIndex() if COMPILED else StoredIndexPy()
    return index


def implementation() -> str:
    """Name the matching the files check uses now: "compiled" (_pathsets.c) or "python" (its twin)."""
    return "compiled" if COMPILED else "python"
