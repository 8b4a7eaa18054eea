"""Row rules: every rule on a table in one set-based pass, for the whole table or just given keys."""

from __future__ import annotations

import functools
import time
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass

import psycopg
from psycopg import sql

from guard.checks import CheckContext
from guard.config.rules import Rule
from guard.db.catalog import PrimaryKey, is_unique, primary_key, require_column
from guard.db.database import Database
from guard.errors import ConfigError
from guard.findings.finding import CheckResult, Finding, FindingSink

CHECK = "integrity"
BLANK_CHARS = " \t\r\n\f\v"
PARALLEL_TABLES = 4  # connections a whole-database sweep uses at most


@dataclass(frozen=True)
class TablePlan:
    """The rules of one table, validated against the catalog."""

    table: str
    pk: PrimaryKey
    rules: tuple[Rule, ...]
    text_columns: frozenset[str]
    unique_targets: frozenset[str] = frozenset()  # ids of references rules whose target is unique

    def required_columns(self) -> frozenset[str]:
        return frozenset(r.column for r in self.rules if r.type == "required")


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
        # A sweep hashes whole tables; at the 4 MB default those hashes spill to disk.
        db.execute("SET work_mem = '64MB'")
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
        plans.append(
            TablePlan(table, pk, tuple(table_rules), frozenset(text_columns), frozenset(unique_targets))
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
    query, params = build_query(plan, keys)
    # given keys (a continuous batch, a few hundred at most): one round trip, not a server-side cursor
    for row in db.stream(query, params) if keys is None else db.fetch_all(query, params):
        row_id, flags, values = row[0], row[1 : 1 + len(plan.rules)], row[1 + len(plan.rules) :]
        for rule, flagged, value in zip(plan.rules, flags, values, strict=True):
            if not flagged:
                continue
            if sink.keeps(rule.id):  # past the examples a flagged row is only counted: no message built
                sink.add(Finding(CHECK, rule.id, f"{plan.table}:{row_id}", describe(rule, value)))
            else:
                sink.tally(rule.id)


def describe(rule: Rule, value: object) -> str:
    if rule.type == "required":
        return f"{rule.column} is {'NULL' if value is None else 'blank'}"
    if rule.type == "format":
        return f"{rule.column} {value!r} does not match {rule.pattern}"
    if rule.type == "unique":
        return f"{rule.column} {value!r} is shared with another row"
    return f"{rule.column} {value!r} has no matching {rule.target}"


def build_query(plan: TablePlan, keys: list[str] | None) -> tuple[str, dict[str, object]]:
    """Return the table's single pass (one boolean flag per rule, rows with any flag set), its parameters."""
    query, params = _composed(plan, keys is not None)
    return query, {**params} if keys is None else {**params, "keys": plan.pk.bind(keys)}


# A worker runs this query hundreds of times a second for one plan: composing it each time (psycopg's
# sql objects, then their bytes) was the largest part of a keyed check's Python time, so it is composed
# once per plan and kept as text. Only identifiers and placeholders are in it; values stay parameters.
@functools.lru_cache(maxsize=256)
def _composed(plan: TablePlan, by_keys: bool) -> tuple[str, dict[str, object]]:
    params: dict[str, object] = {"blank": BLANK_CHARS}
    flags: list[sql.Composable] = []
    joins: list[sql.Composable] = []
    for n, rule in enumerate(plan.rules):
        flag, join = _rule_sql(plan, rule, n, params, by_keys)
        flags.append(sql.SQL("coalesce({}, false)").format(flag))
        if join is not None:
            joins.append(join)
    values = [sql.SQL("t.{}").format(sql.Identifier(r.column)) for r in plan.rules]
    where = sql.SQL(" OR ").join(flags)
    if by_keys:
        where = sql.SQL("t.{pk} = ANY(%(keys)s) AND ({w})").format(pk=sql.Identifier(plan.pk.column), w=where)
    query = sql.SQL("SELECT t.{pk}::text, {flags}, {values} FROM {table} t {joins} WHERE {where}").format(
        pk=sql.Identifier(plan.pk.column),
        flags=sql.SQL(", ").join(flags),
        values=sql.SQL(", ").join(values),
        table=sql.Identifier(plan.table),
        joins=sql.SQL(" ").join(joins),
        where=where,
    )
    return query.as_string(), params


def _blank(plan: TablePlan, column: str, alias: str = "t") -> sql.Composable:
    col = sql.SQL("{}.{}").format(sql.Identifier(alias), sql.Identifier(column))
    if column in plan.text_columns:
        return sql.SQL("({c} IS NULL OR btrim({c}::text, %(blank)s) = '')").format(c=col)
    return sql.SQL("({c} IS NULL)").format(c=col)


def _present(plan: TablePlan, column: str, alias: str = "t") -> sql.Composable:
    """A value other rules may judge: not NULL, and not blank when a required rule covers it."""
    if column in plan.required_columns():
        return sql.SQL("NOT {}").format(_blank(plan, column, alias))
    return sql.SQL("{}.{} IS NOT NULL").format(sql.Identifier(alias), sql.Identifier(column))


def _rule_sql(
    plan: TablePlan, rule: Rule, n: int, params: dict[str, object], by_keys: bool
) -> tuple[sql.Composable, sql.Composable | None]:
    col = sql.SQL("t.{}").format(sql.Identifier(rule.column))
    if rule.type == "required":
        return _blank(plan, rule.column), None
    if rule.type == "format":
        params[f"p{n}"] = rule.pattern
        return sql.SQL("({p} AND {c}::text !~ %({n})s)").format(
            p=_present(plan, rule.column), c=col, n=sql.SQL(f"p{n}")
        ), None
    if rule.type == "unique":
        return _unique_sql(plan, rule, n, by_keys)
    if by_keys:  # a few rows: one index probe each beats reading the whole target
        target = sql.SQL("NOT EXISTS (SELECT 1 FROM {tt} r WHERE r.{tc} = {c})").format(
            tt=sql.Identifier(rule.target_table), tc=sql.Identifier(rule.target_column), c=col
        )
        return sql.SQL("({} IS NOT NULL AND {})").format(col, target), None
    return _references_sql(plan, rule, n)


def _references_sql(plan: TablePlan, rule: Rule, n: int) -> tuple[sql.Composable, sql.Composable]:
    """Left-join the target's values: inside an OR, NOT EXISTS would probe the target once per row."""
    alias = sql.Identifier(f"ref{n}")
    column = sql.Identifier(rule.target_column)
    source: sql.Composable = sql.Identifier(rule.target_table)
    if rule.id not in plan.unique_targets:  # join distinct values so no row is repeated
        source = sql.SQL("(SELECT DISTINCT {c} FROM {t})").format(c=column, t=source)
    join = sql.SQL("LEFT JOIN {s} {a} ON {a}.{c} = t.{col}").format(
        s=source, a=alias, c=column, col=sql.Identifier(rule.column)
    )
    flag = sql.SQL("(t.{col} IS NOT NULL AND {a}.{c} IS NULL)").format(
        col=sql.Identifier(rule.column), a=alias, c=column
    )
    return flag, join


def _unique_sql(plan: TablePlan, rule: Rule, n: int, by_keys: bool) -> tuple[sql.Composable, sql.Composable]:
    """Join the values held by more than one row; with keys, only the values those rows hold."""
    alias = sql.Identifier(f"dup{n}")
    column = sql.Identifier(rule.column)
    where = _present(plan, rule.column, "u")
    if by_keys:
        # Judge presence on the given rows (a few) rather than on every row of the table: a row equal
        # to a present value is present, and the unindexed scan no longer trims each value (4x faster).
        where = sql.SQL(
            "u.{c} IN (SELECT k.{c} FROM {t} k WHERE k.{pk} = ANY(%(keys)s) AND {present})"
        ).format(
            c=column,
            t=sql.Identifier(plan.table),
            pk=sql.Identifier(plan.pk.column),
            present=_present(plan, rule.column, "k"),
        )
    join = sql.SQL(
        "LEFT JOIN (SELECT u.{c} AS v FROM {t} u WHERE {where}"
        " GROUP BY u.{c} HAVING count(*) > 1) {a} ON {a}.v = t.{c}"
    ).format(c=column, t=sql.Identifier(plan.table), where=where, a=alias)
    return sql.SQL("({}.v IS NOT NULL)").format(alias), join
