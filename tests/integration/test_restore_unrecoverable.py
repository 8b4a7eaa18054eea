"""`guard restore files --missing --unrecoverable FILE`: rows no backup can help are listed, never deleted."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

from guard.db.database import Database
from tests.acceptance.cli import guard
from tests.integration.repair_support import env_for, populate, uploads

pytestmark = pytest.mark.integration


@pytest.mark.parametrize("suffix", [".csv", ".json"])
def test_rows_no_backup_can_help_are_listed_and_kept(
    db: Database, db_url: str, tmp_path: Path, suffix: str
) -> None:
    populate(db)
    root = uploads(tmp_path, db, orphans=0)
    db.execute(
        "INSERT INTO ad_images (id, ad_id, filename, file_path) VALUES (50, 2, 'n', 'uploads/ads/never.webp')"
    )
    env = env_for(db_url, root, tmp_path / "backups")
    assert guard("backup", env=env).returncode == 1  # never.webp was already missing at backup time
    (root / "uploads/ads/kept.webp").unlink()
    listing = tmp_path / f"unrecoverable{suffix}"
    done = guard("restore", "files", "--missing", "--unrecoverable", str(listing), env=env)
    assert done.returncode == 1, done.stderr
    assert (root / "uploads/ads/kept.webp").read_bytes() == b"kept"
    if suffix == ".csv":
        with listing.open() as f:
            rows = list(csv.DictReader(f))
    else:
        rows = json.loads(listing.read_text())
    assert rows == [{"subject": "ad_images:50", "path": "uploads/ads/never.webp", "outcome": "in no backup"}]
    assert db.fetch_one("SELECT count(*) FROM ad_images WHERE id = 50") == (1,)


def test_an_unknown_extension_is_refused_before_any_work(db_url: str, tmp_path: Path) -> None:
    done = guard(
        "restore", "files", "--missing", "--unrecoverable", str(tmp_path / "x.txt"), env=env_for(db_url)
    )
    assert done.returncode == 2 and "must end in .csv or .json" in done.stderr
