"""The integrity check's statements, composed from the rules' definitions (never from data)."""

from __future__ import annotations

import functools
from dataclasses import dataclass, replace

from psycopg import sql

from guard.config.rules import Rule
from guard.db.catalog import PrimaryKey

BLANK_CHARS = " \t\r\n\f\v"
# Every blank value sorts before this one byte by byte ('' included): a value that does not is not
# blank, decided by one memcmp where btrim would copy it (most values, so most of the blank tests).
BLANK_END = chr(max(map(ord, BLANK_CHARS)) + 1)
BLANK_PARAMS = {"blank": BLANK_CHARS, "blank_end": BLANK_END}


@dataclass(frozen=True)
class TablePlan:
    """The rules of one table, validated against the catalog."""

    table: str
    pk: PrimaryKey
    rules: tuple[Rule, ...]
    text_columns: frozenset[str]
    unique_targets: frozenset[str] = frozenset()  # ids of references rules whose target is unique
    # columns whose equal values print the same text: only there is a pattern judged once per value
    same_text_columns: frozenset[str] = frozenset()
    # columns a required rule of the table covers though this plan does not judge it (see split_plan)
    also_required: frozenset[str] = frozenset()
    # whether a unique rule's grouping also judges its column's other rules, once per distinct value
    per_value: bool = True

    def required_columns(self) -> frozenset[str]:
        return frozenset(r.column for r in self.rules if r.type == "required") | self.also_required


def split_plan(plan: TablePlan) -> list[TablePlan]:
    """Split a table's rules into two statements that can run at once, on their own connections.

    A unique rule groups the whole table, on one process; the table's other rules (a pattern, a
    blank value) need no grouping, so a second statement judges them row by row meanwhile, on
    another core. Both know every required column of the table, so the grouping leaves blank values
    out and the patterns skip them, as one pass would. A table whose keys Python cannot order as
    PostgreSQL does is not split: the two statements' findings are merged by key.
    """
    grouped = tuple(r for r in plan.rules if r.type == "unique")
    rest = tuple(r for r in plan.rules if r.type != "unique")
    if not grouped or not rest or not plan.pk.sorts_in_python:
        return [plan]
    required = plan.required_columns()
    return [
        replace(plan, rules=grouped, also_required=required, per_value=False),
        replace(plan, rules=rest, also_required=required),
    ]


def groups(plan: TablePlan) -> bool:
    """Tell whether the plan's whole-table pass groups the table (a unique rule)."""
    return any(r.type == "unique" for r in plan.rules)


def build_query(
    plan: TablePlan, keys: list[str] | None, ordered: bool = False, with_key: bool = False
) -> tuple[str | sql.Composed, dict[str, object]]:
    """Compose the table's single pass: one boolean flag per rule, rows with any flag set.

    `ordered` sorts the flagged rows by primary key, so a sweep keeps the same examples however
    the server splits the work (parallel workers return rows in no set order). `with_key` adds the
    key itself (not its text) as the last column, to merge the rows of a split plan's statements.
    """
    if keys is not None:
        return _keyed_query(plan, keys)
    flags, source, params = _table_pass(plan)
    values = [sql.SQL("t.{}").format(sql.Identifier(r.column)) for r in plan.rules]
    pk = sql.Identifier(plan.pk.column)
    query = sql.SQL("SELECT t.{pk}::text, {flags}, {values}{key} {source}{order}").format(
        pk=pk,
        flags=sql.SQL(", ").join(flags),
        values=sql.SQL(", ").join(values),
        key=sql.SQL(", t.{}").format(pk) if with_key else sql.SQL(""),
        source=source,
        order=sql.SQL(" ORDER BY t.{}").format(pk) if ordered else sql.SQL(""),
    )
    return query, params


