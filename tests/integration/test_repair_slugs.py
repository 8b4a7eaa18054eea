"""`guard repair slugs` on a real PostgreSQL: plan, apply, re-run, undo, refusals, redirects, the ledger."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

from guard.backup.repo.repository import Repository
from guard.checks import CheckContext, integrity
from guard.db.database import Database
from guard.errors import ConfigError, UsageError
from guard.repair import journal, slugs
from guard.repair.journal import Change
from guard.repair.reversal import UndoRefused, undo_run
from guard.repair.safeguard import backup_first
from tests.acceptance.cli import guard
from tests.integration.constraints_support import NOT_VALID_SQL, UNIQUE_SQL
from tests.integration.repair_support import ADS, env_for, populate, settings_for, slugs_of, uploads

pytestmark = pytest.mark.integration

EXPECTED = {
    1: "honda-city-1",
    2: "bikrima-honda-siti-2",
    3: "sofa-set-3",
    4: "yamaha-fz-4",
    5: "sofa-set-5",
    6: "new-sofa-6",
    7: "ad-7",
    8: "nepali-phone-9",
    9: "nepali-phone-9-2",
}


def apply_slugs(db: Database, db_url: str) -> str:
    settings = settings_for(db_url)
    planned = slugs.plan(db, settings)
    run_id = journal.open_run(db, slugs.KIND, None)
    slugs.apply(db, settings, planned, run_id, batch=2)
    return run_id


def slug_findings(db_url: str) -> int:
    result = integrity.run(CheckContext(settings_for(db_url), limit=None))
    return sum(1 for f in result.findings if f.kind.startswith("ads.slug."))


def test_the_plan_rewrites_exactly_the_slugs_that_break_a_rule_and_changes_nothing(
    db: Database, db_url: str
) -> None:
    populate(db)
    planned = slugs.plan(db, settings_for(db_url))
    assert {int(c.key): c.new for c in planned} == {k: v for k, v in EXPECTED.items() if k not in (1, 5, 8)}
    assert {int(c.key): c.reason for c in planned}[6] == "duplicate"
    assert slugs_of(db) == {k: s for k, _, s in ADS}


def test_apply_fixes_every_slug_records_before_and_after_and_a_rerun_changes_nothing(
    db: Database, db_url: str
) -> None:
    populate(db)
    run_id = apply_slugs(db, db_url)
    assert slugs_of(db) == EXPECTED
    assert slug_findings(db_url) == 0
    recorded = journal.changes_of(db, run_id)
    assert Change("ads:2", None, "bikrima-honda-siti-2") in recorded
    assert Change("ads:4", "Yamaha_FZ_4", "yamaha-fz-4") in recorded
    assert len(recorded) == 6
    assert slugs.plan(db, settings_for(db_url)) == []
    runs = journal.list_runs(db)
    assert [(r.id, r.changes, r.undone_at) for r in runs] == [(run_id, 6, None)]


def test_a_row_the_app_changed_after_the_plan_is_left_alone(db: Database, db_url: str) -> None:
    populate(db)
    settings = settings_for(db_url)
    planned = slugs.plan(db, settings)
    db.execute("UPDATE ads SET slug = 'fixed-by-app-4' WHERE id = 4")
    run_id = journal.open_run(db, slugs.KIND, None)
    done = slugs.apply(db, settings, planned, run_id)
    assert "4" not in {c.key for c in done}
    assert slugs_of(db)[4] == "fixed-by-app-4"
    assert "ads:4" not in {c.subject for c in journal.changes_of(db, run_id)}


def test_undo_puts_every_slug_back_and_marks_the_run(db: Database, db_url: str) -> None:
    populate(db)
    run_id = apply_slugs(db, db_url)
    undone = undo_run(settings_for(db_url), run_id)
    assert undone.reverted == 6
    assert slugs_of(db) == {k: s for k, _, s in ADS}
    assert journal.find_run(db, run_id).undone_at is not None


def test_undo_refuses_naming_the_row_changed_again_and_changes_nothing(db: Database, db_url: str) -> None:
    populate(db)
    run_id = apply_slugs(db, db_url)
    db.execute("UPDATE ads SET slug = 'edited-again-4' WHERE id = 4")
    with pytest.raises(UndoRefused, match="ads:4") as refused:
        undo_run(settings_for(db_url), run_id)
    assert "ads:2" not in str(refused.value)
    assert slugs_of(db) == {**EXPECTED, 4: "edited-again-4"}
    assert journal.find_run(db, run_id).undone_at is None


def test_a_run_recorded_as_statements_is_listed_and_not_undoable(db: Database, db_url: str) -> None:
    run_id = journal.record_run(
        db, "drift", "20260101T000000Z-abc", [Change("statement", None, "CREATE INDEX ...")], undoable=False
    )
    run = journal.find_run(db, run_id)
    assert (run.kind, run.changes, run.undoable) == ("drift", 1, False)
    with pytest.raises(UsageError, match="restore its backup 20260101T000000Z-abc"):
        undo_run(settings_for(db_url), run_id)


def test_the_ledger_is_created_on_demand_without_guard_install(db: Database) -> None:
    assert db.fetch_one("SELECT to_regclass('guard.repair_runs')") == (None,)
    assert journal.list_runs(db) == []
    journal.open_run(db, slugs.KIND, None)
    assert len(journal.list_runs(db)) == 1


def test_apply_refuses_without_backup_dir_and_changes_nothing(db: Database, db_url: str) -> None:
    populate(db)
    with pytest.raises(ConfigError, match="--no-backup"):
        backup_first(settings_for(db_url), no_backup=False)
    done = guard("repair", "slugs", "--apply", env=env_for(db_url))
    assert done.returncode == 2 and "BACKUP_DIR is not set" in done.stderr
    assert slugs_of(db) == {k: s for k, _, s in ADS}


def test_the_command_applies_with_no_backup_and_writes_redirects(
    db: Database, db_url: str, tmp_path: Path
) -> None:
    populate(db)
    redirects = tmp_path / "redirects.csv"
    plan = guard("repair", "slugs", "--json", env=env_for(db_url))
    assert plan.returncode == 1 and json.loads(plan.stdout)["count"] == 6
    done = guard(
        "repair", "slugs", "--apply", "--no-backup", "--redirects", str(redirects), env=env_for(db_url)
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines()[1].startswith("repair ") and "6 slugs rewritten" in done.stdout
    with redirects.open() as f:
        pairs = {(r["old"], r["new"], r["reason"]) for r in csv.DictReader(f)}
    # NULL and blank slugs were no link anyone could share: only malformed and duplicate ones redirect.
    assert pairs == {
        ("Yamaha_FZ_4", "yamaha-fz-4", "malformed"),
        ("bad slug", "ad-7", "malformed"),
        ("sofa-set-5", "new-sofa-6", "duplicate"),
    }
    again = guard("repair", "slugs", "--apply", "--no-backup", "--json", env=env_for(db_url))
    assert again.returncode == 0 and json.loads(again.stdout) == {
        "ok": True,
        "kind": "slugs",
        "applied": False,
        "count": 0,
        "changes": [],
    }
    listed = json.loads(guard("repair", "list", "--json", env=env_for(db_url)).stdout)
    assert [(r["kind"], r["changes"], r["undone"]) for r in listed["runs"]] == [("slugs", 6, False)]


def test_redirects_as_json(db: Database, db_url: str, tmp_path: Path) -> None:
    populate(db)
    redirects = tmp_path / "redirects.json"
    done = guard(
        "repair", "slugs", "--apply", "--no-backup", "--redirects", str(redirects), env=env_for(db_url)
    )
    assert done.returncode == 0, done.stderr
    rows = json.loads(redirects.read_text())
    assert {"old": "Yamaha_FZ_4", "new": "yamaha-fz-4", "id": "4", "reason": "malformed"} in rows


def test_apply_with_backup_dir_takes_a_backup_first_and_records_its_id(
    db: Database, db_url: str, tmp_path: Path
) -> None:
    populate(db)
    root = uploads(tmp_path, db, orphans=0)
    backups = tmp_path / "backups"
    done = guard("repair", "slugs", "--apply", "--json", env=env_for(db_url, root, backups))
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert result["backup_id"] in Repository.open(backups, create=False).ids()
    assert journal.find_run(db, result["repair_id"]).backup_id == result["backup_id"]


def test_a_row_the_app_writes_during_the_undo_is_left_as_written_and_named(db: Database, db_url: str) -> None:
    populate(db)
    run_id = apply_slugs(db, db_url)
    # The app's write between the undo's comparison and its batches: when ad 2 is put back, a
    # trigger writes ad 4, whose batch comes later (one row per batch).
    db.execute(
        "CREATE FUNCTION app_writes() RETURNS trigger LANGUAGE plpgsql AS "
        "$$BEGIN UPDATE ads SET slug = 'app-wrote-4' WHERE id = 4; RETURN NULL; END$$"
    )
    db.execute(
        "CREATE TRIGGER app_writes AFTER UPDATE ON ads FOR EACH ROW WHEN (NEW.id = 2)"
        " EXECUTE FUNCTION app_writes()"
    )
    outcome = slugs.undo(db, settings_for(db_url), run_id, journal.changes_of(db, run_id), batch=1)
    assert outcome.conflicts == [] and outcome.raced == ["ads:4"]
    assert slugs_of(db) == {**{k: s for k, _, s in ADS}, 4: "app-wrote-4"}


def test_a_slug_undo_the_constraints_refuse_after_a_committed_batch_re_applies_it(
    db: Database, db_url: str
) -> None:
    populate(db)
    run_id = apply_slugs(db, db_url)
    db.execute(UNIQUE_SQL)  # ad 6 going back to 'sofa-set-5' (ad 5's) is refused, in the second batch
    changes = journal.changes_of(db, run_id)
    assert [c.subject for c in changes][:2] == ["ads:2", "ads:3"]  # the first batch is accepted
    outcome = slugs.undo(db, settings_for(db_url), run_id, changes, batch=2)
    assert outcome.refused is not None
    assert "refused putting back ads:6 (guard_ads_slug_unique);" in outcome.refused  # the row, not its batch
    assert "no longer accepts the old values" in outcome.refused
    assert slugs_of(db) == EXPECTED
    assert journal.find_run(db, run_id).undone_at is None


def test_the_undo_command_refused_by_the_migrated_constraints_exits_1_and_changes_nothing(
    db: Database, db_url: str
) -> None:
    populate(db)
    run_id = apply_slugs(db, db_url)
    db.execute(NOT_VALID_SQL)
    done = guard("repair", "undo", run_id, env=env_for(db_url))
    assert done.returncode == 1, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "ads:2 (guard_ads_slug_required_not_null)" in lines[0], lines
    assert "ads:3 (guard_ads_slug_" in lines[0] and "ads:4 (guard_ads_slug_format)" in lines[0]
    assert "no longer accepts the old values" in lines[0]
    assert slugs_of(db) == EXPECTED
    assert journal.find_run(db, run_id).undone_at is None
