"""Run the real `guard` command as a subprocess."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

GUARD = [sys.executable, "-m", "guard"]
ROOT = Path(__file__).resolve().parents[2]
MIGRATIONS_DIR = str(ROOT / "examples" / "thulobazaar" / "prisma" / "migrations")


def read_pty(leader: int) -> bytes:
    """Read what a process drew on a pseudo-terminal until it closed its side."""
    drawn = b""
    while True:
        try:
            chunk = os.read(leader, 4096)
        except OSError:  # EIO: the process closed the terminal
            break
        if not chunk:
            break
        drawn += chunk
    return drawn


def guard(
    *args: str, env: dict[str, str] | None = None, timeout: int = 300
) -> subprocess.CompletedProcess[str]:
    """Run guard with a clean settings environment plus `env`."""
    base = {k: v for k, v in os.environ.items() if k not in _SETTINGS_VARS}
    return subprocess.run(
        [*GUARD, *args],
        env={**base, **(env or {})},
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=ROOT,
        check=False,
    )


def guard_json(*args: str, env: dict[str, str] | None = None) -> tuple[int, dict[str, Any]]:
    done = guard(*args, "--json", env=env)
    return done.returncode, json.loads(done.stdout)


_SETTINGS_VARS = {
    "GUARD_CONFIG",
    "DATABASE_URL",
    "UPLOADS_ROOT",
    "SCAN_DIRS",
    "ORPHAN_GRACE",
    "MIGRATIONS_DIR",
    "SHADOW_DATABASE_URL",
    "BACKUP_DIR",
    "FILE_TABLE",
    "FILE_COLUMN",
    "KEEP_DAILY",
    "KEEP_WEEKLY",
    "KEEP_MONTHLY",
    "SHADOW_DATABASE_PREFIX",
    "DRILL_DATABASE_PREFIX",
    "RESTORE_DATABASE_PREFIX",
    "ACCESS_LOG",
    "AD_ROUTE",
    "HISTORY_DAYS",
}
