"""`guard repair slugs` against the database: read what integrity flags, rewrite in batches, undo."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import partial

import psycopg
from psycopg import sql

from guard.checks import integrity
from guard.config.rules import Rule
from guard.config.settings import Settings
from guard.db.catalog import PrimaryKey, require_column
from guard.db.database import Database, load_query
from guard.errors import ConfigError
from guard.repair import journal
from guard.repair.batching import BATCH_ROWS, LOCK_TIMEOUT_MS, chunks, in_batch
from guard.repair.journal import Change
from guard.repair.slugplan import Flagged, SlugChange, plan_slugs

KIND = "slugs"
TABLE, COLUMN, TITLE = "ads", "slug", "title"
RULE_TYPES = ("required", "format", "unique")
TITLES = "SELECT {pk}::text, {title}::text FROM {t} WHERE {pk} = ANY(%s)"
TAKEN = "SELECT DISTINCT {slug}::text FROM {t} WHERE {slug} = ANY(%s)"
REFUSED_SHOWN = 5
MATCHES = "SELECT c ~ %s FROM unnest(%s::text[]) WITH ORDINALITY AS u(c, n) ORDER BY n"


@dataclass(frozen=True)
class SlugTable:
    """The slug column's table, its key, and its rules, checked against the catalog."""

    plan: integrity.TablePlan

    @property
    def pk(self) -> PrimaryKey:
        return self.plan.pk

    @property
    def pattern(self) -> str | None:
        return next((r.pattern for r in self.plan.rules if r.type == "format"), None)

    def format(self, template: str) -> sql.Composed:
        return sql.SQL(template).format(
            t=sql.Identifier(TABLE),
            table=sql.Identifier(TABLE),
            pk=sql.Identifier(self.pk.column),
            slug=sql.Identifier(COLUMN),
            title=sql.Identifier(TITLE),
        )


def slug_rules(rules: Sequence[Rule]) -> list[Rule]:
    """The configured rules the repair answers to: required, format and unique on ads.slug."""
    found = [r for r in rules if r.table == TABLE and r.column == COLUMN and r.type in RULE_TYPES]
    if not found:
        raise ConfigError("no required, format or unique rule on ads.slug is configured: nothing to repair")
    return found


def open_table(db: Database, settings: Settings) -> SlugTable:
    require_column(db, TABLE, TITLE, owner="guard repair slugs")
    return SlugTable(integrity.plan_tables(db, slug_rules(settings.rules))[0])


def read_flagged(db: Database, table: SlugTable) -> list[Flagged]:
    """Return every ad whose slug breaks a rule: the integrity check's own query, then their titles."""
    query, params = integrity.build_query(table.plan, None)
    rules = table.plan.rules
    flags: dict[str, dict[str, bool]] = {}
    slugs: dict[str, str | None] = {}
    for row in db.stream(query, params):
        key, marks, values = str(row[0]), row[1 : 1 + len(rules)], row[1 + len(rules) :]
        flags[key] = {r.type: bool(m) for r, m in zip(rules, marks, strict=True) if m}
        slugs[key] = values[0]
    titles: dict[str, str | None] = {}
    for batch in chunks(list(flags), 10_000):
        titles.update(db.fetch_all(table.format(TITLES), (table.pk.bind(batch),)))
    return [
        Flagged(
            key,
            slugs[key],
            titles.get(key),
            "required" in f,
            "format" in f,
            "unique" in f,
        )
        for key, f in flags.items()
    ]


def plan(db: Database, settings: Settings) -> list[SlugChange]:
    """Build the repair's plan from the database as it is now."""
    table = open_table(db, settings)
    pattern = table.pattern

    def matches(candidates: Sequence[str]) -> list[bool]:
        if pattern is None:
            return [True] * len(candidates)
        return [bool(r[0]) for r in db.fetch_all(MATCHES, (pattern, list(candidates)))]

    def taken(candidates: Sequence[str]) -> set[str]:
        return {str(r[0]) for r in db.fetch_all(table.format(TAKEN), (list(candidates),))}

    return plan_slugs(read_flagged(db, table), settings.slug_template, matches, taken)


def apply(
    db: Database,
    settings: Settings,
    changes: Sequence[SlugChange],
    run_id: str,
    *,
    batch: int = BATCH_ROWS,
    lock_timeout_ms: int = LOCK_TIMEOUT_MS,
) -> list[SlugChange]:
    """Rewrite the planned slugs batch by batch, each batch and its ledger rows in one transaction.

    A row whose slug is no longer what the plan read (the app wrote it since) is left alone.
    """
    table = open_table(db, settings)
    update = table.format(load_query("repair_slugs_update"))
    by_key = {c.key: c for c in changes}
    done: list[SlugChange] = []
    for part in chunks(list(changes), batch):
        params: dict[str, object] = {
            "ids": table.pk.bind(c.key for c in part),
            "olds": [c.old for c in part],
            "news": [c.new for c in part],
        }

        def work(params: dict[str, object] = params) -> list[SlugChange]:
            rows = db.fetch_all(update, params)
            made = [by_key[str(key)] for key, _, _ in rows]
            journal.record_changes(db, run_id, [Change(subject(c.key), c.old, c.new) for c in made])
            return made

        done += in_batch(db, work, lock_timeout_ms)
    return done


