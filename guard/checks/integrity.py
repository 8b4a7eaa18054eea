"""Row rules: every rule on a table in one set-based pass, for the whole table or just given keys."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor, as_completed, wait
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, TypeVar

import psycopg
from psycopg import sql

from guard.checks import CheckContext
from guard.checks.integrity_queries import BLANK_CHARS as BLANK_CHARS  # the names callers know it by
from guard.checks.integrity_queries import (
    BLANK_PARAMS,
    capped_query,
    groups,
    shared_groups_query,
    shared_rows_query,
    split_plan,
)
from guard.checks.integrity_queries import TablePlan as TablePlan
from guard.checks.integrity_queries import build_query as build_query
from guard.config.rules import Rule
from guard.db.catalog import is_unique, primary_key, require_column, same_text_when_equal
from guard.db.database import Database
from guard.errors import ConfigError
from guard.findings.finding import CheckResult, Finding, FindingSink

CHECK = "integrity"
PARALLEL_TABLES = 4  # connections a whole-database sweep uses at most


def run(ctx: CheckContext) -> CheckResult:
    """Check every configured rule over every row: a pass per table (two for a grouped one), at once."""
    started = time.perf_counter()
    url = ctx.settings.require_database_url()
    with Database(url) as db:
        plans = plan_tables(db, ctx.settings.rules)
    splits = [split_plan(plan) for plan in plans]
    shared = sum(len(split) for split in splits) > 1
    bar = ctx.progress("tables", len(plans))
    # Each pass is one query the server spends its time on, so the tables run at once on their own
    # connections (and the server's cores), a split table's two statements side by side on one
    # snapshot; each rule belongs to one statement, and a split table's findings are put back in key
    # order, so the result is what one sequential sweep would keep.
    siblings = _Siblings()
    with ThreadPoolExecutor(max_workers=max(1, min(len(plans), PARALLEL_TABLES))) as pool:
        futures = [pool.submit(_sweep_table, url, split, ctx.limit, shared, siblings) for split in splits]
        try:
            passes = siblings.gather(futures, bar.advance)
        finally:
            bar.close()
    sink = FindingSink(CHECK, ctx.limit, (r.id for r in ctx.settings.rules))
    for plan, done in zip(plans, passes, strict=True):
        _collect(sink, done, plan)
    return sink.result(time.perf_counter() - started)


@dataclass(frozen=True)
class _Pass:
    """One statement's findings: those kept, each with its row's place (its key, to merge), and counts."""

    kept: list[tuple[Any, Finding]]
    uncounted: dict[str, int]  # findings past the examples, by rule: counted, never built


def _collect(sink: FindingSink, passes: list[_Pass], plan: TablePlan | None = None) -> None:
    """Add one table's findings row by row, each row's in its rules' order, as one pass returns them."""
    kept = [entry for done in passes for entry in done.kept]
    if len(passes) > 1 and plan is not None:
        place = {rule.id: n for n, rule in enumerate(plan.rules)}
        kept.sort(key=lambda entry: (entry[0], place[entry[1].kind]))
    for _, finding in kept:
        sink.add(finding)
    for done in passes:
        for rule_id, n in done.uncounted.items():
            sink.tally(rule_id, n)


# A sweep hashes whole tables; at the 4 MB default those hashes spill to disk. JIT compiles the
# statement's expressions for each run (0.1-0.6 s measured) to save less than that here.
SWEEP_SESSION = "SELECT set_config('work_mem', '64MB', false), set_config('jit', 'off', false)"
# Parallel workers share a hash only when they build it together, which a grouping cannot (each
# would group the whole table again: three groupings on three processes); and passes that run side
# by side already take the cores a pass's workers would (measured: a parallel ad_images pass left
# the grouping, the pass everything waits for, half of one of two cores).
SERIAL = ", set_config('max_parallel_workers_per_gather', '0', false)"


