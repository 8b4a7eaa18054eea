"""Continuous sync: check what changed, keep guard.findings true, and mark the outbox processed."""

from __future__ import annotations

import functools
import logging
import os
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import psycopg
from psycopg import sql

from guard.checks import CheckContext, integrity, registry
from guard.checks import files_targeted as file_events
from guard.config.redact import redact
from guard.config.rules import Rule
from guard.config.settings import Settings
from guard.continuous import canary
from guard.continuous.outbox import mark_processed, marked, prune, record_error, start_marking
from guard.db.database import Database
from guard.errors import GuardError, UnreachableError
from guard.findings import ledger as store
from guard.findings.finding import CheckResult, Finding
from guard.findings.ledger import Changes, Scope
from guard.fs.root import UploadsRoot
from guard.history import daily, events

log = logging.getLogger("guard.continuous.process")
OUTBOX_KEEP_SECONDS = 3600
SAME_VALUE = "SELECT {pk}::text FROM {t} WHERE {c} IN (SELECT {c} FROM {t} WHERE {pk} = ANY(%s))"
# A unique finding's message names the shared value, so equal messages mean rows that collided.
SHARED_FINDING = """
SELECT substr(o.subject, %s) FROM guard.findings c
JOIN guard.findings o ON o.check_name = c.check_name AND o.kind = c.kind AND o.message = c.message
WHERE c.resolved_at IS NULL AND o.resolved_at IS NULL AND c.check_name = 'integrity'
  AND c.kind = ANY(%s) AND c.subject = ANY(%s) AND starts_with(o.subject, %s)
"""
# A continuous check commits without waiting for the disk (an fdatasync, 5-7 ms on the bench machine
# and worse under other I/O: the largest single part of commit -> finding). What it writes is derived
# and is derived again: a database crash can undo the last fraction of a second of checks, and then
# their outbox rows are unprocessed again and are sent again after the lease (the hourly sweep also
# re-derives every finding). Killing the worker, the listener or Redis loses nothing: the commit is
# the database's. Sweeps and maintenance keep waiting for the disk.
NO_DISK_WAIT = "SET LOCAL synchronous_commit = off"
MAINTENANCE = {"backup": "backup_failed", "prune": "prune_failed", "drill": "drill_failed"}
MAINTENANCE.update(copy="backup_copy_failed", prune_remote="prune_failed")  # off-site (BACKUP_REMOTES)


@dataclass(frozen=True)
class Outcome:
    """What one unit of work changed, and files to look at again once their grace period ends."""

    changes: Changes = Changes()
    recheck: dict[str, float] = field(default_factory=dict)
    failure: str | None = None  # maintenance only: why the backup, prune or drill failed


def process_rows(
    settings: Settings,
    table: str,
    keys: Sequence[str],
    paths: Sequence[str] = (),
    outbox_ids: Sequence[int] = (),
) -> Outcome:
    """Check these rows (and the file paths they touched) and mark their outbox entries processed."""
    if table == canary.TABLE:
        return _canaries(settings, keys, outbox_ids)
    keys = sorted(set(keys))
    row_subjects = tuple(file_events.row_subject(table, k) for k in keys)
    # In a pipeline what is sent before a read shares its round trip: the transaction is five of them
    # (it was nine, each also a wake-up of this process and of the server on a busy machine): the
    # related keys; the locks; the rules' query; the outbox mark with the findings' open and resolve;
    # the commit.
    with _database(settings) as db, db.pipelined_transaction():
        db.execute(NO_DISK_WAIT)
        # Everything this transaction locks is found first and locked in one sorted call: a second
        # call later could wait on a check that waits on us (a deadlock).
        related = _related_keys(db, settings, table, keys)
        related_subjects = tuple(file_events.row_subject(table, k) for k in related)
        # The paths are locked, not the other rows that name them: a row change leaves those rows'
        # files as they were, so only the paths' orphan findings can change here (a file that came
        # or went is the path event's to check, and it locks both).
        subjects = [*row_subjects, *related_subjects, *_path_lock_subjects(settings, paths, [])]
        read_at = store.lock_subjects(db, subjects)
        result = _rows_check(db, settings, table, related)
        marking = start_marking(db, outbox_ids)  # sent now, read after the findings' statements
        changes = _rows_reconcile(db, settings, table, related_subjects, result, read_at)
        recheck: dict[str, float] = {}
        if table == settings.file_table:
            root = UploadsRoot(settings.require_uploads_root())
            found = file_events.check_rows(db, settings, root, keys)
            scope = Scope("files", file_events.ROW_KINDS, row_subjects)
            changes += store.reconcile(db, scope, found, seen=read_at)
            path_outcome = _reconcile_paths(db, settings, root, paths, set(), read_at)
            changes += path_outcome.changes
            recheck = path_outcome.recheck
        marked(db, marking)
    _keep_statistics(settings, changes.opened)
    return Outcome(changes, recheck)


