"""File <-> row sync: rows whose file is missing, files no row refers to, and stored paths never to open."""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass

from psycopg import sql

from guard import paths
from guard.catalog import primary_key, require_column
from guard.checks import CheckContext
from guard.database import Database
from guard.finding import CheckResult, Finding, FindingSink
from guard.uploads import UploadsRoot, WalkRecord

KINDS = ("missing_file", "orphan_file", "unsafe_path")
CHECK = "files"

# A path is plain when it is safe and already normal: no backslash, not absolute, no '.'-led
# segment (so no '..'), no empty segment, no trailing '/' or whitespace. Anything else goes the
# careful way, row by row, through guard.paths.
PLAIN = (
    "{col} <> '' AND strpos({col}, '\\') = 0 AND left({col}, 1) NOT IN ('.', '/')"
    " AND strpos({col}, '//') = 0 AND strpos({col}, '/.') = 0"
    " AND right({col}, 1) NOT IN ('/', ' ', E'\\t', E'\\n', E'\\r')"
)
# Plain paths come bare; any other row comes as '/<length of key>/<key><path>', which no plain
# path can be, so one scan serves both.
ALL_PATHS = (
    "SELECT CASE WHEN " + PLAIN + " THEN {col}::text"
    " ELSE '/' || length({pk}::text) || '/' || {pk}::text || {col}::text END"
    " FROM {t} WHERE {col} IS NOT NULL"
)
ROWS_NAMING = "SELECT {pk}::text, {col}::text FROM {t} WHERE {col}::text = ANY(%s)"


@dataclass(frozen=True)
class FileRef:
    """One row's stored path."""

    row_id: str
    path: str


def run(ctx: CheckContext) -> CheckResult:
    """Run the whole-table, whole-folder sync check: one read of the rows, one walk of the folders."""
    started = time.perf_counter()
    settings = ctx.settings
    root = UploadsRoot(settings.require_uploads_root())
    root.require_folders(settings.scan_dirs)
    sink = FindingSink(CHECK, ctx.limit, KINDS)
    table, column = settings.file_table, settings.file_column
    with Database(settings.require_database_url()) as db:
        require_column(db, table, column, owner="file_table/file_column")
        target = PathColumn(table, column, primary_key(db, table, owner="file_table").column)
        # The database reads and sends rows on its own core while this process walks the folders.
        reader = PathReader(Database(db.url), target)
        reader.start()
        record = WalkRecord()
        try:
            files = walk_folders(root, settings.scan_dirs, record, ctx)
        finally:
            plain, others = reader.result()
        index = index_others(others, sink, table)
        unreferenced = files - plain
        plain -= files
        candidates, young = old_unreferenced(root, unreferenced, index, settings.orphan_grace)
        needed = resolve_unmatched(root, index, sink, table)
        needed |= resolve_plain(db, target, root, plain, record, sink)
    report_orphans(candidates, needed, sink)
    stats = {"files_scanned": len(files), "unreferenced_within_grace": young, "rows": plain.rows}
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


class PlainPaths(set[str]):
    """Stored paths that are safe and already in normal form, matched without ids to stay small."""

    rows = 0


class RefIndex:
    """Safe stored paths by normalized spelling, with the ids of every row naming each."""

    def __init__(self) -> None:
        self.first: dict[str, str] = {}
        self.more: dict[str, list[str]] = {}
        self.rows = 0

    def add(self, key: str, row_id: str) -> None:
        self.rows += 1
        if key in self.first:
            self.more.setdefault(key, []).append(row_id)
        else:
            self.first[key] = row_id

    def unmatched(self) -> Iterator[tuple[str, list[str]]]:
        for key, first in self.first.items():
            yield key, [first, *self.more.get(key, [])]


class PathReader(threading.Thread):
    """Read every non-blank stored path on its own connection, as a set of plain paths and the rest."""

    def __init__(self, db: Database, target: PathColumn) -> None:
        super().__init__(name="guard-path-reader", daemon=True)
        self.db, self.target = db, target
        self.plain = PlainPaths()
        self.others: list[str] = []
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            with self.db:
                for chunk in self.db.stream_values(self.target.format(ALL_PATHS)):
                    self.plain.update(chunk)
                    self.plain.rows += len(chunk)
                    self.others.extend([value for value in chunk if value[:1] == "/"])
        except BaseException as exc:  # handed to the caller by result()
            self.error = exc

    def result(self) -> tuple[PlainPaths, list[str]]:
        """Wait for the read; re-raise its error; drop the encoded rows from the plain set."""
        self.join()
        if self.error is not None:
            raise self.error
        self.plain.difference_update(self.others)
        return self.plain, self.others


