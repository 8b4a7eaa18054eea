"""Retention an operator can trust: `guard backup prune --dry-run` says what it would keep and remove,
and why, and changes not one byte; the keep counts come from KEEP_DAILY/WEEKLY/MONTHLY (the CLI's
defaults and beat's prune alike); `guard backup --json` says which walk it took."""

from __future__ import annotations

import json
import os
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

from guard.backup import run_backup, run_prune
from guard.backup.walk import statpage
from guard.continuous.capture import install
from guard.continuous.process import run_maintenance
from guard.db.database import Database
from tests.acceptance.cli import guard
from tests.integration.backup_support import World, make_world

pytestmark = pytest.mark.acceptance


@pytest.fixture
def world(tmp_path: Path) -> Iterator[World]:
    yield from make_world(tmp_path, ads=30, bad_rate=0.0)


def env_of(world: World, **extra: str) -> dict[str, str]:
    return {
        "DATABASE_URL": world.url,
        "UPLOADS_ROOT": str(world.root),
        "BACKUP_DIR": str(world.settings.backup_dir),
        **extra,
    }


def tree(root: Path) -> dict[str, tuple[int, bytes | str]]:
    """Every entry under root: its mode and its bytes (a link: its target), to compare byte for byte."""
    found: dict[str, tuple[int, bytes | str]] = {}
    for folder, dirs, files in os.walk(root):
        for name in dirs + files:
            path = Path(folder, name)
            mode = path.lstat().st_mode
            if stat.S_ISLNK(mode):
                found[str(path.relative_to(root))] = (mode, os.readlink(path))
            elif stat.S_ISREG(mode):
                found[str(path.relative_to(root))] = (mode, path.read_bytes())
            else:
                found[str(path.relative_to(root))] = (mode, "")
    return found


def three_backups(world: World) -> list[str]:
    """Three backups of one day; the first alone holds a file, deleted before the second."""
    ads = world.root / "uploads" / "ads"
    (ads / "only-in-the-first.webp").write_bytes(b"RIFF" + os.urandom(4096))
    ids = [run_backup(world.settings).id]
    (ads / "only-in-the-first.webp").unlink()
    ids += [run_backup(world.settings).id, run_backup(world.settings).id]
    return ids


def test_a_dry_run_names_what_it_keeps_and_removes_and_why_and_changes_nothing(world: World) -> None:
    first, second, newest = three_backups(world)
    repo = world.settings.backup_dir
    assert repo is not None
    (repo / "tmp" / "left-by-a-killed-run").write_bytes(b"a real prune would clear this")
    before = tree(repo)

    planned = run_prune(world.settings, keep_daily=1, keep_weekly=0, keep_monthly=0, dry_run=True)
    assert tree(repo) == before  # byte for byte, modes and the killed run's leftover included
    assert planned.dry_run and planned.ok
    assert planned.removed == [first, second]
    assert planned.kept == {newest: ["daily", "newest verified"]}
    assert planned.objects_removed >= 1 and planned.bytes_freed >= 4096  # the deleted file's object

    done = run_prune(world.settings, keep_daily=1, keep_weekly=0, keep_monthly=0)
    assert (done.removed, done.kept) == (planned.removed, planned.kept)
    assert (done.objects_removed, done.bytes_freed) == (planned.objects_removed, planned.bytes_freed)


def test_the_command_prints_the_plan_and_json_and_leaves_the_repository_as_it_was(world: World) -> None:
    first, second, newest = three_backups(world)
    repo = world.settings.backup_dir
    assert repo is not None
    before = tree(repo)
    env = env_of(world)
    rules = ("--keep-daily", "1", "--keep-weekly", "0", "--keep-monthly", "0")

    shown = guard("backup", "prune", "--dry-run", *rules, env=env)
    assert shown.returncode == 0, shown.stderr
    lines = shown.stdout.splitlines()
    assert lines[0] == "dry run (--keep-daily 1 --keep-weekly 0 --keep-monthly 0): nothing is removed"
    assert lines[1:4] == [
        f"remove  {first}  (no rule keeps it)",
        f"remove  {second}  (no rule keeps it)",
        f"keep    {newest}  (daily, newest verified)",
    ]
    assert lines[4].startswith("would delete ") and "freeing" in lines[4]

    answer = guard("backup", "prune", "--dry-run", *rules, "--json", env=env)
    assert answer.returncode == 0, answer.stderr
    document = json.loads(answer.stdout)
    assert document["dry_run"] is True and document["ok"] is True
    assert document["policy"] == {"keep_daily": 1, "keep_weekly": 0, "keep_monthly": 0}
    assert document["removed"] == [first, second]
    assert document["removed_why"] == {first: "no rule keeps it", second: "no rule keeps it"}
    assert document["kept"] == {newest: ["daily", "newest verified"]}
    assert tree(repo) == before


