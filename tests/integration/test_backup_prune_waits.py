"""A prune that starts while a backup still holds the repository waits for it: no false prune_failed.

Beat's nightly prune (02:30) can meet a backup (02:00) that runs long; the prune used to fail at once
with "another guard backup, prune or restore is using ...", which opened prune_failed and alerted
although nothing was wrong.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from backup_support import World, make_world

from guard.backup import run_backup, run_prune
from guard.backup.repo.repository import Repository

pytestmark = pytest.mark.integration


@pytest.fixture
def world(tmp_path: Path) -> Iterator[World]:
    yield from make_world(tmp_path, ads=20, bad_rate=0.0)


def test_a_prune_waits_for_the_backup_holding_the_repository(world: World) -> None:
    run_backup(world.settings)
    repo = Repository.open(Path(str(world.settings.backup_dir)), create=False)
    release = threading.Event()
    held = threading.Event()

    def hold() -> None:
        with repo.lock(exclusive=True):  # as a running backup does
            held.set()
            release.wait(30)

    holder = threading.Thread(target=hold)
    holder.start()
    held.wait(10)
    outcome: list[object] = []
    pruning = threading.Thread(target=lambda: outcome.append(_prune(world)))
    pruning.start()
    pruning.join(0.5)  # still running: it waits for the holder rather than failing
    release.set()
    holder.join()
    pruning.join(60)
    assert outcome and not isinstance(outcome[0], Exception), outcome
    assert outcome[0].ok  # type: ignore[attr-defined]


def _prune(world: World) -> object:
    try:
        return run_prune(world.settings, keep_daily=1)
    except Exception as exc:  # the result the test inspects: a failure is what it must not see
        return exc
