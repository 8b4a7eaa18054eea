"""Pure comparison logic: pairing by definition, generated names, default spellings, script order."""

from __future__ import annotations

from guard.schema.compare import compare, pair
from guard.schema.model import Column, Constraint, Index, Table
from guard.schema.remedy import script
from guard.schema.snapshot import Snapshot, normalize_default


def check(name: str, definition: str = "CHECK ((a > 0))") -> Constraint:
    return Constraint("public", "t", name, "c", definition)


def test_generated_names_that_differ_are_paired_silently() -> None:
    pairs, missing, extra = pair(
        [check("t_a_check")], [check("t_a_check1")], lambda c: (c.table_key, c.type, c.definition)
    )
    assert (pairs, missing, extra) == ([], [], [])


def test_a_generated_name_prisma_manages_that_differs_is_a_rename() -> None:
    fk = Constraint("public", "t", "t_a_fkey", "f", "FOREIGN KEY (a) REFERENCES u(id)")
    renamed = Constraint("public", "t", "t_a_fkey1", "f", fk.definition)
    plain = Index("public", "t", "t_a_idx", False, "public.t USING btree (a)")
    expression = Index("public", "t", "t_b_idx", False, "public.t USING btree (lower(b))")
    found = compare(
        Snapshot(constraints={fk.key: fk}, indexes={plain.key: plain, expression.key: expression}),
        Snapshot(
            constraints={renamed.key: renamed},
            indexes={
                "t_a_idx1": Index("public", "t", "t_a_idx1", False, plain.definition),
                "t_b_idx1": Index("public", "t", "t_b_idx1", False, expression.definition),
            },
        ),
    )
    assert [(d.kind, d.subject, d.sql) for d in found] == [
        (
            "constraint_renamed",
            "constraint:t.t_a_fkey",
            'ALTER TABLE "public"."t" RENAME CONSTRAINT "t_a_fkey1" TO "t_a_fkey";',
        ),
        ("index_renamed", "index:t_a_idx", 'ALTER INDEX "public"."t_a_idx1" RENAME TO "t_a_idx";'),
    ]


def test_a_chosen_name_that_differs_is_a_rename() -> None:
    pairs, missing, extra = pair(
        [check("a_positive")], [check("t_a_check")], lambda c: (c.table_key, c.type, c.definition)
    )
    assert pairs == [(check("a_positive"), check("t_a_check"))] and not missing and not extra


def test_same_name_other_definition_is_changed_not_missing() -> None:
    found = compare(
        Snapshot(constraints={"t.c": check("c")}),
        Snapshot(constraints={"t.c": check("c", "CHECK ((a > 1))")}),
    )
    assert [(d.kind, d.subject) for d in found] == [("constraint_changed", "constraint:t.c")]


def test_equivalent_default_spellings_compare_equal() -> None:
    assert normalize_default("now()") == normalize_default("CURRENT_TIMESTAMP")
    assert normalize_default("'x'::text") == "'x'::text"


def _table(*columns: Column) -> Table:
    return Table("public", "t", None, columns)


def test_column_order_is_not_drift() -> None:
    a = Column("a", "integer", True, None, "", None, None)
    b = Column("b", "text", False, None, "", None, None)
    assert compare(Snapshot(tables={"t": _table(a, b)}), Snapshot(tables={"t": _table(b, a)})) == []


def test_script_orders_drops_before_creates_and_foreign_keys_after_tables() -> None:
    a = Column("id", "integer", True, None, "", None, None)
    fk = Constraint("public", "t", "t_id_fkey", "f", "FOREIGN KEY (id) REFERENCES u(id)")
    index = Index("public", "u", "u_x_idx", False, "public.u USING btree (x)")
    want = Snapshot(tables={"t": _table(a)}, constraints={fk.key: fk})
    have = Snapshot(indexes={index.key: index})
    text = script(d.statements for d in compare(want, have))
    drop, create, add_fk = (
        text.index("DROP INDEX"),
        text.index("CREATE TABLE"),
        text.index("ADD CONSTRAINT"),
    )
    assert drop < create < add_fk
    assert "\nBEGIN;" not in text and "\nCOMMIT;" not in text  # CONCURRENTLY needs no transaction block