def capped_query(
    plan: TablePlan, limit: int, with_key: bool = False
) -> tuple[sql.Composed, dict[str, object]]:
    """Compose the pass that counts every rule's rows but returns only each rule's first `limit`.

    Each returned row carries the flags and values, each rule's total, and its running count of
    that rule in key order (a rule's example is a flagged row whose count is at most `limit`), and
    with `with_key` the key itself last. The first flagged row always comes, so the totals do even
    when no example is wanted.
    """
    flags, source, params = _table_pass(plan)
    params["limit"] = limit
    width = range(len(plan.rules))
    inner = sql.SQL("SELECT t.{pk} AS k, t.{pk}::text AS id, {flags}, {values} {source}").format(
        pk=sql.Identifier(plan.pk.column),
        flags=sql.SQL(", ").join(sql.SQL("{} AS {}").format(f, _name("f", n)) for n, f in enumerate(flags)),
        values=sql.SQL(", ").join(
            sql.SQL("t.{} AS {}").format(sql.Identifier(r.column), _name("v", n))
            for n, r in enumerate(plan.rules)
        ),
        source=source,
    )
    totals = [
        sql.SQL("count(*) FILTER (WHERE {}) OVER () AS {}").format(_name("f", n), _name("n", n))
        for n in width
    ]
    ranks = [
        sql.SQL("count(*) FILTER (WHERE {}) OVER (ORDER BY k ROWS UNBOUNDED PRECEDING) AS {}").format(
            _name("f", n), _name("r", n)
        )
        for n in width
    ]
    wanted = [sql.SQL("({} AND {} <= %(limit)s)").format(_name("f", n), _name("r", n)) for n in width]
    columns = [_name(prefix, n) for prefix in ("f", "v", "n", "r") for n in width]
    if with_key:
        columns.append(sql.Identifier("k"))
    query = sql.SQL(
        "SELECT id, {columns} FROM (SELECT q.*, row_number() OVER (ORDER BY k) AS seq, {totals}, {ranks}"
        " FROM ({inner}) q) w WHERE seq = 1 OR {wanted} ORDER BY k"
    ).format(
        columns=sql.SQL(", ").join(columns),
        totals=sql.SQL(", ").join(totals),
        ranks=sql.SQL(", ").join(ranks),
        inner=inner,
        wanted=sql.SQL(" OR ").join(wanted),
    )
    return query, params


def _name(prefix: str, n: int) -> sql.Identifier:
    return sql.Identifier(f"{prefix}{n}")


def _table_pass(plan: TablePlan) -> tuple[list[sql.Composable], sql.Composable, dict[str, object]]:
    """Return each rule's flag (true or false), and the FROM ... WHERE of the rows any flag is set on."""
    params: dict[str, object] = dict(BLANK_PARAMS)
    flags: dict[int, sql.Composable] = {}  # by the rule's place in plan.rules
    joins: list[sql.Composable] = []
    where: list[sql.Composable] = []
    judged = judged_columns(plan) if plan.per_value else []
    for n, rule in enumerate(plan.rules):
        if rule.column not in judged or not _judged_per_value(plan, rule):
            flags[n], join = _rule_sql(plan, rule, n, params, False)
            where.append(flags[n])
            if join is not None:
                joins.append(join)
    for k, column in enumerate(judged):
        join, found, judged_flags = _verdicts_sql(plan, column, k, params)
        joins.append(join)
        where.insert(k, found)  # the cheap tests first: OR stops at the first true one
        flags.update(judged_flags)
    # WHERE takes the flags as they are (NULL is not true there): wrapped in coalesce, the planner
    # cannot estimate how few rows pass, and for a result it thinks is the whole table it picks no
    # parallel workers.
    source = sql.SQL("FROM {table} t {joins} WHERE {where}").format(
        table=sql.Identifier(plan.table), joins=sql.SQL(" ").join(joins), where=sql.SQL(" OR ").join(where)
    )
    return [sql.SQL("coalesce({}, false)").format(flags[n]) for n in range(len(plan.rules))], source, params


def _judged_per_value(plan: TablePlan, rule: Rule) -> bool:
    """Whether a rule on a grouped column is judged once per distinct value, in the grouping.

    A pattern is matched against the value's text, and equal values may be spelled apart (citext's
    'a' = 'A', numeric's 1.0 = 1.00): there it is judged on each row, as the keyed pass does.
    """
    if rule.type == "references":
        return False
    return rule.type != "format" or rule.column in plan.same_text_columns


