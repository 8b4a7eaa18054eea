"""The repair plan builder: online statement forms, pglast's split and classification, adopt's names."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from guard.errors import UsageError
from guard.schema import remedy
from guard.schema.adoption import _slug, _stamp, snapshot_column_types
from guard.schema.compare import compare
from guard.schema.model import Column, Constraint, Index, Table
from guard.schema.snapshot import Snapshot
from guard.schema.steps import narrows, parse_script, parse_type

COLUMNS = {("ads", "title"): "character varying(255)", ("ads", "price"): "numeric(12,2)"}


def live(schema: str | None, table: str, column: str) -> str | None:
    return COLUMNS.get((table, column))


def test_a_missing_index_is_built_concurrently_and_plain_in_a_migration() -> None:
    index = Index("public", "ads", "ads_status_idx", False, "public.ads USING btree (status)")
    (step,) = remedy.create_index(index)
    assert step.sql == 'CREATE INDEX CONCURRENTLY "ads_status_idx" ON public.ads USING btree (status);'
    assert step.migration_sql == 'CREATE INDEX "ads_status_idx" ON public.ads USING btree (status);'


def test_a_check_or_foreign_key_is_added_not_valid_then_validated_last() -> None:
    fk = Constraint("public", "ads", "ads_user_id_fkey", "f", "FOREIGN KEY (user_id) REFERENCES users(id)")
    added, validated = remedy.add_constraint(fk)
    assert added.sql.endswith("REFERENCES users(id) NOT VALID;")
    assert validated.sql == 'ALTER TABLE "public"."ads" VALIDATE CONSTRAINT "ads_user_id_fkey";'
    assert validated.phase > remedy.CREATE_TRIGGER and validated.migration_sql == ""
    assert added.migration_sql.endswith("REFERENCES users(id);")


def test_a_constraint_already_not_valid_is_not_validated_by_the_repair() -> None:
    check = Constraint("public", "ads", "ads_slug_present", "c", "CHECK ((slug IS NOT NULL)) NOT VALID")
    assert [s.sql for s in remedy.add_constraint(check)] == [
        'ALTER TABLE "public"."ads" ADD CONSTRAINT "ads_slug_present" CHECK ((slug IS NOT NULL)) NOT VALID;'
    ]


def test_a_unique_key_is_attached_to_an_index_built_concurrently_before_foreign_keys() -> None:
    key = Constraint("public", "users", "users_email_key", "u", "UNIQUE (email)")
    index, attach = remedy.add_constraint(key)
    assert index.sql == 'CREATE UNIQUE INDEX CONCURRENTLY "users_email_key" ON "public"."users" (email);'
    assert attach.sql.endswith('ADD CONSTRAINT "users_email_key" UNIQUE USING INDEX "users_email_key";')
    assert index.phase < attach.phase < remedy.ADD_FOREIGN_KEY
    assert index.migration_sql == "" and attach.migration_sql.endswith("UNIQUE (email);")


def test_set_not_null_follows_a_validated_check_that_is_dropped_afterwards() -> None:
    table = Table("public", "ads", None, ())
    want = Column("title", "text", True, None, "", None, None)
    have = Column("title", "text", False, None, "", None, None)
    texts = [s.sql.split(" ", 3)[3] for s in remedy.alter_column(table, want, have)]
    assert texts == [
        'ADD CONSTRAINT "ads_title_not_null" CHECK ("title" IS NOT NULL) NOT VALID;',
        'VALIDATE CONSTRAINT "ads_title_not_null";',
        'ALTER COLUMN "title" SET NOT NULL;',
        'DROP CONSTRAINT "ads_title_not_null";',
    ]


def test_an_invalid_index_the_migrations_have_is_dropped_and_built_again_concurrently() -> None:
    wanted = Index(
        "public", "categories", "categories_slug_key", True, "public.categories USING btree (slug)"
    )
    broken = Index("public", "categories", "categories_slug_key", True, wanted.definition, valid=False)
    stray = Index("public", "ads", "ads_hotfix_idx", False, "public.ads USING btree (title)", valid=False)
    found = compare(
        Snapshot(indexes={wanted.key: wanted}),
        Snapshot(indexes={broken.key: broken, stray.key: stray}),
    )
    assert [(d.kind, d.subject, d.sql) for d in found] == [
        (
            "index_invalid",
            "index:categories_slug_key",
            'DROP INDEX CONCURRENTLY IF EXISTS "public"."categories_slug_key";\n'
            'CREATE UNIQUE INDEX CONCURRENTLY "categories_slug_key" ON public.categories USING btree (slug);',
        ),
        (
            "index_invalid",
            "index:ads_hotfix_idx",
            'DROP INDEX CONCURRENTLY IF EXISTS "public"."ads_hotfix_idx";',
        ),
    ]


def test_the_script_has_no_transaction_and_says_how_psql_applies_it() -> None:
    text = remedy.script(
        [remedy.create_index(Index("public", "t", "t_a_idx", False, "public.t USING btree (a)"))]
    )
    assert "\nBEGIN;" not in text and "\nCOMMIT;" not in text
    assert 'psql "$DATABASE_URL" -v ON_ERROR_STOP=1 -f FILE' in text and "SET lock_timeout = '2s';" in text


def test_the_split_keeps_statements_whole_and_marks_settings_and_online_builds() -> None:
    steps = parse_script(
        "SET lock_timeout = '1s';\n-- a comment; with a semicolon\n"
        "CREATE FUNCTION f() RETURNS int LANGUAGE sql AS $$ select 1; $$;\n"
        'CREATE INDEX CONCURRENTLY "i" ON "s"."t" (a);',
        live,
    )
    assert [s.setting for s in steps] == ["lock_timeout", None, None]
    assert steps[1].sql.endswith("$$ select 1; $$")
    assert steps[2].online and steps[2].index == ("s", "i") and not steps[2].destructive


@pytest.mark.parametrize(
    ("statement", "why"),
    [
        ('DROP TABLE IF EXISTS "public"."ads"', "drops table public.ads with its rows"),
        ('ALTER TABLE "ads" DROP COLUMN "title"', "drops column ads.title with its values"),
        ("TRUNCATE ads", "empties a table"),
        ("DELETE FROM ads", "deletes rows"),
        ("DROP TYPE status CASCADE", "drops with CASCADE, which may drop dependent columns and tables"),
        (
            'ALTER TABLE "ads" ALTER COLUMN "title" TYPE varchar(20)',
            "changes ads.title from character varying(255) to character varying(20), "
            "which may not keep every value",
        ),
        (
            'ALTER TABLE "ads" ALTER COLUMN "price" TYPE integer',
            "changes ads.price from numeric(12,2) to integer, which may not keep every value",
        ),
    ],
)
def test_statements_that_drop_data_are_named(statement: str, why: str) -> None:
    (step,) = parse_script(statement, live)
    assert step.destructive == why


@pytest.mark.parametrize(
    "statement",
    [
        'ALTER TABLE "ads" ALTER COLUMN "title" TYPE varchar(300)',
        'ALTER TABLE "ads" ALTER COLUMN "title" TYPE text',
        'ALTER TABLE "ads" ALTER COLUMN "price" TYPE numeric(14,2)',
        'ALTER TABLE "ads" ADD COLUMN "custom_fields" jsonb',
        'DROP INDEX CONCURRENTLY IF EXISTS "ads_x_idx"',
        'DROP VIEW IF EXISTS "active_ads"',
    ],
)
def test_statements_that_keep_every_value_are_not_destructive(statement: str) -> None:
    (step,) = parse_script(statement, live)
    assert step.destructive is None


def test_type_changes_that_widen_keep_every_value_and_others_do_not() -> None:
    assert not narrows(parse_type("integer"), parse_type("bigint"))
    assert not narrows(
        parse_type("timestamp(3) without time zone"), parse_type("timestamp without time zone")
    )
    assert narrows(parse_type("timestamp without time zone"), parse_type("timestamp(3) without time zone"))
    assert narrows(parse_type("text"), parse_type("character varying(10)"))
    assert narrows(parse_type("jsonb"), parse_type("json"))
    assert narrows(parse_type("integer[]"), parse_type("integer"))
    assert narrows(parse_type("numeric(12,2)"), parse_type("numeric(12,4)"))


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            "BEGIN;\nALTER TABLE ads ADD COLUMN x int;\nCOMMIT;",
            "statement 1 (BEGIN): remove transaction control",
        ),
        ("ALTER TABLE ads ADD COLUMNN x int;", "cannot parse repair.sql: syntax error"),
    ],
)
def test_a_script_guard_cannot_run_is_one_clear_usage_error(text: str, message: str) -> None:
    with pytest.raises(UsageError, match=message.replace("(", r"\(").replace(")", r"\)")):
        parse_script(text, live, "repair.sql")


def test_adopt_names_its_folder_as_prisma_does_and_after_every_existing_one() -> None:
    now = datetime(2026, 12, 1, 13, 5, 9, tzinfo=UTC)
    assert _stamp(now, ["20240101000000_init"]) == "20261201130509"
    assert _stamp(now, ["20270101000000_future"]) == "20270101000001"
    assert _slug("ads_title-Search idx!") == "ads_title_search_idx"
    assert _slug("***") == "drift"


def test_adopt_judges_a_type_change_against_the_migrations_schema() -> None:
    table = Table("public", "ads", None, (Column("title", "text", True, None, "", None, None),))
    lookup = snapshot_column_types(Snapshot(tables={"ads": table}))
    assert lookup(None, "ads", "title") == "text" and lookup("public", "ads", "nope") is None
