"""guard's own objects are never drift: with the full capture installed every check stays clean."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from guard.config.settings import Settings
from guard.continuous.process import run_sweep
from guard.db.database import Database
from tests.acceptance.cli import MIGRATIONS_DIR, guard

pytestmark = pytest.mark.acceptance


def _about_guard(finding: dict[str, object]) -> bool:
    text = json.dumps(finding)
    return "guard_capture" in text or '"guard"' in text or "guard." in text


def test_every_check_with_the_capture_installed_finds_nothing_about_guard(
    db_url: str, tmp_path: Path
) -> None:
    (tmp_path / "uploads" / "ads").mkdir(parents=True)
    env = {"DATABASE_URL": db_url, "UPLOADS_ROOT": str(tmp_path), "MIGRATIONS_DIR": MIGRATIONS_DIR}
    installed = guard("install", "--json", env=env)
    assert installed.returncode == 0, installed.stderr
    assert len(json.loads(installed.stdout)["tables"]) == 3  # nine capture triggers

    checked = guard("check", "all", "--json", "--limit", "1000", env=env)
    document = json.loads(checked.stdout)
    ran = {check["name"]: check.get("error") for check in document["checks"]}
    assert ran == dict.fromkeys(("health", "integrity", "files", "migrations", "drift")), ran
    findings = [f for check in document["checks"] for f in check["findings"]]
    assert [f for f in findings if _about_guard(f)] == []
    assert checked.returncode == 0, findings

    gate = guard("predeploy", env=env)
    assert gate.returncode == 0, gate.stdout + gate.stderr
    assert "PASSED" in gate.stdout

    repair = guard("drift", "sql", env=env)
    assert repair.returncode == 0, repair.stdout + repair.stderr
    assert "guard_capture" not in repair.stdout and "DROP TRIGGER" not in repair.stdout


def test_an_app_trigger_named_like_guards_is_still_drift(db_url: str, tmp_path: Path) -> None:
    env = {"DATABASE_URL": db_url, "UPLOADS_ROOT": str(tmp_path), "MIGRATIONS_DIR": MIGRATIONS_DIR}
    assert guard("install", env=env).returncode == 0
    with Database(db_url) as db:
        db.execute(
            'CREATE FUNCTION "app_touch"() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN RETURN NEW; END $$;'
            'CREATE TRIGGER "guard_capture_insert" AFTER INSERT ON "users" '
            'FOR EACH ROW EXECUTE FUNCTION "app_touch"()'
        )
    checked = guard("check", "drift", "--json", env=env)
    subjects = {f["subject"] for check in json.loads(checked.stdout)["checks"] for f in check["findings"]}
    assert checked.returncode == 1
    assert any("guard_capture_insert" in s for s in subjects), subjects
    assert not any("ads" in s for s in subjects), subjects


def test_the_daily_drift_sweep_opens_no_finding_about_guard(db_url: str) -> None:
    settings = Settings(database_url=db_url, migrations_dir=Path(MIGRATIONS_DIR))
    assert guard("install", env={"DATABASE_URL": db_url}).returncode == 0
    changes = run_sweep(settings, "drift")
    with Database(db_url) as db:
        open_drift = db.fetch_all("SELECT subject FROM guard.findings WHERE check_name = 'drift'")
    assert (changes.opened, open_drift) == (0, [])