def judged_columns(plan: TablePlan) -> list[str]:
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
        if rule.column != column or not _judged_per_value(plan, rule):
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


def _keyed_query(plan: TablePlan, keys: list[str]) -> tuple[str, dict[str, object]]:
    """The pass over given keys: every rule judged on the rows, uniqueness against the whole table."""
    query, params = _keyed_text(plan)
    return query, {**params, "keys": plan.pk.bind(keys)}


# A worker runs the keyed pass hundreds of times a second for one plan: composing it each time
# (psycopg's sql objects, then their bytes) was the largest part of a keyed check's Python time, so it
# is composed once per plan and kept as text. Only identifiers and placeholders are in it; values,
# the keys included, stay parameters.
@functools.lru_cache(maxsize=256)
def _keyed_text(plan: TablePlan) -> tuple[str, dict[str, object]]:
    params: dict[str, object] = dict(BLANK_PARAMS)
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
    return query.as_string(), params


def _blank(plan: TablePlan, column: str, alias: str = "t") -> sql.Composable:
    col = sql.SQL("{}.{}").format(sql.Identifier(alias), sql.Identifier(column))
    if column in plan.text_columns:
        return sql.SQL(
            "({c} IS NULL OR ({c}::text COLLATE \"C\" < %(blank_end)s AND btrim({c}::text, %(blank)s) = ''))"
        ).format(c=col)
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
    if by_keys:
        return sql.SQL("({}.v IS NOT NULL)").format(alias), join
    # the rows the grouping counted, exactly: what shared_rows_query returns the first of
    return sql.SQL("({}.v IS NOT NULL AND {})").format(alias, _present(plan, rule.column)), join


def shared_groups_query(plan: TablePlan, rule: Rule, limit: int) -> tuple[sql.Composed, dict[str, object]]:
    """Compose a unique rule's grouping alone: the values more than one present row holds.

    Returns the first `limit` such values (at least one, when there is any) by their lowest key,
    each as that key, with the rows and values in all. The first `limit` flagged rows by key are
    all in these values and none has a key past the last of them (when there are `limit`): each
    value's lowest key is a flagged row.
    """
    params: dict[str, object] = {**BLANK_PARAMS, "limit": max(limit, 1)}
    query = sql.SQL(
        "SELECT m, sum(n) OVER (), count(*) OVER () FROM (SELECT min(u.{pk}) AS m, count(*) AS n"
        " FROM {t} u WHERE {present} GROUP BY u.{c} HAVING count(*) > 1) d ORDER BY m LIMIT %(limit)s"
    ).format(
        pk=sql.Identifier(plan.pk.column),
        t=sql.Identifier(plan.table),
        present=_present(plan, rule.column, "u"),
        c=sql.Identifier(rule.column),
    )
    return query, params


def shared_rows_query(plan: TablePlan, rule: Rule, bounded: bool) -> sql.Composed:
    """Compose the look-up of the first `%(limit)s` present rows, by key, that hold the same value as
    the rows keyed `%(firsts)s`; `bounded`: none past the key `%(bound)s` (an index range, not the table)."""
    return sql.SQL(
        "SELECT t.{pk}::text, t.{c}, t.{pk} FROM {t} t WHERE {present}"
        " AND t.{c} IN (SELECT f.{c} FROM {t} f WHERE f.{pk} = ANY(%(firsts)s)){bound}"
        " ORDER BY t.{pk} LIMIT %(limit)s"
    ).format(
        pk=sql.Identifier(plan.pk.column),
        c=sql.Identifier(rule.column),
        t=sql.Identifier(plan.table),
        present=_present(plan, rule.column),
        bound=sql.SQL(" AND t.{} <= %(bound)s").format(sql.Identifier(plan.pk.column))
        if bounded
        else sql.SQL(""),
    )
