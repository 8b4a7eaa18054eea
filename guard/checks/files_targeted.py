"""The files check for given rows and given upload paths, as the continuous workers run it."""

from __future__ import annotations

import os
import stat
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

from psycopg import sql

from guard.checks import files
from guard.config.settings import Settings
from guard.db.catalog import primary_key
from guard.db.database import Database
from guard.findings.finding import Finding
from guard.fs import paths
from guard.fs.root import UploadsRoot, WalkRecord

ROW_KINDS = ("missing_file", "unsafe_path")
PATH_KINDS = ("orphan_file",)
# The usual spellings by index; any other ('a//b', 'a/./b', 'a/') normalized as paths.normalize
# does for a safe path: runs of '/' collapsed, '.' segments and a trailing '/' dropped. That second
# arm reads the whole table, but a row naming a file in an odd spelling must not make it an orphan.
ODDLY_NAMED = r"""{col} ~ '//|(^|/)\.(/|$)|/$'
    AND regexp_replace(regexp_replace(regexp_replace(regexp_replace(
            {col}::text, '/+', '/', 'g'), '/(\./)+', '/', 'g'), '^(\./)+', ''), '/\.?$', '')
        = ANY(%(paths)s)"""
REFERENCING = (
    "SELECT {pk}::text, {col}::text FROM {t} WHERE {col} = ANY(%(spellings)s) OR (" + ODDLY_NAMED + ")"
)
# The same two arms apart, for a question that needs no row keys (is each path named at all?): the
# second, which reads the whole table, only for the paths no row names in a usual spelling.
NAMED = "SELECT {col}::text FROM {t} WHERE {col} = ANY(%(spellings)s)"
NAMED_ODDLY = "SELECT {col}::text FROM {t} WHERE " + ODDLY_NAMED


@dataclass(frozen=True)
class PathReport:
    """Orphans among the given paths, the young files to look at again, and the rows naming them."""

    orphans: list[Finding] = field(default_factory=list)
    young: dict[str, float] = field(default_factory=dict)
    referencing_keys: list[str] = field(default_factory=list)


def row_subject(table: str, key: str) -> str:
    return f"{table}:{key}"


def path_subject(relpath: str) -> str:
    return f"file:{paths.json_safe(relpath)}"


def stored_path_subject(stored: str) -> str:
    """The subject of the file a row's path names, in whichever spelling it is stored ('a//b' is 'a/b')."""
    return path_subject(paths.normalize(stored) if paths.unsafe_reason(stored) is None else stored)


def check_rows(db: Database, settings: Settings, root: UploadsRoot, keys: Sequence[str]) -> list[Finding]:
    """Return missing_file and unsafe_path findings for these file rows; a deleted row has none."""
    table = settings.file_table
    pk = primary_key(db, table, owner="file_table")
    query = sql.SQL("SELECT {pk}::text, {col}::text FROM {t} WHERE {pk} = ANY(%s)").format(
        pk=sql.Identifier(pk.column),
        col=sql.Identifier(settings.file_column),
        t=sql.Identifier(table),
    )
    rows = db.fetch_all(query, (pk.bind(keys),))
    # The sweep's judgement of stored paths no walk matched; with no walk, nothing is known absent.
    stored_paths = {str(stored) for _, stored in rows if stored is not None}
    bad = files.judge_unmatched(root, stored_paths, set(), WalkRecord()).bad
    found = []
    for row_id, stored in rows:
        if stored in bad:
            kind, message, path = bad[stored]
            found.append(Finding(files.CHECK, kind, f"{table}:{row_id}", message, path=path))
    return found


