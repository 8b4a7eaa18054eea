"""Row rules: every rule on a table in one set-based pass, for the whole table or just given keys."""

from __future__ import annotations

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


def describe(rule: Rule, value: object) -> str:
    if rule.type == "required":
        return f"{rule.column} is {'NULL' if value is None else 'blank'}"
    if rule.type == "format":
        return f"{rule.column} {value!r} does not match {rule.pattern}"
    if rule.type == "unique":
        return f"{rule.column} {value!r} is shared with another row"
    return f"{rule.column} {value!r} has no matching {rule.target}"


def build_query(
    plan: TablePlan, keys: list[str] | None, ordered: bool = False
) -> tuple[sql.Composed, dict[str, object]]:
    """Compose the table's single pass: one boolean flag per rule, rows with any flag set.

    `ordered` sorts the flagged rows by primary key, so a sweep keeps the same examples however
    the server splits the work (parallel workers return rows in no set order).
    """
    if keys is not None:
        return _keyed_query(plan, keys)
    params: dict[str, object] = {"blank": BLANK_CHARS}
    flags: dict[int, sql.Composable] = {}  # by the rule's place in plan.rules
    joins: list[sql.Composable] = []
    where: list[sql.Composable] = []
    judged = _judged_columns(plan)
    for n, rule in enumerate(plan.rules):
        if rule.column not in judged or rule.type == "references":
            flags[n], join = _rule_sql(plan, rule, n, params, False)
            where.append(flags[n])
            if join is not None:
                joins.append(join)
    for k, column in enumerate(judged):
        join, found, judged_flags = _verdicts_sql(plan, column, k, params)
        joins.append(join)
        where.insert(k, found)  # the cheap tests first: OR stops at the first true one
        flags.update(judged_flags)
    values = [sql.SQL("t.{}").format(sql.Identifier(r.column)) for r in plan.rules]
    pk = sql.Identifier(plan.pk.column)
    # WHERE takes the flags as they are (NULL is not true there): wrapped in coalesce, the planner
    # cannot estimate how few rows pass, and for a result it thinks is the whole table it picks no
    # parallel workers.
    query = sql.SQL(
        "SELECT t.{pk}::text, {flags}, {values} FROM {table} t {joins} WHERE {where}{order}"
    ).format(
        pk=pk,
        flags=sql.SQL(", ").join(
            sql.SQL("coalesce({}, false)").format(flags[n]) for n in range(len(plan.rules))
        ),
        values=sql.SQL(", ").join(values),
        table=sql.Identifier(plan.table),
        joins=sql.SQL(" ").join(joins),
        where=sql.SQL(" OR ").join(where),
        order=sql.SQL(" ORDER BY t.{}").format(pk) if ordered else sql.SQL(""),
    )
    return query, params


def _judged_columns(plan: TablePlan) -> list[str]:
    """The columns a unique rule groups the table by: their other rules are judged once per value."""
    return list(dict.fromkeys(r.column for r in plan.rules if r.type == "unique"))


def _verdicts_sql(
    plan: TablePlan, column: str, k: int, params: dict[str, object]
) -> tuple[sql.Composable, sql.Composable, dict[int, sql.Composable]]:
    """Group the table by one column and judge each distinct value once: blank, format, shared.

    The table is grouped by this column for its unique rule anyway, and whether a value is blank or
    matches a pattern depends on the value alone, so judging each distinct value in the grouping
    leaves the rows only a join against the few values that break a rule. Returns the join, the
    condition a row is flagged by any of them, and each rule's flag by its place in plan.rules.
    """
    alias = sql.Identifier(f"val{k}")
    col = sql.Identifier(column)
    u = sql.SQL("u.{}").format(col)
    required = column in plan.required_columns()
    blank = _blank(plan, column, "u")
    present = sql.SQL("NOT {}").format(blank) if required else sql.SQL("true")
    outputs: list[sql.Composable] = []
    breaks: list[sql.Composable] = []  # what flags a present value
    flags: dict[int, sql.Composable] = {}
    for n, rule in enumerate(plan.rules):
        if rule.column != column or rule.type == "references":
            continue
        name = sql.Identifier(f"r{n}")
        if rule.type == "required":
            verdict: sql.Composable = blank
            flags[n] = sql.SQL("(t.{c} IS NULL OR {a}.{r})").format(c=col, a=alias, r=name)
        else:
            if rule.type == "format":
                params[f"p{n}"] = rule.pattern
                test: sql.Composable = sql.SQL("{}::text !~ %({})s").format(u, sql.SQL(f"p{n}"))
            else:
                test = sql.SQL("count(*) > 1")
            breaks.append(test)
            verdict = sql.SQL("({} AND {})").format(present, test)
            flags[n] = sql.SQL("{}.{}").format(alias, name)
        outputs.append(sql.SQL("{} AS {}").format(verdict, name))
    # A blank value is flagged by the required rule and judged by nothing else: one btrim per value.
    broken = sql.SQL(" OR ").join(breaks) if breaks else sql.SQL("false")
    having = sql.SQL("CASE WHEN {} THEN true ELSE {} END").format(blank, broken) if required else broken
    join = sql.SQL(
        "LEFT JOIN (SELECT {u} AS v, {outputs} FROM {t} u WHERE {u} IS NOT NULL GROUP BY {u}"
        " HAVING {having}) {a} ON {a}.v = t.{c}"
    ).format(
        u=u, outputs=sql.SQL(", ").join(outputs), t=sql.Identifier(plan.table), having=having, a=alias, c=col
    )
    found = sql.SQL("{}.v IS NOT NULL").format(alias)
    if required:  # NULL joins nothing: the required rule flags it on the row
        found = sql.SQL("(t.{} IS NULL OR {})").format(col, found)
    return join, found, flags


def _keyed_query(plan: TablePlan, keys: list[str]) -> tuple[sql.Composed, dict[str, object]]:
    """The pass over given keys: every rule judged on the rows, uniqueness against the whole table."""
    params: dict[str, object] = {"blank": BLANK_CHARS, "keys": plan.pk.bind(keys)}
    flags: list[sql.Composable] = []
    joins: list[sql.Composable] = []
    for n, rule in enumerate(plan.rules):
        flag, join = _rule_sql(plan, rule, n, params, True)
        flags.append(sql.SQL("coalesce({}, false)").format(flag))
        if join is not None:
            joins.append(join)
    values = [sql.SQL("t.{}").format(sql.Identifier(r.column)) for r in plan.rules]
    where = sql.SQL("t.{pk} = ANY(%(keys)s) AND ({w})").format(
        pk=sql.Identifier(plan.pk.column), w=sql.SQL(" OR ").join(flags)
    )
    query = sql.SQL("SELECT t.{pk}::text, {flags}, {values} FROM {table} t {joins} WHERE {where}").format(
        pk=sql.Identifier(plan.pk.column),
        flags=sql.SQL(", ").join(flags),
        values=sql.SQL(", ").join(values),
        table=sql.Identifier(plan.table),
        joins=sql.SQL(" ").join(joins),
        where=where,
    )
    return query, params


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
