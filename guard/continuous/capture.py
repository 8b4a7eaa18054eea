"""`guard install` / `guard uninstall`: guard's schema, capture log, outbox and triggers, idempotently."""

from __future__ import annotations

from dataclasses import dataclass

from psycopg import sql

from guard.config.rules import Rule
from guard.config.settings import Settings
from guard.db.catalog import is_indexed, primary_key, require_column
from guard.db.database import Database, load_query
from guard.findings.finding import Finding

# 2: row-level capture, notify only while a listener is idle.
# 3: the triggers append to guard.capture; the listener coalesces into guard.outbox (outbox_collect.sql).
#    Installing over 2 adds the table and replaces the capture functions; changes 2 left in the outbox
#    are still claimed. Upgrade the listeners with the schema: a version-2 listener does not collect.
# 4: the outbox records which capture seqs its paths came from, so collectors merging out of order keep
#    old_path and new_path in change order (outbox_collect.sql); the capture functions drop their
#    `SET search_path` and qualify every name instead (install_trigger.sql).
# 5: guard.task_runs, so a redelivered task runs once (guard/continuous/runs.py); the outbox parks rows that
#    failed outbox_max_attempts times (dead_at, last_error).
# 6: guard.acks (acknowledged findings) and the schema fingerprint the listener last acted on
#    (listener_state.schema_fingerprint). Installing over 5 only adds them.
# 7: liveness: guard.heartbeats (every process's last sign of life) and guard.canary with its capture
#    trigger (beat's canary travels the app's path to a worker), and the weekly numbers' history
#    (guard.history_events, guard.history_daily). Installing over 6 only adds them.
VERSION = 9
# What `guard install` creates, in one place: everything lives in SCHEMA except the capture
# triggers on the app's tables, which carry these names and call a function in SCHEMA. Drift, its
# repair script and the history read these so guard's own objects are never the app's drift.
SCHEMA = "guard"
TRIGGER_NAMES = ("guard_capture_insert", "guard_capture_update", "guard_capture_delete")

VERSION_TABLE = "SELECT to_regclass('guard.version') IS NOT NULL"
INSTALLED_VERSION = "SELECT max(version) FROM guard.version"

# The finding a watched table without its capture triggers is (the listener keeps it; guard status
# reads the catalog itself): its changes go unchecked until `guard install` puts them back.
CHECK = "capture"
CAPTURE_MISSING = "capture_missing"
# Our triggers per table, only those still calling a function in our schema.
CAPTURE_TRIGGERS = """
SELECT c.relname, array_agg(t.tgname::text ORDER BY t.tgname) FROM pg_trigger t
JOIN pg_class c ON c.oid = t.tgrelid
JOIN pg_namespace n ON n.oid = c.relnamespace
JOIN pg_proc f ON f.oid = t.tgfoid
JOIN pg_namespace fn ON fn.oid = f.pronamespace
WHERE t.tgname = ANY(%s) AND n.nspname = current_schema() AND fn.nspname = %s
GROUP BY 1
"""

# Tables that carry one of our triggers, whatever the configuration says now.
TRIGGERED_TABLES = """
SELECT DISTINCT c.relname FROM pg_trigger t
JOIN pg_class c ON c.oid = t.tgrelid
JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE t.tgname = ANY(%s) AND n.nspname = current_schema()
"""


@dataclass(frozen=True)
class WatchedTable:
    """A table whose changes are captured: its key, the columns rules read, and its file column."""

    name: str
    pk: str
    columns: tuple[str, ...]
    path_column: str | None = None


def watched_tables(db: Database, settings: Settings) -> list[WatchedTable]:
    """Return the tables the rules name plus the file table, validated against the catalog."""
    columns: dict[str, set[str]] = {}
    for rule in settings.rules:
        require_column(db, rule.table, rule.column, owner=f"rule '{rule.id}'")
        columns.setdefault(rule.table, set()).add(rule.column)
    file_table, file_column = settings.file_table, settings.file_column
    require_column(db, file_table, file_column, owner="file_table/file_column")
    columns.setdefault(file_table, set()).add(file_column)
    tables = []
    for name in sorted(columns):
        pk = primary_key(db, name, owner=f"watched table '{name}'").column
        path = file_column if name == file_table else None
        tables.append(WatchedTable(name, pk, tuple(sorted(columns[name] | {pk})), path))
    return tables


def install(db: Database, settings: Settings) -> list[WatchedTable]:
    """Create or update guard's schema and the triggers of every watched table, in one transaction."""
    with db.transaction():
        db.execute("SELECT pg_advisory_xact_lock(hashtext('guard.continuous.capture'))")
        tables = watched_tables(db, settings)
        _bookkeeping(db)
        for name in _triggered_tables(db):
            if name not in {t.name for t in tables}:
                _drop_triggers(db, name)
        for table in tables:
            db.execute(capture_function_sql(table))
            db.execute(_triggers_sql(table))
    return tables


