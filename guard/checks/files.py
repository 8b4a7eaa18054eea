"""File <-> row sync: rows whose file is missing, files no row refers to, and stored paths never to open."""

from __future__ import annotations

import os
import time
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import NamedTuple

from psycopg import sql

from guard.checks import CheckContext
from guard.db.catalog import primary_key, require_column
from guard.db.database import Database
from guard.db.psqlcopy import copy_chunks, psql_environment
from guard.findings.finding import CheckResult, Finding, FindingSink
from guard.fs import paths, pathsets
from guard.fs.gcpause import no_cyclic_gc
from guard.fs.root import UploadsRoot, WalkRecord
from guard.fs.scan import BackgroundWalk

KINDS = ("missing_file", "orphan_file", "unsafe_path")
CHECK = "files"

# Every stored path, bare. Nearly all of them name a walked file exactly and need no closer look, so
# they are matched first and only the rest are classified, in Python. Classifying every row in SQL
# (a CASE per row) cost the server more time than sending the rows.
STORED_PATHS = "SELECT {col}::text FROM {t} WHERE {col} IS NOT NULL"
# The rows behind the few stored paths found bad: one more scan, and only when there are any. The
# ORDER BY names the table's column: a bare {pk} would be the text output column, '10' before '9'.
ROWS_NAMING = "SELECT {pk}::text, {col}::text FROM {t} WHERE {col}::text = ANY(%s) ORDER BY {t}.{pk}"
MISSING = "no regular file at the stored path"
RESOLVERS = 16  # stored paths resolved at once (their syscalls wait on the disk, not on each other)
RESOLVE_AT_ONCE_FROM = 64  # fewer are resolved one after the other (a pool's threads cost more)
ESCAPES = "stored path resolves outside the uploads root; not opened"


def run(ctx: CheckContext) -> CheckResult:
    """Run the whole-table, whole-folder sync check: one read of the rows, one walk of the folders."""
    started = time.perf_counter()
    settings = ctx.settings
    root = UploadsRoot(settings.require_uploads_root())
    root.require_folders(settings.scan_dirs)
    sink = FindingSink(CHECK, ctx.limit, KINDS)
    url = settings.require_database_url()
    # The walk forks, so it starts before any connection is open; the child walks on the second core
    # while this process reads the stored paths.
    with (
        no_cyclic_gc(),
        BackgroundWalk(root, settings.scan_dirs) as walk,
        Database(url) as db,
        ThreadPoolExecutor(max_workers=1) as lookup,
    ):
        table, column = settings.file_table, settings.file_column
        require_column(db, table, column, owner="file_table/file_column")
        target = PathColumn(table, column, primary_key(db, table, owner="file_table").column)
        stored = read_stored(db, url, target)
        rows_read = stored.rows
        matched = match_walk(walk, stored, ctx)
        # The rows behind the unmatched paths are looked up on the server while they are judged here.
        rows = lookup.submit(rows_naming, db, target, matched.unmatched)
        verdicts = judge_unmatched(root, matched.unmatched, matched.unreferenced, walk.record)
        candidates, young = old_unreferenced(
            root, matched.unreferenced, verdicts.claimed, settings.orphan_grace
        )
        report_bad_rows(rows.result(), target, verdicts.bad, sink)
    report_orphans(candidates, verdicts.needed, sink)
    stats = {"files_scanned": matched.scanned, "unreferenced_within_grace": young, "rows": rows_read}
    return sink.result(time.perf_counter() - started, info=stats)


@dataclass(frozen=True)
class PathColumn:
    """Where rows store file paths, and the key that names a row."""

    table: str
    column: str
    pk: str

    def format(self, template: str) -> sql.Composed:
        return sql.SQL(template).format(
            t=sql.Identifier(self.table), col=sql.Identifier(self.column), pk=sql.Identifier(self.pk)
        )


def read_stored(db: Database, url: str, target: PathColumn) -> pathsets.StoredIndex:
    """Read every stored path in one scan into an index, through psql's COPY where it can be used."""
    query = target.format(STORED_PATHS)
    index = pathsets.stored_index()
    env = psql_environment(url)
    if env is None:
        index.add_values(list(db.stream_column(query)))
        return index
    for chunk in copy_chunks(env, query.as_string(db.connection)):
        index.add_copy(chunk)
    return index


class Flaw(NamedTuple):
    """What is wrong with a stored path: a finding's kind, message and path, before the row is known."""

    kind: str
    message: str
    path: str


@dataclass
class Verdicts:
    """What the stored paths no walked file matched exactly turned out to be."""

    bad: dict[str, Flaw] = field(default_factory=dict)  # by stored path; reported once per row holding it
    needed: set[str] = field(default_factory=set)  # in-root files they reach through a symlink
    claimed: set[str] = field(default_factory=set)  # walked files they name under another spelling


@dataclass(frozen=True)
class WalkMatch:
    """The stored paths no walked file matched exactly, the walked files no row names exactly."""

    unmatched: set[str]
    unreferenced: set[str]
    scanned: int


