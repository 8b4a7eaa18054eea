"""The real `guard` command against demo worlds: every count equals the generator's ground truth."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.acceptance.cli import MIGRATIONS_DIR, ROOT, guard, guard_json
from tests.conftest import drop_database, unique_name

pytestmark = pytest.mark.acceptance


@pytest.fixture
def make_world(tmp_path: Path) -> Iterator[Any]:
    made: list[str] = []

    def make(ads: int, bad: float, seed: int = 1) -> dict[str, Any]:
        name = unique_name("guard_accept")
        made.append(name)
        done = guard(
            "demo",
            "--ads",
            str(ads),
            "--bad",
            str(bad),
            "--seed",
            str(seed),
            "--db",
            name,
            "--uploads",
            str(tmp_path / name),
        )
        assert done.returncode == 0, done.stderr
        truth: dict[str, Any] = json.loads(done.stdout)
        return truth

    yield make
    for name in made:
        drop_database(name)


def env_for(truth: dict[str, Any]) -> dict[str, str]:
    return {
        "DATABASE_URL": truth["database_url"],
        "UPLOADS_ROOT": truth["uploads_root"],
        "MIGRATIONS_DIR": MIGRATIONS_DIR,
    }


@pytest.mark.parametrize(("ads", "bad", "seed"), [(400, 0.05, 1), (1500, 0.01, 7), (250, 0.2, 3)])
def test_every_count_matches_the_ground_truth(make_world: Any, ads: int, bad: float, seed: int) -> None:
    truth = make_world(ads, bad, seed)
    code, document = guard_json("check", "all", "--limit", "3", env=env_for(truth))
    assert code == 1
    counts = {check["name"]: check["counts"] for check in document["checks"]}
    assert counts["integrity"] == truth["integrity"]
    assert counts["files"] == truth["files_check"]
    assert counts["health"] == {"database_unreachable": 0, "uploads_unreadable": 0}
    assert not any(counts["migrations"].values()), "the demo records its migrations as Prisma does"
    assert not any(counts["drift"].values()), "the demo's schema is exactly its migrations'"
    for check in document["checks"]:
        for kind in check["counts"]:
            assert len([f for f in check["findings"] if f["kind"] == kind]) <= 3


def test_a_clean_world_passes_and_predeploy_says_so(make_world: Any) -> None:
    truth = make_world(300, 0.0)
    env = env_for(truth)
    code, document = guard_json("check", "all", env=env)
    assert (code, document["ok"]) == (0, True)
    done = guard("predeploy", "--run", "true", env=env)
    assert done.returncode == 0
    assert "PASSED" in done.stdout


def test_hostile_and_odd_paths_are_reported_as_planted(make_world: Any) -> None:
    truth = make_world(600, 0.05, 11)
    code, document = guard_json("check", "files", "--limit", "1000", env=env_for(truth))
    findings = document["checks"][0]["findings"]
    unsafe = {f["path"] for f in findings if f["kind"] == "unsafe_path"}
    assert any(p.startswith("/") for p in unsafe)
    assert any(".." in p.split("/") for p in unsafe)
    assert any("\\" in p for p in unsafe)
    assert any(not (p.startswith("/") or ".." in p or "\\" in p) for p in unsafe), "a symlink escape"
    odd = [
        f["path"]
        for f in findings
        if f["kind"] in ("missing_file", "orphan_file")
        if any(ch in f["path"] for ch in " '\"\n\t") or not f["path"].isascii()
    ]
    assert odd, "odd names appear among the planted missing and orphan files"


# The real command on an install where the C extension was not built: its import fails, as it does
# when setup.py's optional extension could not be compiled.
WITHOUT_EXTENSION = (
    "import sys; sys.modules['guard.fs._pathsets'] = None; "
    "from guard.fs import pathsets; assert pathsets.implementation() == 'python'; "
    "from guard.cli.main import main; sys.exit(main(sys.argv[1:]))"
)


def test_without_the_compiled_extension_the_files_check_finds_exactly_the_same(make_world: Any) -> None:
    truth = make_world(600, 0.05, 11)
    env = env_for(truth)
    code, compiled = guard_json("check", "files", "--limit", "1000", env=env)
    python = subprocess.run(
        [sys.executable, "-c", WITHOUT_EXTENSION, "check", "files", "--json", "--limit", "1000"],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=300,
        cwd=ROOT,
        check=False,
    )
    assert python.returncode == code == 1, python.stderr
    fallback = json.loads(python.stdout)["checks"][0]
    assert fallback["counts"] == compiled["checks"][0]["counts"] == truth["files_check"]
    assert fallback["findings"] == compiled["checks"][0]["findings"]


def test_human_output_summarises_and_limits_examples(make_world: Any) -> None:
    truth = make_world(400, 0.05)
    done = guard("check", "all", "--limit", "2", env=env_for(truth))
    assert done.returncode == 1
    lines = done.stdout.splitlines()
    assert lines[0].split() == ["CHECK", "RESULT", "FOUND", "TIME"]
    missing = truth["files_check"]["missing_file"]
    assert any(line.split() == ["missing_file", f"{missing:,}"] for line in lines)
    examples = [line for line in lines if line.split()[:1] == ["missing_file"] and "ad_images:" in line]
    assert len(examples) == 2


def test_examples_are_grouped_by_kind(make_world: Any) -> None:
    truth = make_world(400, 0.05)
    done = guard("check", "integrity", "--limit", "3", env=env_for(truth))
    assert done.returncode == 1
    lines = done.stdout.splitlines()
    start = lines.index("integrity: examples") + 2  # past the heading and the KIND SUBJECT MESSAGE header
    kinds = [line.split()[0] for line in lines[start:] if line.strip()]
    blocks = [kind for i, kind in enumerate(kinds) if i == 0 or kinds[i - 1] != kind]
    assert len(kinds) > len(set(kinds)) > 1, kinds
    assert len(blocks) == len(set(blocks)), kinds