def _canaries(settings: Settings, keys: Sequence[str], outbox_ids: Sequence[int]) -> Outcome:
    """Beat's canaries reached a worker: record their latency, end a stall, mark them processed."""
    with _database(settings) as db, db.transaction():
        changes = canary.came_through(db, keys)
        mark_processed(db, outbox_ids)
    return Outcome(changes)


def process_paths(settings: Settings, paths: Sequence[str]) -> Outcome:
    """Check these upload paths: orphans, and the rows that name them (a file came or went)."""
    root = UploadsRoot(settings.require_uploads_root())
    with _database(settings) as db, db.transaction():
        db.execute(NO_DISK_WAIT)
        keys = _path_keys(db, settings, paths)
        read_at = store.lock_subjects(db, _path_lock_subjects(settings, paths, keys))
        outcome = _reconcile_paths(db, settings, root, paths, set(keys), read_at)
    _keep_statistics(settings, outcome.changes.opened)
    return outcome


def _path_keys(db: Database, settings: Settings, paths: Sequence[str]) -> list[str]:
    """Return the file rows that name these paths now, to lock them with the paths."""
    return file_events.referencing_keys(db, settings, paths)


def _path_lock_subjects(settings: Settings, paths: Sequence[str], keys: Sequence[str]) -> list[str]:
    rows = [file_events.row_subject(settings.file_table, k) for k in keys]
    return [*(file_events.stored_path_subject(p) for p in paths), *rows]


def _rows_check(db: Database, settings: Settings, table: str, keys: list[str]) -> CheckResult | None:
    """Check the table's rules on these rows (None when it has no rules or there are no rows)."""
    rules = [r for r in settings.rules if r.table == table]
    if not rules or not keys:
        return None
    return integrity.check_keys(db, rules, table, keys, plans=_plans(db, rules, table))


def _rows_reconcile(
    db: Database,
    settings: Settings,
    table: str,
    subjects: tuple[str, ...],
    result: CheckResult | None,
    read_at: datetime,
) -> Changes:
    if result is None:
        return Changes()
    scope = Scope(integrity.CHECK, tuple(r.id for r in settings.rules if r.table == table), subjects)
    return store.reconcile(db, scope, _all_findings(result.findings, result.counts), seen=read_at)


def _related_keys(db: Database, settings: Settings, table: str, keys: list[str]) -> list[str]:
    """Add the rows a unique rule relates to these: same value now, or sharing their open finding."""
    unique = [r for r in settings.rules if r.table == table and r.type == "unique"]
    if not unique or not keys:
        return keys
    found = set(keys)
    pk = _plans(db, [r for r in settings.rules if r.table == table], table)[0].pk
    columns = tuple(rule.column for rule in unique)
    params: list[Any] = [pk.bind(keys) for _ in columns]
    subjects = [file_events.row_subject(table, k) for k in keys]
    prefix = file_events.row_subject(table, "")
    params += [len(prefix) + 1, [r.id for r in unique], subjects, prefix]
    # one round trip for all of them (the worker's transaction is a chain of them)
    found.update(str(r[0]) for r in db.fetch_all(_related_query(table, pk.column, columns), params))
    return sorted(found)


@functools.lru_cache(maxsize=256)
def _related_query(table: str, pk: str, columns: tuple[str, ...]) -> str:
    """Compose the related-keys query once per table (composing it per task cost more than running it)."""
    queries: list[sql.Composable] = [
        sql.SQL(SAME_VALUE).format(pk=sql.Identifier(pk), c=sql.Identifier(c), t=sql.Identifier(table))
        for c in columns
    ]
    queries.append(sql.SQL(SHARED_FINDING))
    return sql.SQL(" UNION ").join(queries).as_string()


