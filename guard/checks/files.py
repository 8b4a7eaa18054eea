"""File <-> row sync: rows whose file is missing, files no row refers to, and stored paths never to open."""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass

from psycopg import sql

from guard import paths
from guard.catalog import primary_key, require_column
from guard.checks import CheckContext
from guard.database import Database
from guard.finding import CheckResult, Finding, FindingSink
from guard.uploads import UploadsRoot

KINDS = ("missing_file", "orphan_file", "unsafe_path")
CHECK = "files"


@dataclass(frozen=True)
class FileRef:
    """One row's stored path."""

    row_id: str
    path: str


def run(ctx: CheckContext) -> CheckResult:
    """Run the whole-table, whole-folder sync check."""
    started = time.perf_counter()
    settings = ctx.settings
    root = UploadsRoot(settings.require_uploads_root())
    sink = FindingSink(CHECK, ctx.limit, KINDS)
    with Database(settings.require_database_url()) as db:
        table = settings.file_table
        require_column(db, table, settings.file_column, owner="file_table/file_column")
        refs = collect_refs(db, table, settings.file_column, sink, ctx)
    candidates, stats = sweep_folder(root, settings.scan_dirs, refs, settings.orphan_grace, ctx)
    needed = resolve_unmatched(root, refs, sink, table)
    report_orphans(candidates, needed, sink)
    return sink.result(time.perf_counter() - started, info=stats)


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


def collect_refs(db: Database, table: str, column: str, sink: FindingSink, ctx: CheckContext) -> RefIndex:
    """Stream every non-blank stored path once; report unsafe ones, index the rest."""
    index = RefIndex()
    query = _paths_query(table, column, primary_key(db, table, owner="file_table").column)
    bar = ctx.progress("rows", _estimate_rows(db, table))
    for batch in db.stream_batches(query):
        for row_id, stored in batch:
            if stored and _plain(stored):
                index.add(stored, row_id)  # the common case, kept free of calls
            elif not paths.is_blank(stored):
                check_ref(FileRef(row_id, stored), index, sink, table)
        bar.advance(len(batch))
    bar.close()
    return index


def _plain(stored: str) -> bool:
    """Tell whether a path is already safe and in normal form, without a call per check."""
    return not (
        "\\" in stored
        or "." in stored[:1]
        or "/" in stored[:1]
        or "//" in stored
        or "/." in stored
        or stored[-1:] in ("/", " ", "\t", "\n")
        or "\x00" in stored
    )


def check_ref(ref: FileRef, index: RefIndex, sink: FindingSink, table: str) -> None:
    """Report a path that is unsafe; index any other under its normal spelling."""
    reason = paths.unsafe_reason(ref.path)
    if reason is None:
        index.add(paths.normalize(ref.path), ref.row_id)
        return
    message = f"stored path {reason}; not opened"
    sink.add(Finding(CHECK, "unsafe_path", f"{table}:{ref.row_id}", message, path=ref.path))


def sweep_folder(
    root: UploadsRoot,
    folders: tuple[str, ...],
    index: RefIndex,
    grace: int,
    ctx: CheckContext,
) -> tuple[list[str], dict[str, int]]:
    """Walk the scanned folders once: strike referenced files off the index, collect old unreferenced ones."""
    cutoff = time.time() - grace
    bar = ctx.progress("files", None)
    candidates: list[str] = []
    seen = young = 0
    first, more = index.first, index.more
    for prefix, entries in root.walk(folders):
        seen += len(entries)
        for entry in entries:
            relpath = prefix + entry.name
            if first.pop(relpath, None) is not None:
                if more:
                    more.pop(relpath, None)
            elif entry.stat(follow_symlinks=False).st_mtime > cutoff:
                young += 1
            else:
                candidates.append(relpath)
        bar.advance(len(entries))
    bar.close()
    return candidates, {
        "files_scanned": seen,
        "unreferenced_within_grace": young,
        "rows": index.rows,
    }


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


def _paths_query(table: str, column: str, pk: str) -> sql.Composed:
    return sql.SQL("SELECT {pk}::text, {col}::text FROM {table}").format(
        pk=sql.Identifier(pk), col=sql.Identifier(column), table=sql.Identifier(table)
    )


def _estimate_rows(db: Database, table: str) -> int | None:
    row = db.fetch_one(
        "SELECT reltuples::bigint FROM pg_class WHERE oid = to_regclass(quote_ident(%s))", (table,)
    )
    return int(row[0]) if row and row[0] and row[0] > 0 else None
