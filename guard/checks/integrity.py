"""Row rules: every rule on a table in one set-based pass, for the whole table or just given keys."""

from __future__ import annotations

import time
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor, as_completed

import psycopg

from guard.checks import CheckContext
from guard.checks.integrity_queries import BLANK_CHARS as BLANK_CHARS  # the names callers know it by
from guard.checks.integrity_queries import TablePlan as TablePlan
from guard.checks.integrity_queries import build_query as build_query
from guard.checks.integrity_queries import capped_query, judged_columns
from guard.config.rules import Rule
from guard.db.catalog import is_unique, primary_key, require_column, same_text_when_equal
from guard.db.database import Database
from guard.errors import ConfigError
from guard.findings.finding import CheckResult, Finding, FindingSink

CHECK = "integrity"
PARALLEL_TABLES = 4  # connections a whole-database sweep uses at most


def run(ctx: CheckContext) -> CheckResult:
    """Check every configured rule over every row: one pass per table, the tables side by side."""
    started = time.perf_counter()
    url = ctx.settings.require_database_url()
    with Database(url) as db:
        plans = plan_tables(db, ctx.settings.rules)
    sink = FindingSink(CHECK, ctx.limit, (r.id for r in ctx.settings.rules))
    bar = ctx.progress("tables", len(plans))
    # Each table's pass is one query the server spends its time on, so the passes run at once on
    # their own connections (and the server's cores); each rule belongs to one table, so per-table
    # sinks merged in plan order keep exactly the findings one sequential sweep would keep.
    with ThreadPoolExecutor(max_workers=max(1, min(len(plans), PARALLEL_TABLES))) as pool:
        futures = [pool.submit(_sweep_table, url, plan, ctx.limit) for plan in plans]
        for _ in as_completed(futures):
            bar.advance()
        bar.close()
        for future in futures:
            sink.merge(future.result())
    return sink.result(time.perf_counter() - started)


def _sweep_table(url: str, plan: TablePlan, limit: int | None) -> FindingSink:
    sink = FindingSink(CHECK, limit, (r.id for r in plan.rules))
    with Database(url) as db:
        # A sweep hashes whole tables; at the 4 MB default those hashes spill to disk. JIT compiles
        # the statement's expressions for each run (0.1-0.6 s measured) to save less than that here.
        db.execute("SET work_mem = '64MB'")
        db.execute("SET jit = off")
        if judged_columns(plan):
            # Parallel workers share a hash only when they build it together, which a grouping cannot:
            # each would group the whole table again (three groupings on three processes).
            db.execute("SET max_parallel_workers_per_gather = 0")
        check_table(db, plan, sink)
    return sink


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
    try:
        db.execute("SELECT '' ~ %s", (rule.pattern,))
    except psycopg.errors.InvalidRegularExpression as exc:
        detail = str(exc).strip().splitlines()[0]
        raise ConfigError(f"rule '{rule.id}': invalid regular expression: {detail}") from None


def check_table(db: Database, plan: TablePlan, sink: FindingSink, keys: list[str] | None = None) -> None:
    """Run one query over the table and turn each flagged row into findings."""
    if keys is None and sink.limit is not None:
        _count_and_sample(db, plan, sink, sink.limit)
        return
    query, params = build_query(plan, keys, ordered=keys is None)
    # given keys (a continuous batch, a few hundred at most): one round trip; the whole table: streamed
    # as the server sends it (not through a server-side cursor, so it may have parallel workers)
    for row in db.stream_rows(query, params) if keys is None else db.fetch_all(query, params):
        row_id, flags, values = row[0], row[1 : 1 + len(plan.rules)], row[1 + len(plan.rules) :]
        for rule, flagged, value in zip(plan.rules, flags, values, strict=True):
            if not flagged:
                continue
            if sink.keeps(rule.id):  # past the examples a flagged row is only counted: no message built
                sink.add(Finding(CHECK, rule.id, f"{plan.table}:{row_id}", describe(rule, value)))
            else:
                sink.tally(rule.id)


def _count_and_sample(db: Database, plan: TablePlan, sink: FindingSink, limit: int) -> None:
    """Count each rule's rows on the server and fetch only the first `limit` of each, by key.

    What the sweep streams row by row (tens of thousands of flagged rows on a big table) is here
    counted where it is found; only the rows that are some rule's example cross the wire.
    """
    query, params = capped_query(plan, limit)
    rows = db.fetch_all(query, params)
    width = len(plan.rules)
    kept = dict.fromkeys((r.id for r in plan.rules), 0)
    for row in rows:
        row_id, flags, values = row[0], row[1 : 1 + width], row[1 + width : 1 + 2 * width]
        for rule, flagged, value, rank in zip(plan.rules, flags, values, row[1 + 3 * width :], strict=True):
            if flagged and rank <= limit:
                sink.add(Finding(CHECK, rule.id, f"{plan.table}:{row_id}", describe(rule, value)))
                kept[rule.id] += 1
    totals = rows[0][1 + 2 * width : 1 + 3 * width] if rows else (0,) * width
    for rule, total in zip(plan.rules, totals, strict=True):
        sink.tally(rule.id, int(total) - kept[rule.id])


def describe(rule: Rule, value: object) -> str:
    if rule.type == "required":
        return f"{rule.column} is {'NULL' if value is None else 'blank'}"
    if rule.type == "format":
        return f"{rule.column} {value!r} does not match {rule.pattern}"
    if rule.type == "unique":
        return f"{rule.column} {value!r} is shared with another row"
    return f"{rule.column} {value!r} has no matching {rule.target}"
