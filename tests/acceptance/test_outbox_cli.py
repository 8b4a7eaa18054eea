"""The real `guard outbox requeue`: usage errors are one line and exit 2; nothing parked is fine."""

from __future__ import annotations

import json
import subprocess

import pytest

from tests.acceptance import cli

pytestmark = pytest.mark.acceptance


def guard(db_url: str, *args: str) -> subprocess.CompletedProcess[str]:
    return cli.guard(*args, env={"DATABASE_URL": db_url})


def test_requeue_needs_ids_or_all_and_refuses_an_id_that_is_not_parked(db_url: str) -> None:
    assert guard(db_url, "install").returncode == 0
    neither = guard(db_url, "outbox", "requeue")
    assert neither.returncode == 2 and "IDs or --all" in neither.stderr and "Traceback" not in neither.stderr
    unknown = guard(db_url, "outbox", "requeue", "999")
    assert unknown.returncode == 2 and "not a parked outbox row: 999" in unknown.stderr
    done = guard(db_url, "outbox", "requeue", "--all", "--json")
    assert done.returncode == 0 and json.loads(done.stdout) == {"ok": True, "requeued": [], "not_parked": []}
