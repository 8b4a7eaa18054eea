"""A backup belongs to its database: a restore target's safety backup never stands in for production."""

from __future__ import annotations

import os
import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest

from guard.backup.repo.repository import Repository
from guard.db import servers as server
from guard.demo.world import build_world
from tests.acceptance.cli import guard, guard_json

pytestmark = pytest.mark.acceptance

SERVER_URL = os.environ.get("GUARD_TEST_SERVER_URL", "postgresql://postgres@127.0.0.1:5432/postgres")


@pytest.fixture
def worlds(tmp_path: Path) -> Iterator[tuple[dict[str, str], str, Path]]:
    """Production (the configured database) and a second database X with its own uploads folder."""
    made: list[tuple[str, Path]] = []
    urls = []
    for tag in ("prod", "x"):
        name = f"guard_test_src{tag}_{uuid.uuid4().hex[:10]}"
        root = tmp_path / f"{tag}-uploads"
        urls.append(str(build_world(SERVER_URL, name, root, 40, 0.0)["database_url"]))
        made.append((name, root))
    env = {"DATABASE_URL": urls[0], "UPLOADS_ROOT": str(made[0][1]), "BACKUP_DIR": str(tmp_path / "bk")}
    try:
        yield env, made[1][0], made[1][1]
    finally:
        # Not drop_world: the forced restore replaced X, mark included. These names are ours alone.
        with psycopg.connect(SERVER_URL, autocommit=True) as conn:
            for name, root in made:
                conn.execute(server.drop_database(name))
                shutil.rmtree(root, ignore_errors=True)


def listed(env: dict[str, str]) -> dict[str, dict[str, Any]]:
    code, document = guard_json("backup", "list", env=env)
    assert code == 0, document
    return {row["id"]: row for row in document["backups"]}


def test_after_a_forced_restore_elsewhere_drill_files_and_prune_stay_on_production(
    worlds: tuple[dict[str, str], str, Path],
) -> None:
    env, x_name, x_root = worlds
    prod_root = Path(env["UPLOADS_ROOT"])
    code, made = guard_json("backup", env=env)
    assert code == 0, made
    prod_id = made["id"]
    repo = Repository.open(Path(env["BACKUP_DIR"]), create=False)
    victim = next(f for f in repo.load(prod_id).files if f.path.startswith("uploads/ads/"))
    original = (prod_root / victim.path).read_bytes()
    (x_root / victim.path).write_bytes(b"X's own picture at the same path")  # X's safety backup holds it

    done = guard(
        "restore", prod_id, "--target-db", x_name, "--uploads-dir", str(x_root), "--force", "--yes", env=env
    )
    assert done.returncode in (0, 1), done.stderr
    rows = listed(env)
    (safety_id,) = set(rows) - {prod_id}
    assert rows[prod_id]["purpose"] == "backup" and rows[safety_id]["purpose"] == "pre-restore-safety"
    prod_db = env["DATABASE_URL"].rsplit("/", 1)[1]
    assert rows[prod_id]["source"]["database"] == prod_db
    assert rows[safety_id]["source"]["database"] == x_name
    assert rows[prod_id]["source"]["system_identifier"] == rows[safety_id]["source"]["system_identifier"]
    assert rows[prod_id]["source"]["oid"] != rows[safety_id]["source"]["oid"]

    code, drill = guard_json("restore", "drill", env=env)
    assert drill["backup"] == prod_id, drill
    assert code == 0, drill

    (prod_root / victim.path).unlink()
    code, recovered = guard_json("restore", "files", "--missing", env=env)
    back = next(f for f in recovered["files"] if f["path"] == victim.path)
    assert back == {"subject": back["subject"], "path": victim.path, "outcome": "restored", "backup": prod_id}
    assert (prod_root / victim.path).read_bytes() == original

    code, pruned = guard_json(
        "backup", "prune", "--keep-daily", "1", "--keep-weekly", "0", "--keep-monthly", "0", env=env
    )
    assert code == 0, pruned
    assert pruned["removed"] == []
    assert set(listed(env)) == {prod_id, safety_id}  # production's survives; X's is not ours to prune


def test_source_flags_that_cannot_apply_are_usage_errors_in_one_line(tmp_path: Path) -> None:
    env = {"BACKUP_DIR": str(tmp_path / "bk")}
    cases = [
        (("backup", "prune", "--source", "shop@not-a-number"), "--source"),
        (("restore", "20250101T020000Z-1a2b3c", "--source", "shop"), "--source goes with"),
        (("backup", "prune", "--keep-daily", "1"), "DATABASE_URL is not set: prune needs it"),
    ]
    for args, message in cases:
        done = guard(*args, env=env)
        assert done.returncode == 2, done.stderr
        assert done.stderr.count("\n") == 1 and message in done.stderr, done.stderr
    both = guard("backup", "prune", "--source", "shop", "--all-sources", env=env)
    assert both.returncode == 2 and "not allowed with" in both.stderr
