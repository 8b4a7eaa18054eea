"""A change whose check always fails is parked after outbox_max_attempts, not re-sent forever (item 8).

Real listener, real worker: an outbox row whose key the table's primary key cannot hold fails its
check every time. After two attempts it is parked as dead with a check_failed finding that names the
table, the key and the error; `guard status` lists it; `guard outbox requeue` puts it back.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from sync_stack import Stack, seed_owner, wait_for

from guard.config.settings import Settings
from guard.continuous.capture import install
from guard.db.database import Database

pytestmark = pytest.mark.integration
GUARD = [str(Path(sys.executable).parent / "guard")]


def _guard(stack: Stack, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*GUARD, *args], env=stack.env, capture_output=True, text=True, timeout=60)


def _one(db_url: str, query: str) -> Any:
    with Database(db_url) as db:
        row = db.fetch_one(query)
    return row[0] if row else None


def test_a_row_that_always_fails_is_parked_shown_and_requeued(db_url: str, tmp_path: Path) -> None:
    with Database(db_url) as db:
        install(db, Settings(database_url=db_url, uploads_root=tmp_path))
        seed_owner(db)
        db.execute("INSERT INTO guard.outbox (tbl, row_key) VALUES ('ads', 'not-a-number')")
    stack = Stack(db_url, tmp_path, tmp_path, lease_seconds="1", outbox_max_attempts="2")
    try:
        stack.worker()
        stack.listener()
        parked = "SELECT count(*) FROM guard.outbox WHERE dead_at IS NOT NULL"
        wait_for(lambda: _one(db_url, parked) == 1, "the failing row to be parked", 60)
        with Database(db_url) as db:  # a good change after it is still checked: the listener went on
            db.execute("INSERT INTO ads (id, title, slug, category_id, user_id) VALUES (7, 't', 'Bad', 1, 1)")
        opened = "SELECT count(*) FROM guard.findings WHERE subject = 'ads:7' AND resolved_at IS NULL"
        wait_for(lambda: _one(db_url, opened) == 1, "the good change's check", 60)
        stack.kill("listener")
        status = _guard(stack, "status", "--json")
        human = _guard(stack, "status")
        requeued = _guard(stack, "outbox", "requeue", "--all")
        failures = len(re.findall(r"guard\.check_rows\[[^]]+\] raised", stack.log("worker")))
    finally:
        stack.close()

    assert failures == 2  # two attempts, then never again
    with Database(db_url) as db:
        [(message, resolved)] = db.fetch_all(
            "SELECT message, resolved_at FROM guard.findings WHERE kind = 'check_failed'"
        )
        row = db.fetch_one("SELECT attempts, dead_at FROM guard.outbox WHERE row_key = 'not-a-number'")
    assert "ads" in message and "not-a-number" in message and "invalid" in message.lower()
    assert status.returncode == 3, status.stderr  # no beat runs in this stack, and status says so
    assert "beat missing" in json.loads(status.stdout)["problems"]
    [dead] = json.loads(status.stdout)["outbox_dead"]
    assert (dead["table"], dead["key"], dead["attempts"]) == ("ads", "not-a-number", 2)
    assert "not-a-number" in human.stdout and "guard outbox requeue" in human.stdout
    assert requeued.returncode == 0 and "1" in requeued.stdout, requeued.stderr
    assert row == (0, None) and resolved is not None  # back in the outbox; the finding is resolved