def _reconcile_paths(
    db: Database,
    settings: Settings,
    root: UploadsRoot,
    paths: Sequence[str],
    locked_keys: set[str],
    read_at: datetime,
) -> Outcome:
    """Reconcile these paths' orphans and the locked rows that name them.

    A row that came to name a path after the locks were taken is not checked here: its own change
    is in the outbox, and its own check takes its lock. With no rows locked (a row's change locks
    only its paths) the rows naming them are not looked for, and the table is read in full only for
    a path no row names in a usual spelling (its old path, or a new one stored only in an odd
    spelling). Paths are locked and scoped as the file they name, so a row storing 'a//b' and a
    file event on 'a/b' wait for each other and see the same finding.
    """
    if not paths:
        return Outcome()
    report = file_events.check_paths(db, settings, root, paths, rows=bool(locked_keys))
    subjects = tuple(sorted({file_events.stored_path_subject(p) for p in paths}))
    scope = Scope("files", file_events.PATH_KINDS, subjects)
    changes = store.reconcile(db, scope, report.orphans, seen=read_at)
    keys = sorted(set(report.referencing_keys) & locked_keys)
    if keys:
        row_subjects = tuple(file_events.row_subject(settings.file_table, k) for k in keys)
        found = file_events.check_rows(db, settings, root, keys)
        scope = Scope("files", file_events.ROW_KINDS, row_subjects)
        changes += store.reconcile(db, scope, found, seen=read_at)
    return Outcome(changes, report.young)


def record_failure(settings: Settings, outbox_ids: Sequence[int], exc: BaseException) -> None:
    """Keep why a batch's check failed on its outbox rows; never hide the failure itself."""
    if not outbox_ids:
        return
    try:
        with _database(settings) as db:
            record_error(db, outbox_ids, redact(f"{type(exc).__name__}: {exc}").strip())
    except (GuardError, psycopg.Error) as err:  # the database is what failed: the retry will tell
        log.warning("could not record why outbox rows %s failed: %s", list(outbox_ids), type(err).__name__)


def _all_findings(findings: Sequence[Finding], counts: dict[str, int]) -> Sequence[Finding]:
    """Fail loudly if a capped result would be stored as if complete (nothing is lost)."""
    if len(findings) != sum(counts.values()):
        raise RuntimeError("a check returned capped findings where every finding is needed")
    return findings


def run_sweep(settings: Settings, name: str) -> Changes:
    """Run one whole check and reconcile its entire set of findings (and keep its history).

    A sweep is one history event; an integrity or files sweep also fills today's half of the daily
    snapshot when beat has not taken it yet (guard/history/daily.py).
    """
    started = time.monotonic()
    try:
        changes, result = _sweep(settings, name)
    except Exception as exc:
        events.record(
            settings, events.SWEEP, events.FAILED, {"check": name, "error": events.failure(exc, settings)}
        )
        raise
    seconds = round(time.monotonic() - started, 3)  # `guard serve`'s check duration
    details = {"check": name, "opened": changes.opened, "resolved": changes.resolved, "seconds": seconds}
    events.record(settings, events.SWEEP, events.OK, details)
    _keep_statistics(settings, changes.opened)
    daily.fill_from_sweep(settings, result)
    return changes


def _sweep(settings: Settings, name: str) -> tuple[Changes, CheckResult]:
    with _database(settings) as db:
        since = store.database_now(db)
    result = registry()[name](CheckContext(settings, limit=None))
    if result.error is not None:
        raise UnreachableError(result.error)
    findings = _all_findings(result.findings, result.counts)
    with _database(settings) as db, db.transaction():
        changes = store.reconcile(db, Scope(result.name), findings, since)
        if name == "integrity":
            prune(db, OUTBOX_KEEP_SECONDS)
    return changes, result


