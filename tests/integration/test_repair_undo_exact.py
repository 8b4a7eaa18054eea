"""`guard repair undo` of orphans is exact or nothing: a partial undo is finished by the next one, and a
path edited in the ledger is never followed."""

from __future__ import annotations

import errno
import os
from pathlib import Path

import pytest

from guard.db.database import Database
from guard.repair import journal, orphans
from guard.repair.reversal import UndoRefused, undo_run
from tests.acceptance.cli import guard
from tests.integration.repair_support import env_for, populate, settings_for, uploads
from tests.integration.test_repair_orphans import ORPHANS, digest, quarantine_run

pytestmark = pytest.mark.integration


def failing_once(monkeypatch: pytest.MonkeyPatch, name: str) -> None:
    """The disk refuses putting `name` back (ENOSPC) on the first undo only: a real move otherwise."""
    real = orphans.move_file
    failed: list[str] = []

    def move(src: int, src_name: str, dst: int, dst_name: str) -> object:
        if dst_name == name and not failed:
            failed.append(name)
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real(src, src_name, dst, dst_name)

    monkeypatch.setattr(orphans, "move_file", move)


def test_an_orphan_undo_that_could_not_put_every_file_back_is_not_marked_and_a_second_finishes(
    db: Database, db_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    populate(db)
    root = uploads(tmp_path, db)
    sums = {p: digest(root / p) for p in ORPHANS}
    run_id, _ = quarantine_run(db, db_url, root, tmp_path / "q")
    failing_once(monkeypatch, "orphan-1.webp")
    with pytest.raises(UndoRefused, match=r"still in quarantine.*uploads/ads/orphan-1\.webp"):
        undo_run(settings_for(db_url, root), run_id)
    assert journal.find_run(db, run_id).undone_at is None
    assert (tmp_path / "q" / run_id / ORPHANS[1]).exists() and not (root / ORPHANS[1]).exists()
    assert (root / ORPHANS[0]).exists() and (root / ORPHANS[2]).exists()
    undone = undo_run(settings_for(db_url, root), run_id)  # the files already back count as done
    assert undone.reverted == 3 and not undone.failed
    assert {p: digest(root / p) for p in ORPHANS} == sums
    assert not any((tmp_path / "q" / run_id / p).exists() for p in ORPHANS)
    assert journal.find_run(db, run_id).undone_at is not None


def test_a_file_back_at_its_path_with_other_content_is_not_counted_as_done(
    db: Database, db_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    populate(db)
    root = uploads(tmp_path, db)
    run_id, _ = quarantine_run(db, db_url, root, tmp_path / "q")
    failing_once(monkeypatch, "orphan-1.webp")
    with pytest.raises(UndoRefused):
        undo_run(settings_for(db_url, root), run_id)
    (root / ORPHANS[0]).write_bytes(b"the app wrote a new file under the old name")
    with pytest.raises(UndoRefused, match=r"orphan-0\.webp"):
        undo_run(settings_for(db_url, root), run_id)
    assert (tmp_path / "q" / run_id / ORPHANS[1]).exists()
    assert journal.find_run(db, run_id).undone_at is None


def test_an_undo_the_command_could_not_finish_exits_1_naming_the_files_left(
    db: Database, db_url: str, tmp_path: Path
) -> None:
    populate(db)
    root = uploads(tmp_path, db)
    run_id, _ = quarantine_run(db, db_url, root, tmp_path / "q")
    # Another folder of the same run whose way back a file now blocks: caught before anything moves.
    (tmp_path / "q" / run_id / "uploads/ads/sub").mkdir()
    os.rename(tmp_path / "q" / run_id / ORPHANS[2], tmp_path / "q" / run_id / "uploads/ads/sub/x.webp")
    db.execute(
        "UPDATE guard.repair_changes SET subject = 'file:uploads/ads/sub/x.webp',"
        " before = 'uploads/ads/sub/x.webp', after = %s WHERE before = %s",
        (f"{run_id}/uploads/ads/sub/x.webp", ORPHANS[2]),
    )
    (root / "uploads" / "ads" / "sub").write_bytes(b"a file where the folder was")
    done = guard("repair", "undo", run_id, env=env_for(db_url, root))
    assert done.returncode == 1 and "uploads/ads/sub/x.webp" in done.stderr, done.stderr
    assert not (root / ORPHANS[0]).exists()  # refused before anything moved
    assert journal.find_run(db, run_id).undone_at is None


@pytest.mark.parametrize("edited", ["../outside", "/tmp/outside", "uploads/../../outside", "a\\b"])
def test_a_path_edited_in_the_ledger_is_refused_by_name_and_never_followed(
    db: Database, db_url: str, tmp_path: Path, edited: str
) -> None:
    populate(db)
    root = uploads(tmp_path, db)
    run_id, _ = quarantine_run(db, db_url, root, tmp_path / "q")
    db.execute("UPDATE guard.repair_changes SET before = %s WHERE before = %s", (edited, ORPHANS[0]))
    with pytest.raises(UndoRefused, match="ledger") as refused:
        undo_run(settings_for(db_url, root), run_id)
    assert edited.replace("\\", "\\\\") in str(refused.value) or edited in str(refused.value)
    assert not (tmp_path / "outside").exists() and not Path("/tmp/outside").exists()
    assert all((tmp_path / "q" / run_id / p).exists() for p in ORPHANS)  # nothing moved
    assert journal.find_run(db, run_id).undone_at is None


def test_a_quarantine_path_edited_in_the_ledger_is_refused(db: Database, db_url: str, tmp_path: Path) -> None:
    populate(db)
    root = uploads(tmp_path, db)
    run_id, _ = quarantine_run(db, db_url, root, tmp_path / "q")
    (tmp_path / "secret").write_bytes(b"secret")
    db.execute(
        "UPDATE guard.repair_changes SET after = %s WHERE before = %s", (f"{run_id}/../../secret", ORPHANS[0])
    )
    with pytest.raises(UndoRefused, match="ledger"):
        undo_run(settings_for(db_url, root), run_id)
    assert (tmp_path / "secret").read_bytes() == b"secret" and not (root / ORPHANS[0]).exists()