def index_others(others: list[str], sink: FindingSink, table: str) -> RefIndex:
    """Decode the rows whose paths are not plain: report unsafe ones, index the rest."""
    index = RefIndex()
    for encoded in others:
        row_id, stored = decode_other(encoded)
        if not paths.is_blank(stored):
            check_ref(FileRef(row_id, stored), index, sink, table)
    return index


def decode_other(encoded: str) -> tuple[str, str]:
    """Split '/<length of key>/<key><path>' into the row's key and its stored path."""
    size, rest = encoded[1:].split("/", 1)
    return rest[: int(size)], rest[int(size) :]


def check_ref(ref: FileRef, index: RefIndex, sink: FindingSink, table: str) -> None:
    """Report a path that is unsafe; index any other under its normal spelling."""
    reason = paths.unsafe_reason(ref.path)
    if reason is None:
        index.add(paths.normalize(ref.path), ref.row_id)
        return
    message = f"stored path {reason}; not opened"
    sink.add(Finding(CHECK, "unsafe_path", f"{table}:{ref.row_id}", message, path=ref.path))


def walk_folders(
    root: UploadsRoot, folders: tuple[str, ...], record: WalkRecord, ctx: CheckContext
) -> set[str]:
    """Return every regular file under the scanned folders, relative to the root."""
    bar = ctx.progress("files", None)
    found: set[str] = set()
    for prefix, entries in root.walk(folders, record):
        found.update([prefix + entry.name for entry in entries])
        bar.advance(len(entries))
    bar.close()
    return found


def old_unreferenced(
    root: UploadsRoot, unreferenced: set[str], index: RefIndex, grace: int
) -> tuple[list[str], int]:
    """Strike files named by non-plain rows; split the rest into orphan candidates and young files."""
    cutoff = time.time() - grace
    candidates: list[str] = []
    young = 0
    for relpath in unreferenced:
        if index.first.pop(relpath, None) is not None:
            index.more.pop(relpath, None)
            continue
        try:
            mtime = os.lstat(os.path.join(root.real, relpath)).st_mtime
        except FileNotFoundError:
            continue  # deleted since the walk: nothing left to be an orphan
        if mtime > cutoff:
            young += 1
        else:
            candidates.append(relpath)
    return candidates, young


def report_orphans(candidates: list[str], needed: set[str], sink: FindingSink) -> None:
    """Report unreferenced files, except those a row reaches through a symlink inside the root."""
    for relpath in candidates:
        if relpath in needed:
            continue
        shown = paths.json_safe(relpath)
        sink.add(Finding(CHECK, "orphan_file", f"file:{shown}", "no row refers to this file", path=shown))


def resolve_unmatched(root: UploadsRoot, index: RefIndex, sink: FindingSink, table: str) -> set[str]:
    """Resolve the paths the walk did not claim; return the in-root files they reach."""
    needed: set[str] = set()
    for key, row_ids in index.unmatched():
        verdict, real = root.resolve(key)
        if verdict == "ok" and real is not None:
            needed.add(root.relative(real))
            continue
        for row_id in row_ids:
            if verdict == "escapes":
                finding = Finding(
                    CHECK,
                    "unsafe_path",
                    f"{table}:{row_id}",
                    "stored path resolves outside the uploads root; not opened",
                    path=key,
                )
            else:
                finding = Finding(
                    CHECK,
                    "missing_file",
                    f"{table}:{row_id}",
                    "no regular file at the stored path",
                    path=key,
                )
            sink.add(finding)
    return needed


def resolve_plain(
    db: Database,
    target: PathColumn,
    root: UploadsRoot,
    unmatched: PlainPaths,
    record: WalkRecord,
    sink: FindingSink,
) -> set[str]:
    """Resolve plain paths the walk did not see, then name every row behind the bad ones."""
    needed: set[str] = set()
    bad: dict[str, str] = {}
    for relpath in unmatched:
        verdict, real = ("missing", None) if record.knows_absent(relpath) else root.resolve(relpath)
        if verdict == "ok" and real is not None:
            needed.add(root.relative(real))
        else:
            bad[relpath] = verdict
    if bad:
        for row_id, stored in db.fetch_all(target.format(ROWS_NAMING), (list(bad),)):
            sink.add(_path_finding(bad[stored], target.table, row_id, stored))
    return needed


def _path_finding(verdict: str, table: str, row_id: str, path: str) -> Finding:
    if verdict == "escapes":
        message = "stored path resolves outside the uploads root; not opened"
        return Finding(CHECK, "unsafe_path", f"{table}:{row_id}", message, path=path)
    return Finding(
        CHECK, "missing_file", f"{table}:{row_id}", "no regular file at the stored path", path=path
    )