# One snapshot for a split table's two statements: the second takes the first's, so a row that
# changes between them (NULL to a shared value: required, then unique) is judged as it was at one moment.
ONE_SNAPSHOT = "BEGIN ISOLATION LEVEL REPEATABLE READ, READ ONLY"
EXPORT_SNAPSHOT = "SELECT pg_export_snapshot()"


T = TypeVar("T")


class _Stopped(Exception):
    """A pass that was cancelled, or never started, because another pass of its sweep failed."""


class _Siblings:
    """The connections of one sweep's passes, so that the first pass to fail stops the others.

    A pass that failed makes the sweep fail, and the others' statements (seconds to minutes on a
    large table) would only delay saying so. A cancel that lands between two statements stops
    nothing, so it is sent again every STOP_EVERY_S until the passes have ended; a pass that has not
    started yet does not start (before it connects).
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._open: list[Database] = []
        self.stopping = False  # set before the first cancel: a QueryCanceled after it is ours

    @contextmanager
    def member(self, db: Database) -> Iterator[Database]:
        with self._lock:
            if self.stopping:
                raise _Stopped("another pass failed first")
            self._open.append(db)
        try:
            yield db
        finally:
            with self._lock:
                self._open.remove(db)

    def cancel_all(self) -> None:
        with self._lock:
            self.stopping = True
            open_now = list(self._open)
        for db in open_now:
            db.cancel()

    def stop_all(self, futures: Iterable[Future[Any]]) -> None:
        """Cancel every pass's statement, again and again, until these passes have all ended."""
        pending = [f for f in futures if not f.done()]
        self.cancel_all()
        while pending:
            _, undone = wait(pending, timeout=STOP_EVERY_S)
            pending = list(undone)
            if pending:
                self.cancel_all()

    def gather(self, futures: list[Future[T]], advance: Callable[[], object] = lambda: None) -> list[T]:
        """Each pass's result, in order; at the first failure stop the others and raise it (a pass
        stopped only because another failed is never the failure told)."""
        failed: BaseException | None = None
        for future in as_completed(futures):
            advance()
            exc = future.exception()
            if exc is not None and not isinstance(exc, _Stopped):
                failed = failed or exc  # the first in time; the others' work is for nothing now
                self.stop_all(futures)
        errors = [e for e in (f.exception() for f in futures) if e is not None]
        if errors:
            raise failed or errors[0]
        return [f.result() for f in futures]

    @contextmanager
    def judged(self) -> Iterator[None]:
        """Turn a cancel this sweep sent into _Stopped; a statement_timeout or an admin's cancel
        that came before any failure stays the failure it is."""
        try:
            yield
        except psycopg.errors.QueryCanceled as exc:
            if self.stopping:
                raise _Stopped("another pass failed first") from exc
            raise


STOP_EVERY_S = 0.5


def _judged_sweep(team: _Siblings, db: Database, plan: TablePlan, limit: int | None) -> _Pass:
    with team.judged():
        return _sweep(db, plan, limit, keyed=True)


def _sweep_table(
    url: str, split: list[TablePlan], limit: int | None, shared: bool, siblings: _Siblings | None = None
) -> list[_Pass]:
    """Sweep one table: its one pass, or a split table's two statements at once on one snapshot.

    `shared`: other statements run at the same time (no parallel workers then). `siblings`: the
    sweep's other passes, stopped when this one fails (and this one by theirs).
    """
    team = siblings or _Siblings()
    if len(split) == 1:
        with Database(url) as db, team.member(db), team.judged():
            db.execute(SWEEP_SESSION + (SERIAL if shared or groups(split[0]) else ""))
            return [_sweep(db, split[0], limit, keyed=False)]
    with (
        Database(url) as first,
        Database(url) as second,
        team.member(first),
        team.member(second),
        team.judged(),
        ThreadPoolExecutor(max_workers=2) as aside,
    ):
        for db in (first, second):
            db.execute(SWEEP_SESSION + SERIAL)
            db.execute(ONE_SNAPSHOT)
        row = first.fetch_one(EXPORT_SNAPSHOT)
        assert row is not None
        # a utility statement takes no parameters: the server's own snapshot name, quoted as a literal
        second.execute(sql.SQL("SET TRANSACTION SNAPSHOT {}").format(sql.Literal(row[0])))
        # side by side (the exported snapshot must outlive the import, done above); either failing
        # stops the other, and the sweep's other tables
        pairs = zip((first, second), split, strict=True)
        halves = [aside.submit(_judged_sweep, team, db, plan, limit) for db, plan in pairs]
        mine, theirs = team.gather(halves)
        for db in (first, second):
            db.execute("COMMIT")
    return [mine, theirs]