def run_maintenance(settings: Settings, action: str) -> Outcome:
    """Run backup, prune or drill from guard.backup and keep their findings true.

    A failure (an exception, a drill that did not pass, a prune that found a problem) opens
    or refreshes the action's finding and is returned as `failure`; success resolves it. A backup
    also reconciles `missing_at_backup`: the referenced files its snapshot could not include.
    """
    kind = MAINTENANCE[action]
    found: list[Finding] = []
    at_backup: list[Finding] | None = None
    try:
        from guard import backup  # built separately; imported only when a maintenance task runs

        runner: Callable[[Settings], Any] = getattr(backup, f"run_{action}")
        result = runner(settings)
        if action == "backup":
            at_backup = result.findings()
        elif not result.ok:
            found.append(_failure(kind, action, _why_not_ok(action, result)))
    except Exception as exc:  # any failure at all must surface as a finding, never vanish
        found.append(_failure(kind, action, f"{type(exc).__name__}: {exc}"))
    with _database(settings) as db, db.transaction():
        changes = store.reconcile(db, Scope("backup", (kind,), (action,)), found)
        if at_backup is not None:
            changes += store.reconcile(db, Scope("backup", (backup.MISSING_AT_BACKUP,)), at_backup)
    return Outcome(changes, failure=found[0].message if found else None)


def _failure(kind: str, action: str, why: str) -> Finding:
    message = redact(f"{action} failed: {why}".strip())
    return Finding("backup", kind, action, message[:2000])


def _why_not_ok(action: str, result: Any) -> str:
    if action == "drill":
        return str(result.detail)
    return "; ".join(result.problems) or "no backup passed verification"


# guard.findings' statistics after a burst: autovacuum analyses a table once a tenth of it changed,
# but looks only once a minute (autovacuum_naptime), and a table that grew from empty has none until
# then. Without them the planner believes a check's name alone picks few findings, and each row
# check's resolve read every open finding of its check (2,000 rows to resolve one). A worker that
# has opened this many findings, and a tenth of the table, since it last analysed it does so itself
# after its commit: a sample of at most 30,000 rows (default_statistics_target 100), milliseconds.
ANALYZE_AFTER = 500
ANALYZE_FINDINGS = "ANALYZE (SKIP_LOCKED) guard.findings"  # another worker's or autovacuum's will do
FINDINGS_ROWS = "SELECT reltuples FROM pg_class WHERE oid = 'guard.findings'::regclass"
_OPENED: dict[int, tuple[int, float]] = {}  # per process: opened since its last ANALYZE, rows then


def _keep_statistics(settings: Settings, opened: int) -> None:
    """Analyse guard.findings once this process has opened a burst of findings since it last did."""
    if not opened:
        return
    since, rows = _OPENED.get(os.getpid(), (0, 0.0))
    since += opened
    if since < max(ANALYZE_AFTER, rows / 10):
        _OPENED[os.getpid()] = (since, rows)
        return
    try:
        with _database(settings) as db:
            db.execute(ANALYZE_FINDINGS)
            row = db.fetch_one(FINDINGS_ROWS)
    except (GuardError, psycopg.Error) as exc:  # the findings are committed; statistics can wait
        log.warning("could not analyse guard.findings: %s", type(exc).__name__)
        row = None
    _OPENED[os.getpid()] = (0, float(row[0]) if row else rows)


_CONNECTIONS: dict[tuple[int, str], Database] = {}
_PLANS: dict[tuple[str, str], tuple[float, list[integrity.TablePlan]]] = {}
PLAN_TTL_S = 60.0


@contextmanager
def _database(settings: Settings) -> Iterator[Database]:
    """Lend this process's connection (a worker runs thousands of small tasks); drop it on error."""
    url = settings.require_database_url()
    key = (os.getpid(), url)
    db = _CONNECTIONS.pop(key, None) or Database(url, application_name="guard-sync")
    try:
        yield db
    except BaseException:
        db.close()
        raise
    if db.is_open:  # not db.connection: that property would reconnect a closed one
        _CONNECTIONS[key] = db


def _plans(db: Database, rules: Sequence[Rule], table: str) -> list[integrity.TablePlan]:
    """Return the table's validated rule plan, looked up in the catalog at most once a minute."""
    key = (db.url, table)
    cached = _PLANS.get(key)
    if cached is None or time.monotonic() - cached[0] > PLAN_TTL_S:
        cached = (time.monotonic(), integrity.plan_tables(db, rules))
        _PLANS[key] = cached
    return cached[1]
