"""`guard drift repair` from the command line: the write-up's restored old dump repaired by one command."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import psycopg
import pytest

from tests.acceptance.cli import MIGRATIONS_DIR, guard, guard_json
from tests.conftest import url_for

pytestmark = pytest.mark.acceptance

# What the write-up's incident 1 left: a restore of an old dump, with no migration history, that
# lacks the three things the later migrations added.
OLD_DUMP = (
    'DROP TABLE "user_favorites"',
    'ALTER TABLE "ads" DROP COLUMN "custom_fields"',
    'ALTER TABLE "categories" DROP COLUMN "form_template"',
    'DROP TABLE "_prisma_migrations"',
)
INCIDENT = {
    ("table_missing", "table:user_favorites"),
    ("column_missing", "column:ads.custom_fields"),
    ("column_missing", "column:categories.form_template"),
}


def run_sql(url: str, *statements: str) -> None:
    with psycopg.connect(url, autocommit=True) as conn:
        for statement in statements:
            conn.execute(statement.encode())


def one(url: str, query: str) -> Any:
    with psycopg.connect(url) as conn:
        row = conn.execute(query.encode()).fetchone()
    return row[0] if row else None


@pytest.fixture
def env(db_name: str, tmp_path: Path) -> dict[str, str]:
    uploads = tmp_path / "public"
    (uploads / "uploads" / "ads").mkdir(parents=True)
    return {
        "DATABASE_URL": url_for(db_name),
        "MIGRATIONS_DIR": MIGRATIONS_DIR,
        "UPLOADS_ROOT": str(uploads),
        "BACKUP_DIR": str(tmp_path / "backups"),
    }


def drift(env: dict[str, str]) -> set[tuple[str, str]]:
    code, document = guard_json("check", "drift", env=env)
    found = {(f["kind"], f["subject"]) for c in document["checks"] for f in c["findings"]}
    assert code == (1 if found else 0), document
    return found


def test_the_restored_old_dump_is_repaired_by_one_command_after_a_backup(env: dict[str, str]) -> None:
    run_sql(env["DATABASE_URL"], *OLD_DUMP)
    assert drift(env) == INCIDENT
    code, plan = guard_json("drift", "repair", env=env)
    assert code == 1 and plan["applied"] is False and plan["backup"] is True, plan
    assert any("CREATE TABLE" in s["sql"] for s in plan["steps"]) and plan["destructive"] == []
    assert drift(env) == INCIDENT  # the plan changed nothing
    assert not Path(env["BACKUP_DIR"]).exists()

    code, result = guard_json("drift", "repair", "--apply", env=env)
    assert code == 0 and result["ok"] and result["failure"] is None, result
    assert result["drift"] == {"ok": True, "findings": []}
    assert all(s["seconds"] >= 0 and s["attempts"] == 1 for s in result["statements"])
    assert any('ADD COLUMN "form_template"' in s["sql"] for s in result["statements"])
    code, listed = guard_json("backup", "list", env=env)
    assert [b["id"] for b in listed["backups"]] == [result["backup"]], listed
    assert drift(env) == set()
    # the dump had no history: once the schema matches, the one command records it as baseline would
    folders = [p for p in Path(MIGRATIONS_DIR).iterdir() if (p / "migration.sql").is_file()]
    assert result["aftercare"]["baselined"] == len(folders), result
    assert guard("check", "migrations", env=env).returncode == 0


def test_an_applied_drift_repair_is_in_the_repair_ledger_and_undo_points_at_its_backup(
    env: dict[str, str],
) -> None:
    run_sql(env["DATABASE_URL"], *OLD_DUMP)
    code, result = guard_json("drift", "repair", "--apply", env=env)
    assert code == 0 and result["repair_id"], result
    code, runs = guard_json("repair", "list", env=env)
    [run] = [r for r in runs["runs"] if r["id"] == result["repair_id"]]
    assert run["kind"] == "drift" and run["backup_id"] == result["backup"], run
    assert run["changes"] == len(result["statements"]) and run["undoable"] is False
    undone = guard("repair", "undo", result["repair_id"], env=env)
    assert undone.returncode != 0 and result["backup"] in undone.stdout + undone.stderr
    assert drift(env) == set()  # undo refused: the repair stands


def test_the_text_output_prints_the_plan_then_the_result(env: dict[str, str]) -> None:
    run_sql(env["DATABASE_URL"], 'ALTER TABLE "categories" DROP COLUMN "form_template"')
    planned = guard("drift", "repair", env=env)
    assert planned.returncode == 1, planned.stderr
    assert 'ADD COLUMN "form_template" jsonb' in planned.stdout
    assert planned.stdout.rstrip().endswith("nothing applied: run again with --apply")
    done = guard("drift", "repair", "--apply", env=env)
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.startswith("backup ") and "drift check after the repair: clean" in done.stdout


def test_without_backup_dir_it_refuses_and_changes_nothing(env: dict[str, str]) -> None:
    run_sql(env["DATABASE_URL"], *OLD_DUMP)
    env.pop("BACKUP_DIR")
    done = guard("drift", "repair", "--apply", env=env)
    assert done.returncode == 2 and done.stdout == ""
    assert done.stderr == (
        "guard: refusing to repair without a backup: BACKUP_DIR is not set (set it, or pass --no-backup)\n"
    )
    assert drift(env) == INCIDENT


def test_no_backup_repairs_without_one(env: dict[str, str]) -> None:
    run_sql(env["DATABASE_URL"], *OLD_DUMP)
    backups = Path(env.pop("BACKUP_DIR"))
    code, result = guard_json("drift", "repair", "--apply", "--no-backup", env=env)
    assert code == 0 and result["backup"] is None and result["drift"]["ok"], result
    assert not backups.exists() and drift(env) == set()


DESTRUCTIVE = (
    'CREATE TABLE "hotfix_notes" ("id" int PRIMARY KEY)',
    'INSERT INTO "hotfix_notes" VALUES (1)',
    'ALTER TABLE "ads" ADD COLUMN "legacy" text',
    'ALTER TABLE "ads" ALTER COLUMN "status" TYPE text',  # the repair would narrow it to varchar(20)
)


def test_statements_that_drop_data_are_refused_unless_allowed(env: dict[str, str]) -> None:
    url = env["DATABASE_URL"]
    run_sql(url, *DESTRUCTIVE)
    code, refused = guard_json("drift", "repair", "--apply", "--no-backup", env=env)
    assert code == 1 and refused["ok"] is False, refused
    assert sorted(s["destructive"].split(" ", 2)[1] for s in refused["refused"]) == [
        "column",
        "public.ads.status",
        "table",
    ]
    assert "would drop data" in refused["error"]
    assert one(url, "SELECT count(*) FROM hotfix_notes") == 1  # nothing ran, not even the safe steps
    code, result = guard_json("drift", "repair", "--apply", "--no-backup", "--allow-destructive", env=env)
    assert code == 0 and result["drift"]["ok"], result
    assert one(url, "SELECT to_regclass('hotfix_notes')") is None


def test_an_edited_script_is_applied_and_checked_like_guards_own(env: dict[str, str], tmp_path: Path) -> None:
    url = env["DATABASE_URL"]
    run_sql(url, 'ALTER TABLE "categories" DROP COLUMN "form_template"', *DESTRUCTIVE[:2])
    printed = guard("drift", "sql", env=env)
    assert printed.returncode == 1 and 'DROP TABLE IF EXISTS "public"."hotfix_notes";' in printed.stdout
    edited = tmp_path / "repair.sql"  # the operator keeps the hotfix table and adds a comment
    edited.write_text(
        printed.stdout.replace('DROP TABLE IF EXISTS "public"."hotfix_notes";', "-- keep hotfix_notes;")
    )
    code, result = guard_json("drift", "repair", "--script", str(edited), "--apply", "--no-backup", env=env)
    assert code == 1 and result["failure"] is None, result  # drift remains: the table the operator kept
    assert [(f["kind"], f["subject"]) for f in result["drift"]["findings"]] == [
        ("table_extra", "table:hotfix_notes")
    ]
    assert one(url, "SELECT count(*) FROM hotfix_notes") == 1
    edited.write_text('ALTER TABLE "ads" DROP COLUMN "title";\n')  # an edit that drops data is refused too
    code, refused = guard_json("drift", "repair", "--script", str(edited), "--apply", "--no-backup", env=env)
    assert code == 1 and refused["refused"][0]["destructive"] == "drops column ads.title with its values"


@pytest.mark.parametrize(
    ("text", "says"),
    [
        (
            "BEGIN;\nALTER TABLE ads ADD COLUMN x int;\nCOMMIT;\n",
            "statement 1 (BEGIN): remove transaction control",
        ),
        ("ALTER TABLE ads ADD COLUMNN x int;\n", "cannot parse"),
        (None, "cannot read"),
    ],
)
def test_a_script_guard_cannot_run_is_one_line_and_exit_2(
    env: dict[str, str], tmp_path: Path, text: str | None, says: str
) -> None:
    script = tmp_path / "edited.sql"
    if text is not None:
        script.write_text(text)
    done = guard("drift", "repair", "--script", str(script), "--apply", "--no-backup", env=env)
    assert done.returncode == 2 and says in done.stderr and len(done.stderr.splitlines()) == 1, done.stderr
    assert drift(env) == set()