def check_keys(
    db: Database,
    rules: Sequence[Rule],
    table: str,
    keys: Sequence[str],
    limit: int | None = None,
    plans: Sequence[TablePlan] | None = None,
) -> CheckResult:
    """Check the rules of one table for just these primary keys (what the continuous workers call)."""
    started = time.perf_counter()
    table_rules = [r for r in rules if r.table == table]
    sink = FindingSink(CHECK, limit, (r.id for r in table_rules))
    for plan in plan_tables(db, table_rules) if plans is None else plans:
        check_table(db, plan, sink, keys=list(keys))
    return sink.result(time.perf_counter() - started)


def plan_tables(db: Database, rules: Iterable[Rule]) -> list[TablePlan]:
    """Group rules by table and fail on the first rule that names what is not there."""
    by_table: dict[str, list[Rule]] = {}
    for rule in rules:
        by_table.setdefault(rule.table, []).append(rule)
    plans = []
    for table, table_rules in by_table.items():
        text_columns = set()
        unique_targets = set()
        for rule in table_rules:
            owner = f"rule '{rule.id}'"
            if require_column(db, rule.table, rule.column, owner=owner) == "S":
                text_columns.add(rule.column)
            if rule.type == "references":
                require_column(db, rule.target_table, rule.target_column, owner=owner)
                if is_unique(db, rule.target_table, rule.target_column):
                    unique_targets.add(rule.id)
            if rule.type == "format":
                validate_pattern(db, rule)
        pk = primary_key(db, table, owner=f"rule '{table_rules[0].id}'")
        grouped = {r.column for r in table_rules if r.type == "unique"}
        same_text = frozenset(c for c in grouped if same_text_when_equal(db, table, c))
        plans.append(
            TablePlan(
                table, pk, tuple(table_rules), frozenset(text_columns), frozenset(unique_targets), same_text
            )
        )
    return plans


def validate_pattern(db: Database, rule: Rule) -> None:
    """Fail with the rule's name when PostgreSQL cannot compile its pattern.

    A read, not an execute: in the worker's pipelined transaction an execute's error only arrives
    with a later statement's answer, as a raw database error.
    """
    try:
        db.fetch_one("SELECT '' ~ %s", (rule.pattern,))
    except psycopg.errors.InvalidRegularExpression as exc:
        detail = str(exc).strip().splitlines()[0]
        raise ConfigError(f"rule '{rule.id}': invalid regular expression: {detail}") from None


def check_table(db: Database, plan: TablePlan, sink: FindingSink, keys: list[str] | None = None) -> None:
    """Run one query over the table (or just these keys) and turn each flagged row into findings."""
    if keys is None:
        _collect(sink, [_sweep(db, plan, sink.limit, keyed=False)])
        return
    # given keys (a continuous batch, a few hundred at most): one round trip
    query, params = build_query(plan, keys)
    for row in db.fetch_all(query, params):
        row_id, flags, values = row[0], row[1 : 1 + len(plan.rules)], row[1 + len(plan.rules) :]
        for rule, flagged, value in zip(plan.rules, flags, values, strict=True):
            if not flagged:
                continue
            if sink.keeps(rule.id):  # past the examples a flagged row is only counted: no message built
                sink.add(Finding(CHECK, rule.id, f"{plan.table}:{row_id}", describe(rule, value)))
            else:
                sink.tally(rule.id)


