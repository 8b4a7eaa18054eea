"""The migration lint's rule logic on parsed files, against live-database facts written out by hand."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import pglast
import pytest

from guard.config.settings import load_settings
from guard.errors import ConfigError
from guard.lint.facts import Facts, LiveColumn, facts_from_rows, parse_expression, proves_not_null
from guard.lint.hazards import Hazard, lint
from guard.lint.script import ScriptError, parse_script
from guard.lint.typechange import ColumnType, rewrites, type_from_catalog, type_from_node
from tests.lint_cases import NOT_VALID, TIMEOUT, TYPE_CHANGES, UNIQUE, VALIDATE

VARHDRSZ = 4
# What the thulobazaar database holds, as the lint_columns and lint_checks queries return it.
COLUMNS = [
    ("ads", "id", "int4", -1, False, "integer", True),
    ("ads", "title", "varchar", 255 + VARHDRSZ, False, "character varying(255)", True),
    ("ads", "slug", "varchar", 300 + VARHDRSZ, False, "character varying(300)", False),
    ("ads", "price", "numeric", ((12 << 16) | 2) + VARHDRSZ, False, "numeric(12,2)", False),
    ("ads", "description", "text", -1, False, "text", False),
    ("ads", "status", "varchar", 20 + VARHDRSZ, False, "character varying(20)", True),
    ("ads", "created_at", "timestamp", 3, False, "timestamp(3) without time zone", True),
    ("ad_images", "ad_id", "int4", -1, False, "integer", True),
    ("users", "id", "int4", -1, False, "integer", True),
]
CHECKS = [("ads", "ads_price_non_negative", True, "((price IS NULL) OR (price >= (0)::numeric))")]
LIVE = facts_from_rows(COLUMNS, CHECKS)


def hazards(*files: str, facts: Facts = LIVE) -> list[Hazard]:
    return lint([(f"{n}_m", parse_script(text)) for n, text in enumerate(files)], facts)


def rules(*files: str, facts: Facts = LIVE) -> list[tuple[str, int]]:
    """Return (rule, line) of every hazard a comment does not silence."""
    return [(h.rule, h.statement.line) for h in hazards(*files, facts=facts) if not h.silenced]


def test_the_constraint_rollout_migrations_pass_with_no_findings() -> None:
    assert rules(NOT_VALID, UNIQUE, VALIDATE) == []


def test_the_rollout_passes_when_its_first_step_is_already_applied() -> None:
    """With file 1 applied, its NOT VALID check is in the live database; file 3 validates it there."""
    live = facts_from_rows(COLUMNS, [*CHECKS, ("ads", "guard_ads_slug_required", False, "slug IS NOT NULL")])
    assert rules(VALIDATE, facts=live) == []


@pytest.mark.parametrize(
    ("sql", "expected"),
    [
        ('CREATE INDEX "ads_title_idx" ON "ads" ("title");', [("index_not_concurrent", 2)]),
        ('CREATE UNIQUE INDEX "ads_slug_key" ON "ads" ("slug");', [("index_not_concurrent", 2)]),
        ('ALTER TABLE "ads" ADD CONSTRAINT "u" UNIQUE ("slug");', [("index_not_concurrent", 2)]),
        ('ALTER TABLE "ads" ADD CONSTRAINT "u" UNIQUE USING INDEX "guard_ads_slug_unique";', []),
        (
            'ALTER TABLE "ads" ADD CONSTRAINT "p" CHECK ("price" < 1e9);',
            [("constraint_without_not_valid", 2)],
        ),
        (
            'ALTER TABLE "ad_images" ADD CONSTRAINT "f" FOREIGN KEY ("ad_id") REFERENCES "ads" ("id");',
            [("constraint_without_not_valid", 2)],
        ),
        ('ALTER TABLE "ads" ADD CONSTRAINT "p" CHECK ("price" < 1e9) NOT VALID;', []),
        ('ALTER TABLE "ads" ALTER COLUMN "slug" SET NOT NULL;', [("not_null_without_check", 2)]),
        ('ALTER TABLE "ads" ALTER COLUMN "title" SET NOT NULL;', []),  # already NOT NULL: a no-op
        ('ALTER TABLE "ads" ALTER COLUMN "id" TYPE BIGINT;', [("column_type_rewrite", 2)]),
        ('ALTER TABLE "ads" ALTER COLUMN "slug" TYPE VARCHAR(500);', []),
        ('ALTER TABLE "ads" ALTER COLUMN "slug" TYPE VARCHAR(100);', [("column_type_rewrite", 2)]),
        ('ALTER TABLE "ads" ALTER COLUMN "slug" TYPE TEXT;', []),
        (
            'ALTER TABLE "ads" ALTER COLUMN "description" TYPE INTEGER USING "description"::integer;',
            [("column_type_rewrite", 2)],
        ),
        ('ALTER TABLE "ads" ALTER COLUMN "slug" TYPE TEXT USING "slug"::text;', []),
        ('ALTER TABLE "ads" ALTER COLUMN "price" TYPE DECIMAL(14,2);', []),
        ('ALTER TABLE "ads" ALTER COLUMN "price" TYPE DECIMAL(14,4);', [("column_type_rewrite", 2)]),
        ('ALTER TABLE "ads" ALTER COLUMN "created_at" TYPE TIMESTAMP(6);', []),
        ('ALTER TABLE "ads" ALTER COLUMN "created_at" TYPE TIMESTAMPTZ(3);', [("column_type_rewrite", 2)]),
        ('ALTER TABLE "ads" DROP COLUMN "description";', [("drop_column", 2)]),
        ('DROP TABLE "ad_images";', [("drop_table", 2)]),
        ('ALTER TABLE "ads" RENAME COLUMN "title" TO "name";', [("rename_column", 2)]),
        ('ALTER TABLE "ads" RENAME TO "listings";', [("rename_table", 2)]),
        ('ALTER TABLE "ads" ADD COLUMN "views" INTEGER NOT NULL DEFAULT 0;', []),
        ('ALTER TABLE "ads" VALIDATE CONSTRAINT "ads_price_non_negative";', []),
    ],
)
def test_each_rule_on_an_existing_table(sql: str, expected: list[tuple[str, int]]) -> None:
    assert rules(TIMEOUT + sql) == expected


def test_nothing_done_to_a_table_created_by_a_pending_migration_is_a_hazard() -> None:
    create = 'CREATE TABLE "drafts" ("id" SERIAL PRIMARY KEY, "title" VARCHAR(50), "n" INTEGER);\n'
    later = """CREATE INDEX "drafts_title_idx" ON "drafts" ("title");
