from __future__ import annotations

import os
import pty
import subprocess
import sys
from pathlib import Path

import pytest

from tests.acceptance.cli import GUARD, MIGRATIONS_DIR, ROOT, guard, guard_json, read_pty
from tests.conftest import url_for

pytestmark = pytest.mark.acceptance


def one_line(text: str) -> str:
    lines = text.strip().splitlines()
    assert len(lines) == 1, text
    assert "Traceback" not in text
    return lines[0]


def test_check_all_without_migrations_dir_names_it(template_db: str, tmp_path: Path) -> None:
    done = guard("check", "all", env={"DATABASE_URL": url_for(template_db), "UPLOADS_ROOT": str(tmp_path)})
    assert done.returncode == 2
    assert "MIGRATIONS_DIR" in one_line(done.stderr)


def test_missing_database_url_is_a_configuration_error() -> None:
    done = guard("check", "integrity")
    assert done.returncode == 2
    assert "DATABASE_URL is not set" in one_line(done.stderr)


def test_unreachable_database_exits_3_without_the_password(tmp_path: Path) -> None:
    env = {
        "DATABASE_URL": "postgresql://app:hunter2@127.0.0.1:1/nowhere",
        "UPLOADS_ROOT": str(tmp_path),
        "MIGRATIONS_DIR": MIGRATIONS_DIR,
    }
    done = guard("check", "integrity", env=env)
    assert done.returncode == 3
    line = one_line(done.stderr)
    assert "cannot reach" in line and "hunter2" not in line
    code, document = guard_json("check", "all", env=env)
    assert code == 3 and document["ok"] is False
    assert "hunter2" not in str(document)


def test_missing_uploads_root_exits_3(template_db: str, tmp_path: Path) -> None:
    env = {"DATABASE_URL": url_for(template_db), "UPLOADS_ROOT": str(tmp_path / "absent")}
    code, document = guard_json("check", "files", env=env)
    assert code == 3
    assert "uploads root" in document["checks"][0]["error"]


def test_unknown_config_key_exits_2_naming_it(tmp_path: Path) -> None:
    config = tmp_path / "guard.toml"
    config.write_text('databse_url = "x"\n')
    done = guard("--config", str(config), "check", "all")
    assert done.returncode == 2
    assert "unknown key 'databse_url'" in one_line(done.stderr)


def test_bad_rule_in_json_mode_still_prints_one_object(template_db: str, tmp_path: Path) -> None:
    config = tmp_path / "guard.toml"
    config.write_text('[rules."ads.slug.format"]\npattern = "(["\n')
    code, document = guard_json(
        "--config", str(config), "check", "integrity", env={"DATABASE_URL": url_for(template_db)}
    )
    assert code == 2
    assert document["ok"] is False and "ads.slug.format" in document["error"]


def test_usage_errors_exit_2() -> None:
    assert guard("check", "everything").returncode == 2
    assert guard("check", "--limit", "-1").returncode == 2


def test_help_explains_exit_codes() -> None:
    done = guard("check", "--help")
    assert done.returncode == 0
    assert "3  the database or a folder cannot be reached" in done.stdout


def test_predeploy_runs_commands_and_fails_on_any(template_db: str, tmp_path: Path) -> None:
    env = {
        "DATABASE_URL": url_for(template_db),
        "UPLOADS_ROOT": str(tmp_path),
        "MIGRATIONS_DIR": MIGRATIONS_DIR,
    }
    (tmp_path / "uploads" / "ads").mkdir(parents=True)
    code, document = guard_json("predeploy", "--run", "true", env=env)
    assert code == 0 and document["ok"] is True
    code, document = guard_json("predeploy", "--run", "echo from-app-tests", "--run", "exit 4", env=env)
    assert code == 1
    failed = [c for c in document["checks"] if not c["ok"]]
    assert [c["name"] for c in failed] == ["run: exit 4"]
    assert failed[0]["info"]["exit_code"] == 4


def test_progress_bars_only_on_a_terminal(template_db: str, tmp_path: Path) -> None:
    (tmp_path / "uploads" / "ads").mkdir(parents=True)
    env = {**os.environ, "DATABASE_URL": url_for(template_db), "UPLOADS_ROOT": str(tmp_path)}
    piped = subprocess.run([*GUARD, "check", "files"], env=env, capture_output=True, text=True, cwd=ROOT)
    assert "\r" not in piped.stderr
    leader, follower = pty.openpty()
    proc = subprocess.Popen(
        [*GUARD, "check", "files"],
        env=env,
        cwd=ROOT,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=follower,
    )
    os.close(follower)
    drawn = read_pty(leader)
    proc.wait(timeout=60)
    os.close(leader)
    assert b"\r" in drawn, "a terminal gets a progress line"
    assert sys.platform.startswith("linux")


def test_constraints_help_names_every_state_and_gives_examples_and_exit_codes() -> None:
    group = guard("constraints", "--help")
    assert group.returncode == 0
    assert "guard constraints plan --json" in group.stdout
    assert "guard constraints migrate --migrations-dir prisma/migrations" in group.stdout
    assert "exit codes: 0" in group.stdout
    plan = guard("constraints", "plan", "--help")
    assert "(missing, not_valid, valid, invalid: an index a failed concurrent build left)" in plan.stdout