def unindexed_unique(db: Database, settings: Settings) -> list[Rule]:
    """Return the unique rules whose column no index leads with.

    A continuous check of such a rule finds the rows sharing a changed row's value by reading the
    whole table (twice: the related rows before the locks, the count after them), so each batch's
    cost grows with the table; an index in the app's schema makes both lookups. guard says so and
    creates nothing: an index it made on the app's table would be schema drift.
    """
    return [r for r in settings.rules if r.type == "unique" and not is_indexed(db, r.table, r.column)]


def unindexed_file_column(db: Database, settings: Settings) -> bool:
    """Tell whether no index leads with the file column.

    A continuous check of a file row's change asks whether its paths are named by looking them up
    in that column (guard/checks/files_targeted.py), which without an index reads the whole table.
    """
    return not is_indexed(db, settings.file_table, settings.file_column)


def install_bookkeeping(db: Database) -> None:
    """Create guard's own schema and tables only, no trigger on the app's tables.

    The listener does this when a re-created database lost the whole schema, so the findings ledger
    (capture_missing included) exists again; the app-facing triggers are `guard install`'s to put back
    (or the listener's with capture_auto_install).
    """
    with db.transaction():
        db.execute("SELECT pg_advisory_xact_lock(hashtext('guard.continuous.capture'))")
        _bookkeeping(db)


def _bookkeeping(db: Database) -> None:
    db.execute(load_query("install_schema"))
    db.execute("INSERT INTO guard.version (version) VALUES (%s) ON CONFLICT (version) DO NOTHING", (VERSION,))


def uninstall(db: Database) -> list[str]:
    """Drop every capture trigger and guard's schema (findings included); return the tables freed."""
    with db.transaction():
        names = _triggered_tables(db)
        for name in names:
            _drop_triggers(db, name)
        db.execute("DROP SCHEMA IF EXISTS guard CASCADE")
    return names


def missing_capture(db: Database, settings: Settings) -> list[Finding]:
    """Return a capture_missing finding per watched table lacking any of its capture triggers."""
    present = {str(r[0]): set(r[1]) for r in db.fetch_all(CAPTURE_TRIGGERS, (list(TRIGGER_NAMES), SCHEMA))}
    expected = sorted({rule.table for rule in settings.rules} | {settings.file_table})
    found = []
    for table in expected:
        lacking = [name for name in TRIGGER_NAMES if name not in present.get(table, set())]
        if lacking:
            message = (
                f"{table} lacks {', '.join(lacking)}: its changes are not checked as they happen "
                "(a restore or a re-created database drops them); run 'guard install'"
            )
            found.append(Finding(CHECK, CAPTURE_MISSING, table, message, detail={"triggers": lacking}))
    return found


def installed_version(db: Database) -> int | None:
    exists = db.fetch_one(VERSION_TABLE)
    if not exists or not exists[0]:
        return None
    row = db.fetch_one(INSTALLED_VERSION)
    return int(row[0]) if row and row[0] is not None else None


def function_name(table: str) -> sql.Identifier:
    return sql.Identifier(SCHEMA, f"capture_{table}")


def capture_function_sql(table: WatchedTable) -> sql.Composed:
    """Compose the table's capture function from guard/db/sql/install_trigger.sql."""

    def path(record: str) -> sql.Composable:
        if table.path_column is None:
            return sql.SQL("NULL::pg_catalog.text")
        return sql.SQL("{}.{}::pg_catalog.text").format(sql.SQL(record), sql.Identifier(table.path_column))

    return sql.SQL(load_query("install_trigger")).format(
        function=function_name(table.name),
        table_name=sql.Literal(table.name),
        pk=sql.Identifier(table.pk),
        old_path=path("OLD"),
        new_path=path("NEW"),
    )


def _triggers_sql(table: WatchedTable) -> sql.Composed:
    def relevant(record: str) -> sql.Composable:
        return sql.SQL(", ").join(
            sql.SQL("{}.{}").format(sql.SQL(record), sql.Identifier(c)) for c in table.columns
        )

    return sql.SQL(load_query("install_triggers_create")).format(
        table=sql.Identifier(table.name),
        function=function_name(table.name),
        relevant_old=relevant("OLD"),
        relevant_new=relevant("NEW"),
    )


def _triggered_tables(db: Database) -> list[str]:
    return [str(r[0]) for r in db.fetch_all(TRIGGERED_TABLES, (list(TRIGGER_NAMES),))]


def _drop_triggers(db: Database, table: str) -> None:
    for trigger in TRIGGER_NAMES:
        db.execute(
            sql.SQL("DROP TRIGGER IF EXISTS {} ON {}").format(sql.Identifier(trigger), sql.Identifier(table))
        )
