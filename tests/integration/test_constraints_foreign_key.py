"""guard's own FOREIGN KEY path on a real PostgreSQL: a `references` rule the schema does not enforce.

The seed's one `references` rule is already a foreign key of the app's; here `ads.user_id`'s key is
dropped (an app that never declared the relation), so guard plans, writes and validates its own.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import psycopg
import pytest

from guard.checks import CheckContext, run_checks
from guard.config.rules import Rule
from guard.config.settings import Settings
from guard.constraints import enforcement as e
from guard.constraints.plan import read_plan
from guard.constraints.rollout import Rollout, plan_rollout, read_written, write_rollout
from guard.db.database import Database
from guard.errors import ConfigError
from guard.schema.history import MigrationFile, apply_and_record
from tests.integration.constraints_support import copy_migrations, guard_folders

pytestmark = pytest.mark.integration

OWNER = Rule("ads.user_id.references", "ads", "user_id", "references", target="users.id")
ROWS = (
    'ALTER TABLE "ads" DROP CONSTRAINT "ads_user_id_fkey"',
    "INSERT INTO users (id, email) VALUES (1, 'a@example.com')",
    "INSERT INTO categories (id, name, slug) VALUES (1, 'Cars', 'cars')",
    "INSERT INTO ads (id, title, slug, category_id, user_id) VALUES"
    " (1, 'Owned', 'owned-1', 1, 1), (2, 'Orphan', 'orphan-2', 1, 99)",
    "SELECT setval('ads_id_seq', 100)",
)
APP_INSERT = "INSERT INTO ads (title, slug, category_id, user_id) VALUES ('New', 'new-300', 1, %s)"
NOT_VALID_SQL = """\
-- Written by `guard constraints migrate`: the rules as constraints, checked on every new write.
-- NOT VALID: the rows already there are not read under the lock (the validate step reads them).
SET lock_timeout = '500ms';

-- ads.user_id.references
ALTER TABLE "ads" ADD CONSTRAINT "guard_ads_user_id_references" FOREIGN KEY ("user_id") REFERENCES "users" ("id") NOT VALID;

RESET lock_timeout;
"""  # noqa: E501
VALIDATE_SQL = """\
-- Written by `guard constraints migrate` once no row broke the rules: existing rows are read
-- under a lock the app's writes pass; a validated CHECK (col IS NOT NULL) spares SET NOT NULL a scan.
SET lock_timeout = '500ms';

-- ads.user_id.references
ALTER TABLE "ads" VALIDATE CONSTRAINT "guard_ads_user_id_references";

RESET lock_timeout;
"""


def settings(url: str, folder: Path, *rules: Rule) -> Settings:
    return Settings(database_url=url, migrations_dir=folder, rules=rules)  # type: ignore[arg-type]


def rollout(url: str, folder: Path, now: datetime) -> Rollout:
    return plan_rollout(read_plan(settings(url, folder, OWNER)), read_written(folder), now)


def deploy(db: Database, written: list[Path]) -> None:
    for script in written:
        apply_and_record(db, MigrationFile(script.parent.name, script, script.read_bytes()))


def lint_hazards(url: str, folder: Path) -> set[tuple[str, str]]:
    (result,) = run_checks(CheckContext(settings(url, folder, OWNER)), ["migrations"])
    return {(f.kind, f.subject) for f in result.findings if f.kind != "migration_pending"}


def owner_key(url: str, folder: Path) -> tuple[str | None, str, bool]:
    (plan,) = read_plan(settings(url, folder, OWNER))
    (key,) = plan.enforcers
    return key.name, key.state, key.ours


def test_a_references_rule_becomes_guards_foreign_key_not_valid_then_validated(
    db: Database, db_url: str, tmp_path: Path
) -> None:
    for statement in ROWS:
        db.execute(statement)
    folder = copy_migrations(tmp_path)
    (plan,) = read_plan(settings(db_url, folder, OWNER))
    assert (plan.findings, plan.note) == (1, None)
    (key,) = plan.enforcers
    assert (key.kind, key.name, key.state, key.ours) == (
        e.FOREIGN_KEY,
        "guard_ads_user_id_references",
        e.MISSING,
        True,
    )
    assert key.definition == 'FOREIGN KEY ("user_id") REFERENCES "users" ("id")'

    first = rollout(db_url, folder, datetime(2030, 1, 2, 3, 4, 5, tzinfo=UTC))
    assert [(m.name, m.script) for m in first.migrations] == [
        ("20300102030405_guard_constraints_not_valid", NOT_VALID_SQL)
    ]
    assert [(b.rule, b.findings, b.step) for b in first.blocked] == [
        ("ads.user_id.references", 1, "guard_constraints_validate")
    ]
    written = write_rollout(folder, first)
    assert lint_hazards(db_url, folder) == set()
    deploy(db, written)
    assert owner_key(db_url, folder) == ("guard_ads_user_id_references", e.NOT_VALID, True)
    with pytest.raises(psycopg.errors.ForeignKeyViolation):  # new writes are checked at once
        db.execute(APP_INSERT, (99,))

    db.execute("DELETE FROM ads WHERE id = 2")  # the fix: the orphan goes
    second = rollout(db_url, folder, datetime(2030, 1, 2, 3, 5, 0, tzinfo=UTC))
    assert [(m.name, m.script) for m in second.migrations] == [
        ("20300102030500_guard_constraints_validate", VALIDATE_SQL)
    ]
    assert second.blocked == ()
    written = write_rollout(folder, second)
    assert lint_hazards(db_url, folder) == set()
    deploy(db, written)
    assert guard_folders(folder) == ["guard_constraints_not_valid", "guard_constraints_validate"]
    assert owner_key(db_url, folder) == ("guard_ads_user_id_references", e.VALID, True)
    validated = "SELECT convalidated FROM pg_constraint WHERE conname = 'guard_ads_user_id_references'"
    assert db.fetch_one(validated) == (True,)
    db.execute(APP_INSERT, (1,))
    with pytest.raises(psycopg.errors.ForeignKeyViolation):
        db.execute(APP_INSERT, (99,))
    assert rollout(db_url, folder, datetime(2030, 1, 3, tzinfo=UTC)) == Rollout((), ())


def test_a_references_rule_to_a_column_that_is_not_unique_is_a_note_and_no_migration(
    db_url: str, tmp_path: Path
) -> None:
    rule = Rule("ads.title.references", "ads", "title", "references", target="users.full_name")
    folder = copy_migrations(tmp_path)
    (plan,) = read_plan(settings(db_url, folder, rule))
    assert plan.enforcers == ()
    assert plan.note == "no foreign key can enforce it: users.full_name is not unique"
    assert plan_rollout([plan], read_written(folder)) == Rollout((), ())


def test_two_rules_that_would_share_a_constraint_name_are_a_configuration_error(
    db_url: str, tmp_path: Path
) -> None:
    pattern = "^[a-z]+$"
    one = Rule("ads.slug.format", "ads", "slug", "format", pattern=pattern)
    other = Rule("ads_slug.format", "ads", "slug", "format", pattern=pattern)
    with pytest.raises(ConfigError) as refused:
        read_plan(settings(db_url, copy_migrations(tmp_path), one, other))
    assert str(refused.value) == (
        "rules 'ads.slug.format' and 'ads_slug.format' would both name a constraint "
        "guard_ads_slug_format; rename one of them"
    )