def check_paths(
    db: Database,
    settings: Settings,
    root: UploadsRoot,
    relpaths: Sequence[str],
    now: float | None = None,
    rows: bool = True,
) -> PathReport:
    """Report which of these paths are orphans now, which may become one, and which rows name them.

    With `rows` False the rows naming them are not collected (referencing_keys stays empty), and the
    whole-table read for odd spellings is done only for the paths no row names in a usual one.
    """
    safe = sorted({paths.normalize(p) for p in relpaths if paths.unsafe_reason(p) is None})
    report = PathReport()
    if not safe:
        return report
    if rows:
        referenced = _referencing_rows(db, settings, safe, report.referencing_keys)
    else:
        referenced = named_paths(db, settings, safe)
    cutoff = (now if now is not None else time.time()) - settings.orphan_grace
    for relpath in safe:
        if relpath in referenced or not in_scanned_folder(relpath, settings.scan_dirs):
            continue
        mtime = scanned_file_mtime(root, relpath)
        if mtime is None:
            continue
        if mtime > cutoff:
            report.young[relpath] = mtime - cutoff
            continue
        shown = paths.json_safe(relpath)
        report.orphans.append(
            Finding(
                files.CHECK, "orphan_file", path_subject(relpath), "no row refers to this file", path=shown
            )
        )
    return report


def referencing_keys(db: Database, settings: Settings, relpaths: Sequence[str]) -> list[str]:
    """Return the keys of the file rows that name these paths now (to lock them before checking)."""
    safe = sorted({paths.normalize(p) for p in relpaths if paths.unsafe_reason(p) is None})
    keys: list[str] = []
    if safe:
        _referencing_rows(db, settings, safe, keys)
    return keys


def in_scanned_folder(relpath: str, folders: Sequence[str]) -> bool:
    return any(relpath.startswith(f"{folder}/") for folder in folders)


def scanned_file_mtime(root: UploadsRoot, relpath: str) -> float | None:
    """Return the mtime of a regular file the folder walk would see, or None (absent, symlinked)."""
    full = os.path.join(str(root.real), relpath)
    try:
        info = os.lstat(full)
    except OSError:
        return None
    if not stat.S_ISREG(info.st_mode) or os.path.realpath(full) != os.path.normpath(full):
        return None
    return info.st_mtime


def _usual_spellings(relpaths: list[str]) -> tuple[list[str], list[str]]:
    """The paths a row can hold (undecodable names: none can) and the spellings looked up by index."""
    storable = [p for p in relpaths if paths.json_safe(p) == p]
    return storable, storable + [f"./{p}" for p in storable]


def named_paths(db: Database, settings: Settings, relpaths: list[str]) -> set[str]:
    """Return which of these (normalized, safe) paths some row names in any spelling the sweep accepts."""
    storable, spellings = _usual_spellings(relpaths)
    if not storable:
        return set()
    names = {"col": sql.Identifier(settings.file_column), "t": sql.Identifier(settings.file_table)}
    named = {
        paths.normalize(str(stored))
        for (stored,) in db.fetch_all(sql.SQL(NAMED).format(**names), {"spellings": spellings})
    }
    unnamed = [p for p in storable if p not in named]
    if unnamed:
        query = sql.SQL(NAMED_ODDLY).format(**names)
        named.update(paths.normalize(str(stored)) for (stored,) in db.fetch_all(query, {"paths": unnamed}))
    return named & set(storable)


def _referencing_rows(db: Database, settings: Settings, relpaths: list[str], keys_out: list[str]) -> set[str]:
    """Return which paths some row names in any spelling the sweep accepts, collecting the row keys."""
    table = settings.file_table
    pk = primary_key(db, table, owner="file_table")
    query = sql.SQL(REFERENCING).format(
        pk=sql.Identifier(pk.column),
        col=sql.Identifier(settings.file_column),
        t=sql.Identifier(table),
    )
    storable, spellings = _usual_spellings(relpaths)
    referenced = set()
    for row_id, stored in db.fetch_all(query, {"spellings": spellings, "paths": storable}):
        referenced.add(paths.normalize(str(stored)))
        keys_out.append(str(row_id))
    return referenced
