"""`guard install` runs a first full sweep: the problems already in the data are open at once."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from guard.db.database import Database
from guard.demo.world import build_world, drop_world

pytestmark = pytest.mark.acceptance

SERVER_URL = os.environ.get("GUARD_TEST_SERVER_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
GUARD = str(Path(sys.executable).parent / "guard")


@pytest.fixture
def world(tmp_path: Path) -> Iterator[dict[str, Any]]:
    name = f"guard_test_firstsweep_{uuid.uuid4().hex[:12]}"
    root = tmp_path / "uploads"
    try:
        yield build_world(SERVER_URL, name, root, 200, 0.1, seed=3)
    finally:
        drop_world(SERVER_URL, name, root)


def guard(world: dict[str, Any], *args: str) -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        "DATABASE_URL": world["database_url"],
        "UPLOADS_ROOT": world["uploads_root"],
    }
    for name in ("GUARD_CONFIG", "MIGRATIONS_DIR"):
        env.pop(name, None)
    return subprocess.run([GUARD, *args], env=env, capture_output=True, text=True, timeout=300)


def open_by_check(world: dict[str, Any]) -> dict[str, int]:
    with Database(world["database_url"]) as db:
        rows = db.fetch_all(
            "SELECT check_name, count(*) FROM guard.findings WHERE resolved_at IS NULL GROUP BY 1"
        )
    return {str(r[0]): int(r[1]) for r in rows}


def test_install_sweeps_at_once_so_the_planted_problems_are_open(world: dict[str, Any]) -> None:
    done = guard(world, "install")
    assert done.returncode == 0, done.stderr
    assert "first sweep: integrity ... opened" in done.stdout
    assert "first sweep: files ... opened" in done.stdout
    found = open_by_check(world)  # every planted incident (the world's ground truth), none waiting
    planted = {"integrity": sum(world["integrity"].values()), "files": sum(world["files_check"].values())}
    assert found == planted
    assert f"{sum(found.values())} findings open after the first sweep" in done.stdout
    assert "skipped migrations, drift: not configured" in done.stdout

    status = guard(world, "status", "--json")  # no processes run, and the findings are open
    assert status.returncode == 3
    assert json.loads(status.stdout)["open_findings"] == found


def test_no_sweep_installs_only_and_json_says_what_the_sweep_found(world: dict[str, Any]) -> None:
    bare = guard(world, "install", "--no-sweep", "--json")
    assert bare.returncode == 0, bare.stderr
    assert json.loads(bare.stdout)["first_sweep"] is None and open_by_check(world) == {}
    again = guard(world, "install", "--json")
    assert again.returncode == 0, again.stderr
    swept = json.loads(again.stdout)["first_sweep"]
    assert swept["open"] == sum(open_by_check(world).values()) > 0
    assert set(swept["sweeps"]) == {"integrity", "files"} and swept["skipped"] == ["migrations", "drift"]


def test_install_names_a_unique_rule_without_an_index_until_the_app_has_one(world: dict[str, Any]) -> None:
    # the reference schema has no index on ads.slug nor on ad_images.file_path: every keyed check of
    # ads, and every check of a file row's change, scans the table
    plain = guard(world, "install", "--no-sweep")
    assert plain.returncode == 0, plain.stderr
    notes = [line for line in plain.stdout.splitlines() if line.startswith("guard: note:")]
    assert len(notes) == 2 and notes[0].startswith("guard: note: ads.slug has no index"), plain.stdout
    assert notes[1].startswith("guard: note: ad_images.file_path has no index"), plain.stdout
    as_json = json.loads(guard(world, "install", "--no-sweep", "--json").stdout)
    assert [u["column"] for u in as_json["unindexed_unique"]] == ["slug"]
    with Database(world["database_url"]) as db:  # a BRIN or another collation's index finds no slug
        db.execute("CREATE INDEX ads_slug_brin ON ads USING brin (slug)")
        db.execute('CREATE INDEX ads_slug_c ON ads (slug COLLATE "C")')
    still = guard(world, "install", "--no-sweep")
    assert still.returncode == 0 and "guard: note: ads.slug has no index" in still.stdout, still.stdout
    assert as_json["unindexed_file_column"] == {"table": "ad_images", "column": "file_path"}
    with Database(world["database_url"]) as db:
        db.execute("CREATE INDEX ads_slug_lookup ON ads (slug)")
        db.execute("CREATE INDEX ad_images_path_lookup ON ad_images (file_path)")
    indexed = guard(world, "install", "--no-sweep")
    assert indexed.returncode == 0 and "guard: note:" not in indexed.stdout, indexed.stdout
    as_json = json.loads(guard(world, "install", "--no-sweep", "--json").stdout)
    assert as_json["unindexed_unique"] == [] and as_json["unindexed_file_column"] is None
