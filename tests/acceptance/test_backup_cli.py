"""The real `guard backup` / `guard restore` commands, including kill -9 at several points of a backup."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from guard.backup.repo.manifest import inflated
from guard.demo.world import build_world, drop_world
from tests.acceptance.cli import guard, guard_json

pytestmark = pytest.mark.acceptance

SERVER_URL = os.environ.get("GUARD_TEST_SERVER_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
KILL_POINTS = ("snapshot", "objects:2", "pack", "dump", "manifest")


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    """A small demo world with a few distinct files, and the settings to back it up."""
    name = f"guard_test_bkcli_{uuid.uuid4().hex[:12]}"
    base = tmp_path_factory.mktemp("bkcli")
    truth = build_world(SERVER_URL, name, base / "uploads", 120, 0.02)
    for i in range(4):
        (base / "uploads" / "uploads" / "ads" / f"distinct-{i}.webp").write_bytes(f"pic {i}".encode())
    try:
        yield {
            "DATABASE_URL": str(truth["database_url"]),
            "UPLOADS_ROOT": str(base / "uploads"),
            "BACKUP_DIR": str(base / "backups"),
        }
    finally:
        drop_world(SERVER_URL, name, base / "uploads")


def listed(env: dict[str, str]) -> list[dict[str, Any]]:
    code, document = guard_json("backup", "list", env=env)
    assert code in (0, 1), document
    backups: list[dict[str, Any]] = document["backups"]
    return backups


@pytest.mark.parametrize("point", KILL_POINTS)
def test_a_backup_killed_at_any_point_publishes_nothing_and_the_next_one_works(
    env: dict[str, str], point: str
) -> None:
    before = listed(env) if Path(env["BACKUP_DIR"]).exists() else []
    for i in range(3):  # new content, so the backup has objects to write
        Path(env["UPLOADS_ROOT"], "uploads", "ads", f"{point}-{i}.webp").write_text(point + str(i))
    killed = guard("backup", env={**env, "GUARD_BACKUP_FAULT": f"kill:{point}"})
    assert killed.returncode == -9, killed.stderr
    assert listed(env) == before
    done = guard("backup", "--json", env=env)
    assert done.returncode == 1, done.stderr  # the world has planted missing files
    after = listed(env)
    assert len(after) == len(before) + 1 and all(b["complete"] for b in after)
    assert list((Path(env["BACKUP_DIR"]) / "tmp").iterdir()) == []
    packs = Path(env["BACKUP_DIR"]) / "packs"
    assert {p.stem for p in packs.glob("*.pack")} == {p.stem for p in packs.glob("*.idx")}


def test_a_prune_killed_while_rewriting_a_pack_loses_nothing_and_the_next_one_works(
    env: dict[str, str],
) -> None:
    for i in range(2):  # two backups a day apart in content: the older one's objects become garbage
        Path(env["UPLOADS_ROOT"], "uploads", "ads", "prune-me.webp").write_text(f"version {i}")
        assert guard("backup", env=env).returncode == 1  # the world has planted missing files
    killed = guard(
        "backup",
        "prune",
        "--keep-daily",
        "1",
        "--keep-weekly",
        "0",
        "--keep-monthly",
        "0",
        env={**env, "GUARD_BACKUP_FAULT": "kill:repacked"},
    )
    assert killed.returncode == -9, killed.stderr
    code, verified = guard_json("backup", "verify", "--read-data", env=env)
    assert code == 0, verified  # every remaining backup whole, the half-done rewrite notwithstanding
    done = guard("backup", "prune", "--keep-daily", "1", "--keep-weekly", "0", "--keep-monthly", "0", env=env)
    assert done.returncode == 0, done.stderr
    code, verified = guard_json("backup", "verify", "--read-data", env=env)
    assert code == 0, verified
    assert [b["complete"] for b in listed(env)] == [True]


def test_killed_right_after_publishing_the_backup_is_complete(env: dict[str, str]) -> None:
    before = len(listed(env)) if Path(env["BACKUP_DIR"]).exists() else 0
    killed = guard("backup", env={**env, "GUARD_BACKUP_FAULT": "kill:published"})
    assert killed.returncode == -9
    assert len(listed(env)) == before + 1
    code, verdict = guard_json("backup", "verify", "--read-data", env=env)
    assert code == 0 and verdict["ok"], verdict


def test_backup_json_names_each_missing_file_as_a_finding(env: dict[str, str]) -> None:
    code, document = guard_json("backup", env=env)
    assert code == 1 and document["consistent"] is False
    kinds = {f["kind"] for f in document["findings"]}
    assert kinds == {"missing_at_backup"}
    assert document["counts"]["missing"] == len(document["findings"])
    stored = inflated(Path(document["manifest"]).read_bytes(), "test")  # one zstd frame of JSON
    assert b"password" not in stored and stored.startswith(b'{"checksum":')


def test_restore_drill_and_bad_id_from_the_command_line(env: dict[str, str]) -> None:
    guard("backup", env=env)
    code, drill = guard_json("restore", "drill", env=env)
    assert code == 0 and drill["ok"], drill
    bad = guard("restore", "../../etc", env=env)
    assert bad.returncode == 2 and bad.stderr.count("\n") == 1 and "not a backup id" in bad.stderr


def test_missing_backup_dir_setting_is_a_config_error(env: dict[str, str]) -> None:
    done = guard("backup", env={k: v for k, v in env.items() if k != "BACKUP_DIR"})
    assert done.returncode == 2 and "BACKUP_DIR is not set" in done.stderr