ALTER TABLE "drafts" ADD CONSTRAINT "c" CHECK ("n" > 0);
ALTER TABLE "drafts" ALTER COLUMN "title" SET NOT NULL;
ALTER TABLE "drafts" ALTER COLUMN "n" TYPE BIGINT;
ALTER TABLE "drafts" RENAME COLUMN "title" TO "name";
ALTER TABLE "drafts" DROP COLUMN "n";
ALTER TABLE "drafts" RENAME TO "draft_ads";
DROP TABLE "draft_ads";
"""
    assert rules(create + later) == []  # earlier in the same file
    assert rules(create, later) == []  # in an earlier pending migration


def test_a_fresh_database_has_every_folder_pending_and_the_thulobazaar_migrations_pass(
    thulobazaar: Sequence[str],
) -> None:
    assert rules(*thulobazaar, facts=Facts()) == []


def test_the_last_thulobazaar_migration_alone_is_linted_against_the_tables_it_changes(
    thulobazaar: Sequence[str],
) -> None:
    assert rules(thulobazaar[-1]) == [
        ("index_not_concurrent", 2),
        ("lock_timeout_missing", 2),
        ("index_not_concurrent", 5),
        ("lock_timeout_missing", 5),
        ("constraint_without_not_valid", 8),
        ("lock_timeout_missing", 8),
    ]


@pytest.fixture
def thulobazaar() -> list[str]:
    from guard.schema.history import read_migrations

    folder = Path(__file__).resolve().parents[2] / "examples" / "thulobazaar" / "prisma" / "migrations"
    return [m.script for m in read_migrations(folder)]


def test_a_new_tables_foreign_key_locks_the_existing_table_it_references() -> None:
    sql = 'CREATE TABLE "saved" ("ad_id" INTEGER REFERENCES "ads" ("id"));\n'
    found = hazards(sql)
    assert [(h.rule, h.statement.line) for h in found] == [("lock_timeout_missing", 1)]
    assert '"ads"' in found[0].reason


@pytest.mark.parametrize(
    ("setting", "covered"),
    [
        ("SET lock_timeout = '2s';", True),
        ("SET lock_timeout TO 500;", True),
        ("SET LOCAL lock_timeout = '1min';", True),
        ("SET lock_timeout = 0;", False),
        ("SET lock_timeout = '0';", False),
        ("SET lock_timeout = '2s'; RESET lock_timeout;", False),
        ("SET lock_timeout = '2s'; SET lock_timeout TO DEFAULT;", False),
        ("SET lock_timeout = '2s'; RESET ALL;", False),
        ("SET statement_timeout = '2s';", False),
    ],
)
def test_a_lock_taking_statement_needs_a_lock_timeout_in_force_before_it(setting: str, covered: bool) -> None:
    found = rules(setting + '\nALTER TABLE "ads" ADD COLUMN "views" INTEGER;')
    assert found == ([] if covered else [("lock_timeout_missing", 2)])


def test_a_lock_timeout_set_after_the_statement_does_not_cover_it() -> None:
    assert rules('ALTER TABLE "ads" ADD COLUMN "views" INTEGER;\n' + TIMEOUT) == [("lock_timeout_missing", 1)]


def test_validate_constraint_alone_takes_no_lock_the_app_waits_for() -> None:
    assert rules('ALTER TABLE "ads" VALIDATE CONSTRAINT "ads_price_non_negative";') == []


def test_concurrently_must_be_alone_in_its_file() -> None:
    index = 'CREATE INDEX CONCURRENTLY "ads_title_idx" ON "ads" ("title");'
    assert rules(index) == []
    assert rules(f"-- a comment is not a statement\n{index}\n/* nor is this */") == []
    assert rules(TIMEOUT + index) == [("concurrently_not_alone", 2)]
    assert rules(f'{index}\nDROP INDEX CONCURRENTLY "old_idx";') == [
        ("concurrently_not_alone", 1),
        ("concurrently_not_alone", 2),
    ]
    assert rules('SELECT 1;\nREINDEX INDEX CONCURRENTLY "ads_title_idx";') == [("concurrently_not_alone", 2)]


@pytest.mark.parametrize(
    ("file", "check"),
    [
        # validated earlier in the same file
        (
            'ALTER TABLE "ads" ADD CONSTRAINT "nn" CHECK ("slug" IS NOT NULL) NOT VALID;\n'
            'ALTER TABLE "ads" VALIDATE CONSTRAINT "nn";\n',
            None,
        ),
        # added (and so validated) without NOT VALID earlier in the file: the scan happens there instead
        ('ALTER TABLE "ads" ADD CONSTRAINT "nn" CHECK ("slug" IS NOT NULL AND "slug" <> \'\');\n', None),
        # validated in the live database already
        ("", ("ads", "nn", True, "(slug IS NOT NULL)")),
        # in the live database NOT VALID, validated by this file
        (
            'ALTER TABLE "ads" VALIDATE CONSTRAINT "nn";\n',
            ("ads", "nn", False, "((slug IS NOT NULL) AND (btrim((slug)::text) <> ''::text))"),
        ),
    ],
)
def test_set_not_null_after_a_validated_check_skips_its_scan(
    file: str, check: tuple[object, ...] | None
) -> None:
    live = facts_from_rows(COLUMNS, [*CHECKS, *([check] if check else [])])
    found = rules(TIMEOUT + file + 'ALTER TABLE "ads" ALTER COLUMN "slug" SET NOT NULL;', facts=live)
    assert [rule for rule, _ in found if rule != "constraint_without_not_valid"] == []


@pytest.mark.parametrize(
    "check",
    [
        ("ads", "nn", False, "(slug IS NOT NULL)"),  # not validated
        ("ads", "nn", True, "((slug IS NOT NULL) OR (title IS NOT NULL))"),  # proves nothing of slug
        ("ads", "nn", True, "(title IS NOT NULL)"),  # another column
        ("ad_images", "nn", True, "(slug IS NOT NULL)"),  # another table
    ],
)
def test_set_not_null_without_a_check_that_proves_it(check: tuple[object, ...]) -> None:
    live = facts_from_rows(COLUMNS, [*CHECKS, check])
    found = rules(TIMEOUT + 'ALTER TABLE "ads" ALTER COLUMN "slug" SET NOT NULL;', facts=live)
    assert found == [("not_null_without_check", 2)]


def test_validating_a_check_that_does_not_prove_not_null_does_not_count() -> None:
    sql = TIMEOUT + (
        'ALTER TABLE "ads" ADD CONSTRAINT "f" CHECK ("slug" <> \'x\') NOT VALID;\n'
        'ALTER TABLE "ads" VALIDATE CONSTRAINT "f";\n'
        'ALTER TABLE "ads" ALTER COLUMN "slug" SET NOT NULL;'
    )
    assert rules(sql) == [("not_null_without_check", 4)]


def test_a_comment_naming_a_rule_silences_it_for_the_whole_file_only() -> None:
    drop = 'ALTER TABLE "ads" DROP COLUMN "description";\nDROP TABLE "ad_images";\n'
    allowed = f"-- guard:allow drop_column the app stopped reading it in v2.3\n{TIMEOUT}{drop}"
    found = hazards(allowed, TIMEOUT + 'ALTER TABLE "ads" DROP COLUMN "title";')
    assert [(h.migration, h.rule, h.silenced) for h in found] == [
        ("0_m", "drop_column", True),
        ("0_m", "drop_table", False),
        ("1_m", "drop_column", False),
    ]
    both = f"/* guard:allow drop_column, drop_table */\n{TIMEOUT}{drop}"
    assert rules(both) == []
    assert rules(f"-- guard: allow drop_column\n{TIMEOUT}{drop}") != []  # not the syntax: no effect


def test_parse_script_keeps_each_statement_with_its_line_and_text() -> None:
    script = parse_script(
        '-- é header\nSET lock_timeout = \'2s\';\n\n  ALTER TABLE "ads"\n  DROP COLUMN "x";\nSELECT 1'
    )
    assert [(s.line, s.text) for s in script.statements] == [
        (2, "SET lock_timeout = '2s'"),
        (4, 'ALTER TABLE "ads"\n  DROP COLUMN "x"'),
        (6, "SELECT 1"),
    ]
    assert script.statements[1].shown == 'ALTER TABLE "ads" DROP COLUMN "x"'


def test_a_file_the_parser_refuses_is_an_error_naming_the_line() -> None:
    with pytest.raises(ScriptError, match=r'syntax error at or near "\(" \(line 2\)'):
        parse_script("SELECT 1;\nCREATE TABLE (")


def test_proves_not_null_reads_is_not_null_inside_ands_only() -> None:
    def proven(text: str) -> set[str]:
        return set(proves_not_null(parse_expression(text)))

    assert proven("slug IS NOT NULL") == {"slug"}
    assert proven("((slug IS NOT NULL) AND (btrim((slug)::text) <> ''::text))") == {"slug"}
    assert proven("a IS NOT NULL AND (b IS NOT NULL AND c > 0)") == {"a", "b"}
    assert proven("a IS NOT NULL OR b IS NOT NULL") == set()
    assert proven("NOT (a IS NULL)") == set()
    assert parse_expression("not an ( expression") is None


def typed(text: str) -> ColumnType:
    statement = pglast.parse_sql(f"ALTER TABLE t ALTER c TYPE {text}")[0].stmt
    return type_from_node(statement.cmds[0].def_.typeName)  # type: ignore[attr-defined]


@pytest.mark.parametrize(("old", "new", "expected"), TYPE_CHANGES)
def test_which_type_changes_rewrite_the_table(old: str, new: str, expected: bool) -> None:
    live = Facts(columns=(LiveColumn("t", "c", typed(old), False),))
    found = rules(f'{TIMEOUT}ALTER TABLE "t" ALTER COLUMN "c" TYPE {new};', facts=live)
    assert found == ([("column_type_rewrite", 2)] if expected else [])
    if "USING" not in new:
        assert rewrites(typed(old), typed(new)) is expected


def test_catalog_types_read_as_the_parser_reads_them() -> None:
    assert type_from_catalog("varchar", 300 + VARHDRSZ, False) == typed("varchar(300)")
    assert type_from_catalog("numeric", ((12 << 16) | 2) + VARHDRSZ, False) == typed("decimal(12,2)")
    assert type_from_catalog("timestamp", 3, False) == typed("timestamp(3)")
    assert type_from_catalog("bpchar", 1 + VARHDRSZ, False) == typed("char")
    assert type_from_catalog("interval", (0x7FFF << 16) | 3, False) == typed("interval(3)")
    assert type_from_catalog("int4", -1, True) == typed("integer[]")


def write_config(tmp_path: Path, body: str) -> Path:
    path = tmp_path / "guard.toml"
    path.write_text(body)
    return path


def test_severities_come_from_the_migration_lint_table(tmp_path: Path) -> None:
    settings = load_settings(
        {},
        write_config(
            tmp_path,
            '[migration_lint]\nlock_timeout_missing = "error"\ndrop_column = "warn"\nrename_table = "off"\n',
        ),
    )
    assert settings.migration_lint["lock_timeout_missing"] == "error"
    assert settings.migration_lint["drop_column"] == "warn"
    assert settings.migration_lint["rename_table"] == "off"
    assert settings.migration_lint["index_not_concurrent"] == "error"
    assert load_settings({}).migration_lint["lock_timeout_missing"] == "warn"


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ('[migration_lint]\ndrop_colum = "warn"\n', "migration_lint: unknown rule 'drop_colum'"),
        ('[migration_lint]\ndrop_column = "info"\n', '\'drop_column\' must be "error", "warn" or "off"'),
        ('migration_lint = "warn"\n', "'migration_lint' must be a table"),
    ],
)
def test_a_bad_migration_lint_table_is_one_line_naming_it(tmp_path: Path, body: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(")", r"\)")):
        load_settings({}, write_config(tmp_path, body))