def test_the_keep_counts_come_from_the_settings(world: World) -> None:
    first, second, newest = three_backups(world)
    # KEEP_DAILY alone (weekly and monthly at their 4 and 6): the daily rule keeps the newest; the
    # weekly rule, finding the same week, keeps the oldest with its room left (restic >= 0.16)
    env = env_of(world, KEEP_DAILY="1")
    document = json.loads(guard("backup", "prune", "--dry-run", "--json", env=env).stdout)
    assert document["policy"] == {"keep_daily": 1, "keep_weekly": 4, "keep_monthly": 6}
    assert document["removed"] == [second]

    env = env_of(world, KEEP_DAILY="1", KEEP_WEEKLY="0", KEEP_MONTHLY="0")
    document = json.loads(guard("backup", "prune", "--dry-run", "--json", env=env).stdout)
    assert document["removed"] == [first, second]
    flag = json.loads(guard("backup", "prune", "--dry-run", "--json", "--keep-daily", "3", env=env).stdout)
    # a flag wins over the setting: one day holds one daily backup, and the rule's room keeps the oldest
    assert flag["policy"]["keep_daily"] == 3 and flag["removed"] == [second]

    zero = guard(
        "backup", "prune", "--dry-run", env=env_of(world, KEEP_DAILY="0", KEEP_WEEKLY="0", KEEP_MONTHLY="0")
    )
    assert zero.returncode == 2 and "KEEP_DAILY" in zero.stderr
    bad = guard("backup", "prune", env=env_of(world, KEEP_WEEKLY="-1"))
    assert (bad.returncode, bad.stderr.strip()) == (
        2,
        "guard: KEEP_WEEKLY: invalid value '-1' (expected a non-negative integer)",
    )
    assert [p.name for p in sorted((world.settings.backup_dir or Path()).glob("backups/*"))] == [
        first,
        second,
        newest,
    ]


def test_beats_prune_takes_its_counts_from_the_settings(world: World) -> None:
    with Database(world.url) as db:
        install(db, world.settings)
    first, second, newest = three_backups(world)
    assert run_maintenance(world.settings, "prune").failure is None  # defaults 7/4/6 keep the oldest too
    backups = world.settings.backup_dir / "backups" if world.settings.backup_dir else Path()
    assert sorted(p.name for p in backups.iterdir()) == [first, newest]
    strict = world.settings.replace(keep_daily=1, keep_weekly=0, keep_monthly=0)
    assert run_maintenance(strict, "prune").failure is None
    assert sorted(p.name for p in backups.iterdir()) == [newest]


def test_prune_help_names_the_dry_run_and_the_settings() -> None:
    shown = guard("backup", "prune", "--help")
    assert shown.returncode == 0
    text = " ".join(shown.stdout.split())
    assert "--dry-run" in text and "remove nothing" in text
    for setting in ("KEEP_DAILY", "KEEP_WEEKLY", "KEEP_MONTHLY"):
        assert setting in text


def test_backup_json_says_which_walk_it_took(world: World, monkeypatch: pytest.MonkeyPatch) -> None:
    taken = guard("backup", "--json", env=env_of(world))
    assert taken.returncode == 0, taken.stderr
    assert json.loads(taken.stdout)["walk"] == "compiled"  # make installs it with a C compiler
    monkeypatch.setattr(statpage, "stat_blob", statpage.stat_blob_py)
    assert run_backup(world.settings).walk == "python"
