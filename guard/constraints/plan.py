"""For every rule, the constraints that enforce it, their state in the database, and the rule's count."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from guard.checks import CheckContext, integrity
from guard.config.rules import Rule
from guard.config.settings import Settings
from guard.constraints import enforcement as e
from guard.constraints.enforcement import Enforcer
from guard.db.catalog import is_unique
from guard.db.database import Database, load_query
from guard.errors import ConfigError


@dataclass(frozen=True)
class RulePlan:
    """One rule: what enforces it, how many rows break it today, and why it cannot be enforced if so."""

    rule: Rule
    findings: int
    enforcers: tuple[Enforcer, ...]
    note: str | None = None

    @property
    def satisfied(self) -> bool:
        """Tell whether today's rows already pass every constraint of the rule."""
        return self.findings == 0

    @property
    def ours(self) -> tuple[Enforcer, ...]:
        return tuple(x for x in self.enforcers if x.ours)

    def to_json(self) -> dict[str, object]:
        return {
            "rule": self.rule.id,
            "type": self.rule.type,
            "table": self.rule.table,
            "column": self.rule.column,
            "findings": self.findings,
            "satisfied": self.satisfied,
            "constraints": [x.to_json() for x in self.enforcers],
            "note": self.note,
        }


@dataclass(frozen=True)
class Column:
    """What the catalog says of a rule's column."""

    not_null: bool
    is_text: bool


def read_plan(settings: Settings) -> list[RulePlan]:
    """Count each rule's findings with the integrity check, then plan its constraints (writes nothing)."""
    counts = integrity.run(CheckContext(settings, limit=0)).counts
    with Database(settings.require_database_url()) as db:
        return plan_rules(db, settings.rules, counts)


def plan_rules(db: Database, rules: Sequence[Rule], counts: Mapping[str, int]) -> list[RulePlan]:
    """Return each rule's plan, in the rules' order; fail naming two rules that would share a name."""
    required = {(r.table, r.column) for r in rules if r.type == "required"}
    plans = [_plan(db, rule, counts.get(rule.id, 0), (rule.table, rule.column) in required) for rule in rules]
    _refuse_shared_names(plans)
    return _with_states(db, plans)


def _plan(db: Database, rule: Rule, findings: int, has_required: bool) -> RulePlan:
    col = _column(db, rule.table, rule.column)
    if rule.type == "required":
        return RulePlan(rule, findings, _required(rule, col))
    if rule.type == "format":
        definition = e.check_format(rule, col.is_text)
        return RulePlan(rule, findings, (_ours(rule, e.CHECK, e.base_name(rule.id), definition),))
    if rule.type == "unique":
        return RulePlan(rule, findings, (_unique(db, rule, skip_blank=has_required and col.is_text),))
    return _references(db, rule, findings)


def _required(rule: Rule, col: Column) -> tuple[Enforcer, ...]:
    found: list[Enforcer] = []
    if col.not_null:
        found.append(Enforcer(rule.id, e.NOT_NULL, rule.table, rule.column, None, "NOT NULL", e.VALID, False))
    else:
        proof = e.not_null_name(rule.id)
        found.append(_ours(rule, e.CHECK, proof, e.check_not_null(rule.column)))
        found.append(Enforcer(rule.id, e.NOT_NULL, rule.table, rule.column, proof, "SET NOT NULL", e.MISSING))
    if col.is_text:
        found.append(_ours(rule, e.CHECK, e.base_name(rule.id), e.check_not_blank(rule.column)))
    return tuple(found)


def _unique(db: Database, rule: Rule, skip_blank: bool) -> Enforcer:
    name = e.base_name(rule.id)
    row = db.fetch_one(
        load_query("constraints_unique_index"), {"table": rule.table, "column": rule.column, "ours": name}
    )
    if row is not None:  # the app's own unique key already covers every row
        return Enforcer(rule.id, e.UNIQUE_INDEX, rule.table, rule.column, str(row[0]), "", e.VALID, False)
    return _ours(rule, e.UNIQUE_INDEX, name, e.unique_index(rule, skip_blank))


def _references(db: Database, rule: Rule, findings: int) -> RulePlan:
    params = {
        "table": rule.table,
        "column": rule.column,
        "target": rule.target_table,
        "target_column": rule.target_column,
    }
    row = db.fetch_one(load_query("constraints_foreign_key"), params)
    if row is not None and str(row[0]) != e.base_name(rule.id):
        state = e.VALID if row[1] else e.NOT_VALID
        existing = Enforcer(
            rule.id, e.FOREIGN_KEY, rule.table, rule.column, str(row[0]), e.foreign_key(rule), state, False
        )
        return RulePlan(rule, findings, (existing,))
    if not is_unique(db, rule.target_table, rule.target_column):
        note = f"no foreign key can enforce it: {rule.target} is not unique"
        return RulePlan(rule, findings, (), note)
    return RulePlan(rule, findings, (_ours(rule, e.FOREIGN_KEY, e.base_name(rule.id), e.foreign_key(rule)),))


def _ours(rule: Rule, kind: str, name: str, definition: str) -> Enforcer:
    return Enforcer(rule.id, kind, rule.table, rule.column, name, definition, e.MISSING)


def _column(db: Database, table: str, column: str) -> Column:
    row = db.fetch_one(load_query("constraints_column"), {"table": table, "column": column})
    if row is None:
        raise ConfigError(f"column '{table}.{column}' does not exist")
    return Column(bool(row[0]), row[1] == "S")


def _refuse_shared_names(plans: Iterable[RulePlan]) -> None:
    seen: dict[tuple[str, str], str] = {}
    for plan in plans:
        for enforcer in plan.ours:
            if enforcer.kind == e.NOT_NULL or enforcer.name is None:
                continue
            key = (enforcer.table, enforcer.name)
            if key in seen and seen[key] != plan.rule.id:
                raise ConfigError(
                    f"rules '{seen[key]}' and '{plan.rule.id}' would both name a constraint "
                    f"{enforcer.name}; rename one of them"
                )
            seen[key] = plan.rule.id


def _with_states(db: Database, plans: list[RulePlan]) -> list[RulePlan]:
    """Read the state of every object guard names, one query per table."""
    names: dict[str, list[str]] = {}
    for plan in plans:
        for x in plan.ours:
            if x.kind != e.NOT_NULL and x.name is not None:
                names.setdefault(x.table, []).append(x.name)
    states: dict[tuple[str, str], str] = {}
    for table, wanted in names.items():
        for name, state in db.fetch_all(load_query("constraints_named"), {"table": table, "names": wanted}):
            states[(table, str(name))] = str(state)
    return [
        RulePlan(plan.rule, plan.findings, tuple(_stated(x, states) for x in plan.enforcers), plan.note)
        for plan in plans
    ]


def _stated(enforcer: Enforcer, states: Mapping[tuple[str, str], str]) -> Enforcer:
    if not enforcer.ours or enforcer.kind == e.NOT_NULL or enforcer.name is None:
        return enforcer
    state = states.get((enforcer.table, enforcer.name), e.MISSING)
    return Enforcer(
        enforcer.rule,
        enforcer.kind,
        enforcer.table,
        enforcer.column,
        enforcer.name,
        enforcer.definition,
        state,
    )