def subject(key: str) -> str:
    return f"{TABLE}:{key}"


@dataclass(frozen=True)
class Reverted:
    """What an undo found: rows changed again before it (then nothing is done), or during it, or a
    constraint that refuses an old value (then what it had put back is re-applied)."""

    conflicts: list[str]
    raced: list[str]
    refused: str | None = None


def undo(
    db: Database,
    settings: Settings,
    run_id: str,
    changes: Sequence[Change],
    *,
    batch: int = BATCH_ROWS,
    lock_timeout_ms: int = LOCK_TIMEOUT_MS,
) -> Reverted:
    """Put every slug of a run back, or none when a row's slug changed again since (naming those rows).

    The comparison reads every row first; the writes then go in batches under lock_timeout, each
    only where the row still holds what the repair wrote, so the app never waits for more than a
    batch. A row the app writes in the milliseconds between the two is left as the app wrote it and
    named (`raced`).
    """
    table = open_table(db, settings)
    keys = [c.subject.partition(":")[2] for c in changes]
    current: dict[str, str | None] = {}
    query = table.format(load_query("repair_slugs_current"))
    for ids in chunks(keys, 10_000):
        current.update(db.fetch_all(query, {"ids": table.pk.bind(ids)}))
    conflicts = [
        c.subject for k, c in zip(keys, changes, strict=True) if k not in current or current[k] != c.after
    ]
    if conflicts:
        return Reverted(conflicts, [])
    revert = table.format(load_query("repair_slugs_revert"))
    raced: list[str] = []
    reverted: list[Sequence[Change]] = []
    for part in chunks(list(changes), batch):
        try:
            done = in_batch(db, _reverting(db, table, revert, part, back=True), lock_timeout_ms)
        except psycopg.errors.IntegrityError as exc:
            # The constraints added since (`guard constraints migrate`) refuse an old value: what this
            # undo already put back goes forward again, batch by batch, so the run stays as repaired.
            refused = in_batch(db, partial(_refused_rows, db, table, revert, part), lock_timeout_ms)
            for undone in reverted:
                in_batch(db, _reverting(db, table, revert, undone, back=False), lock_timeout_ms)
            return Reverted([], [], refused=refusal(exc, refused, part))
        raced += [c.subject for c in part if c.subject.partition(":")[2] not in done]
        reverted.append([c for c in part if c.subject.partition(":")[2] in done])
    journal.mark_undone(db, run_id)
    return Reverted([], raced)


def _reverting(
    db: Database, table: SlugTable, revert: sql.Composed, part: Sequence[Change], *, back: bool
) -> Callable[[], set[str]]:
    """One batch's work: each row to its 'before' value (back) or its 'after' value again, only where
    it still holds the other one."""
    params: dict[str, object] = {
        "ids": table.pk.bind(c.subject.partition(":")[2] for c in part),
        "olds": [c.before if back else c.after for c in part],
        "news": [c.after if back else c.before for c in part],
    }
    return lambda: {str(r[0]) for r in db.fetch_all(revert, params)}


class _Probed(Exception):
    """Ends the probe's transaction: nothing it tried stays."""


def _refused_rows(db: Database, table: SlugTable, revert: sql.Composed, part: Sequence[Change]) -> list[str]:
    """The first rows of a refused batch the constraints refuse, each with the constraint that refuses
    it: tried row by row (savepoints) in a transaction that is then rolled back."""
    refused: list[str] = []
    try:
        with db.transaction():
            for change in part:
                try:
                    with db.transaction():
                        _reverting(db, table, revert, [change], back=True)()
                except psycopg.errors.IntegrityError as exc:
                    refused.append(f"{change.subject} ({constraint_of(exc)})")
                    if len(refused) == REFUSED_SHOWN:
                        break
            raise _Probed
    except _Probed:
        pass
    return refused


def constraint_of(exc: psycopg.errors.IntegrityError) -> str:
    diag = exc.diag
    column = f"NOT NULL on {diag.column_name}" if diag.column_name else type(exc).__name__
    return diag.constraint_name or column


def refusal(exc: psycopg.errors.IntegrityError, refused: Sequence[str], part: Sequence[Change]) -> str:
    """One line: the constraints that refuse the old values, and the first rows they refuse."""
    if refused:
        what = f"refused putting back {', '.join(refused)}{' ...' if len(refused) == REFUSED_SHOWN else ''}"
    else:  # refused only together (one batch's rows among themselves)
        shown = ", ".join(c.subject for c in part[:REFUSED_SHOWN])
        more = " ..." if len(part) > REFUSED_SHOWN else ""
        what = f"{constraint_of(exc)} refused putting back the batch of {shown}{more}"
    return f"the database no longer accepts the old values: {what}; every slug is left as the repair wrote it"