def match_walk(walk: BackgroundWalk, stored: pathsets.StoredIndex, ctx: CheckContext) -> WalkMatch:
    """Match every walked file against the distinct stored paths exactly, keeping only what differs.

    A walked path has a normal spelling (SCAN_DIRS are validated normal and safe, and a folder never
    lists '.' or '..'), so an exact match is a safe reference, except a name with a backslash: such a
    stored path is unsafe and is never a reference, so the index never matches those names.
    """
    bar = ctx.progress("files", None)
    scanned = 0
    for blob in walk.blobs():
        names = stored.match(blob)
        scanned += names
        bar.advance(names)
    bar.close()
    unmatched, unreferenced = set(stored.unmatched()), set(stored.unreferenced())
    stored.close()
    return WalkMatch(unmatched, unreferenced, scanned)


def judge_unmatched(
    root: UploadsRoot, unmatched: set[str], unreferenced: set[str], record: WalkRecord
) -> Verdicts:
    """Classify the stored paths no walked file matched exactly; none that is unsafe is ever opened."""
    verdicts = Verdicts()
    looked_up: list[tuple[str, str]] = []  # (stored, its normal spelling): resolved below, at once
    for stored in unmatched:
        if paths.is_blank(stored):
            continue  # integrity's ad_images.file_path.required reports these
        reason = paths.unsafe_reason(stored)
        if reason is not None:
            verdicts.bad[stored] = Flaw("unsafe_path", f"stored path {reason}; not opened", stored)
            continue
        key = paths.normalize(stored)
        if key != stored and key in unreferenced:
            verdicts.claimed.add(key)  # './a//b' names the walked file 'a/b'
            continue
        # A normal spelling that matched nothing was not walked as a file: when the walk read its folder
        # to the end and saw nothing else there, it is missing without a look.
        if key == stored and record.knows_absent(key):
            verdicts.bad[stored] = _path_flaw("missing", key)
        else:
            looked_up.append((stored, key))
    # What is left is mostly symlinks, each a readlink of a block the page cache may no longer hold
    # (0.4 s for 837 of them, one after the other, on the shared machine): the look-ups wait at once.
    # A few (a continuous worker's batch) cost less one after the other than a pool's start-up.
    keys = [key for _, key in looked_up]
    if len(keys) < RESOLVE_AT_ONCE_FROM:
        _judge_resolved(verdicts, root, looked_up, map(root.resolve, keys))
    else:
        with ThreadPoolExecutor(max_workers=RESOLVERS) as pool:
            _judge_resolved(verdicts, root, looked_up, pool.map(root.resolve, keys))
    return verdicts


def _judge_resolved(
    verdicts: Verdicts,
    root: UploadsRoot,
    looked_up: list[tuple[str, str]],
    resolved: Iterable[tuple[str, Path | None]],
) -> None:
    for (stored, key), (verdict, real) in zip(looked_up, resolved, strict=True):
        if verdict == "ok" and real is not None:
            verdicts.needed.add(root.relative(real))
        else:
            verdicts.bad[stored] = _path_flaw(verdict, key)


def rows_naming(db: Database, target: PathColumn, unmatched: set[str]) -> list[tuple[str, str]]:
    """Return (key, stored path) of every row holding one of these paths, in key order, in one scan."""
    asked = [p for p in unmatched if not paths.is_blank(p)]  # blank ones are never judged bad
    if not asked:
        return []
    return [(str(key), str(path)) for key, path in db.fetch_all(target.format(ROWS_NAMING), (asked,))]


def report_bad_rows(
    rows: list[tuple[str, str]], target: PathColumn, bad: dict[str, Flaw], sink: FindingSink
) -> None:
    """Report every row holding a bad stored path, in key order."""
    for row_id, stored in rows:
        if stored in bad:
            kind, message, path = bad[stored]
            if sink.keeps(kind):
                sink.add(Finding(CHECK, kind, f"{target.table}:{row_id}", message, path=path))
            else:
                sink.tally(kind)


def old_unreferenced(
    root: UploadsRoot, unreferenced: set[str], claimed: set[str], grace: int
) -> tuple[list[str], int]:
    """Split the files no row names into orphan candidates (sorted) and a count of young ones."""
    cutoff = time.time() - grace
    candidates: list[str] = []
    young = 0
    for relpath in unreferenced:
        if relpath in claimed:
            continue
        try:
            mtime = os.lstat(os.path.join(root.real, relpath)).st_mtime
        except FileNotFoundError:
            continue  # deleted since the walk: nothing left to be an orphan
        if mtime > cutoff:
            young += 1
        else:
            candidates.append(relpath)
    return sorted(candidates), young


def report_orphans(candidates: list[str], needed: set[str], sink: FindingSink) -> None:
    """Report unreferenced files, except those a row reaches through a symlink inside the root."""
    for relpath in candidates:
        if relpath in needed:
            continue
        if not sink.keeps("orphan_file"):
            sink.tally("orphan_file")
            continue
        shown = paths.json_safe(relpath)
        sink.add(Finding(CHECK, "orphan_file", f"file:{shown}", "no row refers to this file", path=shown))


def _path_flaw(verdict: str, path: str) -> Flaw:
    """What is wrong with a safe stored path that reached no regular file under the root."""
    if verdict == "escapes":
        return Flaw("unsafe_path", ESCAPES, path)
    return Flaw("missing_file", MISSING, path)
