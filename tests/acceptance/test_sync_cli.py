"""The real `guard install`, `guard findings` and `guard uninstall` commands."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from guard.database import Database
from guard.settings import Settings
from guard.sync import process_rows

pytestmark = pytest.mark.acceptance
GUARD = [str(Path(sys.executable).parent / "guard")]


def guard(db_url: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "DATABASE_URL": db_url}
    env.pop("GUARD_CONFIG", None)
    return subprocess.run([*GUARD, *args], env=env, capture_output=True, text=True, timeout=60)


def test_install_findings_and_uninstall(db_url: str) -> None:
    assert guard(db_url, "findings").returncode == 2  # not installed yet: one line, exit 2
    done = guard(db_url, "install", "--json")
    assert done.returncode == 0 and json.loads(done.stdout)["tables"] == ["ad_images", "ads", "categories"]
    assert guard(db_url, "install").returncode == 0
    with Database(db_url) as db:
        db.execute("INSERT INTO users (id, email) VALUES (1, 'a@example.com')")
        db.execute("INSERT INTO categories (id, name, slug) VALUES (1, 'Cars', 'cars')")
        db.execute("INSERT INTO ads (id, title, slug, category_id, user_id) VALUES (1, 't', 'Bad', 1, 1)")
    process_rows(Settings(database_url=db_url), "ads", ["1"])
    listed = guard(db_url, "findings", "--open", "--json")
    assert listed.returncode == 1
    document = json.loads(listed.stdout)
    assert document["open"] == 1 and document["findings"][0]["subject"] == "ads:1"
    human = guard(db_url, "findings")
    assert "ads.slug.format" in human.stdout and "1 open, 0 resolved" in human.stdout
    gone = guard(db_url, "uninstall")
    assert gone.returncode == 0 and "ad_images, ads, categories" in gone.stdout