def _sweep(db: Database, plan: TablePlan, limit: int | None, keyed: bool) -> _Pass:
    """Run the whole-table pass; `keyed` orders the findings by the rows' keys (to merge passes)."""
    if limit is not None and not plan.per_value:
        return _sample_shared(db, plan, limit)
    if limit is not None:
        return _count_and_sample(db, plan, limit, keyed)
    query, params = build_query(plan, None, ordered=True, with_key=keyed)
    width = len(plan.rules)
    kept: list[tuple[Any, Finding]] = []
    # streamed as the server sends it (not through a server-side cursor, so it may have parallel workers)
    for seq, row in enumerate(db.stream_rows(query, params)):
        order = row[-1] if keyed else seq
        for rule, flagged, value in zip(
            plan.rules, row[1 : 1 + width], row[1 + width : 1 + 2 * width], strict=True
        ):
            if flagged:
                kept.append((order, Finding(CHECK, rule.id, f"{plan.table}:{row[0]}", describe(rule, value))))
    return _Pass(kept, {})


def _count_and_sample(db: Database, plan: TablePlan, limit: int, keyed: bool) -> _Pass:
    """Count each rule's rows on the server and fetch only the first `limit` of each, by key.

    What the sweep streams row by row (tens of thousands of flagged rows on a big table) is here
    counted where it is found; only the rows that are some rule's example cross the wire.
    """
    query, params = capped_query(plan, limit, with_key=keyed)
    rows = db.fetch_all(query, params)
    width = len(plan.rules)
    kept: list[tuple[Any, Finding]] = []
    built = dict.fromkeys((r.id for r in plan.rules), 0)
    for seq, row in enumerate(rows):
        row_id, flags, values = row[0], row[1 : 1 + width], row[1 + width : 1 + 2 * width]
        ranks = row[1 + 3 * width : 1 + 4 * width]
        for rule, flagged, value, rank in zip(plan.rules, flags, values, ranks, strict=True):
            if flagged and rank <= limit:
                finding = Finding(CHECK, rule.id, f"{plan.table}:{row_id}", describe(rule, value))
                kept.append((row[-1] if keyed else seq, finding))
                built[rule.id] += 1
    totals = rows[0][1 + 2 * width : 1 + 3 * width] if rows else (0,) * width
    return _Pass(kept, {r.id: int(total) - built[r.id] for r, total in zip(plan.rules, totals, strict=True)})


def _sample_shared(db: Database, plan: TablePlan, limit: int) -> _Pass:
    """Count a split table's shared values in their grouping, and read only the first rows by key.

    The grouping alone is half the work of joining every row against its result: the examples are
    then looked up among the rows holding the first values, by the key's index up to the last of
    them (see shared_groups_query).
    """
    kept: list[tuple[Any, Finding]] = []
    uncounted: dict[str, int] = {}
    for rule in plan.rules:  # a split table's grouped part holds unique rules only
        groups = db.fetch_all(*shared_groups_query(plan, rule, limit))
        total, values = (int(groups[0][1]), int(groups[0][2])) if groups else (0, 0)
        rows = []
        if limit and groups:
            params = {**BLANK_PARAMS, "limit": limit, "firsts": [g[0] for g in groups]}
            bounded = values >= limit  # fewer values than examples: their rows may lie anywhere
            if bounded:
                params["bound"] = groups[limit - 1][0]
            rows = db.fetch_all(shared_rows_query(plan, rule, bounded), params)
        for row_id, value, key in rows:
            kept.append((key, Finding(CHECK, rule.id, f"{plan.table}:{row_id}", describe(rule, value))))
        uncounted[rule.id] = total - len(rows)
    return _Pass(kept, uncounted)


def describe(rule: Rule, value: object) -> str:
    if rule.type == "required":
        return f"{rule.column} is {'NULL' if value is None else 'blank'}"
    if rule.type == "format":
        return f"{rule.column} {value!r} does not match {rule.pattern}"
    if rule.type == "unique":
        return f"{rule.column} {value!r} is shared with another row"
    return f"{rule.column} {value!r} has no matching {rule.target}"
