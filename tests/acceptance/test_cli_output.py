"""What the real `guard` command prints for a person: one line per error, tables that read."""

from __future__ import annotations

import fcntl
import json
import os
import pty
import re
import struct
import subprocess
import termios
from pathlib import Path

import pytest

from tests.acceptance.cli import GUARD, MIGRATIONS_DIR, ROOT, guard, guard_json, read_pty
from tests.conftest import url_for

pytestmark = pytest.mark.acceptance

UNREACHABLE = "postgresql://postgres@127.0.0.1:1/nowhere"


def test_unreachable_database_prints_one_line_once_saying_why(tmp_path: Path) -> None:
    env = {"DATABASE_URL": UNREACHABLE, "UPLOADS_ROOT": str(tmp_path)}
    done = guard("check", "integrity", env=env)
    assert done.returncode == 3
    everything = (done.stderr + done.stdout).strip().splitlines()
    assert len(everything) == 1, everything
    assert "cannot reach" in everything[0] and "Connection refused" in everything[0]
    assert "Is the server running" not in everything[0]
    done = guard("check", "integrity", "--json", env=env)
    assert done.returncode == 3
    assert len(done.stdout.strip().splitlines()) == 1
    assert "Connection refused" in json.loads(done.stdout)["checks"][0]["error"]


def test_predeploy_long_run_command_keeps_its_own_column(template_db: str, tmp_path: Path) -> None:
    (tmp_path / "uploads" / "ads").mkdir(parents=True)
    env = {
        "DATABASE_URL": url_for(template_db),
        "UPLOADS_ROOT": str(tmp_path),
        "MIGRATIONS_DIR": MIGRATIONS_DIR,
    }
    done = guard("predeploy", "--run", "echo hello; false", env=env)
    assert done.returncode == 1
    line = next(x for x in done.stdout.splitlines() if x.startswith("run: echo hello; false"))
    assert line.split()[:5] == ["run:", "echo", "hello;", "false", "FAIL"], line


def test_every_rule_is_shown_with_its_count_even_zero(template_db: str, tmp_path: Path) -> None:
    env = {"DATABASE_URL": url_for(template_db), "UPLOADS_ROOT": str(tmp_path)}
    code, document = guard_json("check", "integrity", env=env)
    assert code == 0
    counts = document["checks"][0]["counts"]
    assert counts and set(counts.values()) == {0}
    shown = guard("check", "integrity", env=env).stdout.splitlines()
    for rule in counts:
        assert any(x.split()[:2] == [rule, "0"] for x in shown), (rule, shown)


def test_tables_fit_a_narrow_terminal(template_db: str, tmp_path: Path) -> None:
    leader, follower = pty.openpty()
    fcntl.ioctl(follower, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 40, 0, 0))
    env = {**os.environ, "DATABASE_URL": url_for(template_db), "UPLOADS_ROOT": str(tmp_path)}
    env.pop("COLUMNS", None)
    proc = subprocess.Popen(
        [*GUARD, "check", "integrity"], env=env, cwd=ROOT, stdin=subprocess.DEVNULL, stdout=follower
    )
    os.close(follower)
    drawn = read_pty(leader)
    assert proc.wait(timeout=60) == 0
    os.close(leader)
    lines = re.sub(r"\x1b\[[0-9;]*m", "", drawn.decode()).splitlines()
    assert any(line.startswith("integrity") for line in lines), lines
    assert max(len(line) for line in lines) <= 40, lines
