"""Run Prisma's real CLI (6.19, Wasm schema engine, tests/prisma) against a test database.

`make test` installs tests/prisma with `npm ci --ignore-scripts`. Every call gets an environment
built from scratch (a CI variable would make `migrate dev` write and apply a migration; an unset
`DATABASE_URL` makes the CLI download an engine), works on a copy of the migrations folder and drops
the shadow database it may have made, even when the CLI crashed.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import psycopg
import pytest

from guard.db import servers

ROOT = Path(__file__).resolve().parent.parent
PRISMA_DIR = Path(os.environ.get("GUARD_PRISMA_DIR", ROOT / "tests" / "prisma"))
PRISMA_JS = PRISMA_DIR / "node_modules" / "prisma" / "build" / "index.js"
CONFIG = PRISMA_DIR / "prisma.config.ts"
APP_PRISMA = ROOT / "examples" / "thulobazaar" / "prisma"
SERVER_URL = os.environ.get("GUARD_TEST_SERVER_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
NOT_INSTALLED = (
    f"Prisma's CLI is not installed in {PRISMA_DIR}/node_modules: install Node.js >= 18.18 and npm "
    "(apt-get install nodejs npm), then run `make test` (it runs npm ci there)"
)
# `prisma migrate diff` takes no --schema; every other command we run does.
NO_SCHEMA_FLAG = {("migrate", "diff")}


@dataclass(frozen=True, repr=False)
class PrismaRun:
    """One finished CLI call: its exit code and its stdout and stderr as printed."""

    args: tuple[str, ...]
    code: int
    output: str
    seconds: float

    @property
    def text(self) -> str:
        """Return the output without blank lines or trailing spaces, one line per line."""
        return "".join(f"{line.rstrip()}\n" for line in self.output.splitlines() if line.strip())

    def __repr__(self) -> str:
        return f"prisma {' '.join(self.args)} -> exit {self.code} in {self.seconds:.1f}s\n{self.text}"


def database_url(dbname: str, schema: str | None = None) -> str:
    """Return the test server's URL in Prisma's form (a URL, optionally `?schema=`) for dbname."""
    parts = urlsplit(SERVER_URL)
    query = f"schema={schema}" if schema else ""
    return urlunsplit((parts.scheme, parts.netloc, "/" + dbname, query, ""))


def project(tmp_path: Path, source: Path = APP_PRISMA) -> Path:
    """Copy schema.prisma and migrations/ into `<tmp>/prisma`; return the copy's migrations folder."""
    target = tmp_path / "prisma"
    target.mkdir(parents=True)
    shutil.copy(source / "schema.prisma", target / "schema.prisma")
    shutil.copytree(source / "migrations", target / "migrations")
    return target / "migrations"


def prisma(migrations: Path, url: str, *args: str, timeout: float = 120) -> PrismaRun:
    """Run `prisma <args>` on the project whose migrations folder is `migrations` against url."""
    if shutil.which("node") is None or not PRISMA_JS.is_file():
        pytest.fail(NOT_INSTALLED, pytrace=False)
    schema = (migrations.parent / "schema.prisma").resolve()
    shadow = f"prisma_guard_shadow_{uuid.uuid4().hex[:12]}"
    command = ["node", str(PRISMA_JS), *args]
    if tuple(args[:2]) not in NO_SCHEMA_FLAG:
        command += ["--schema", str(schema)]
    started = time.monotonic()
    try:
        done = subprocess.run(
            [*command, "--config", str(CONFIG)],
            env=_environment(url, schema, shadow),
            cwd=schema.parent,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            timeout=timeout,
            check=False,
        )
    finally:
        with psycopg.connect(SERVER_URL, autocommit=True) as conn:
            conn.execute(servers.drop_database(shadow))
    return PrismaRun(tuple(args), done.returncode, done.stdout, time.monotonic() - started)


def _environment(url: str, schema: Path, shadow: str) -> dict[str, str]:
    """Return the CLI's whole environment: no CI variable, no DEBUG, nothing inherited but PATH and HOME."""
    return {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": os.environ.get("HOME", "/tmp"),
        # The adapter connects with DATABASE_URL; schema.prisma's env("DATABASE_URL") must resolve too.
        "DATABASE_URL": url,
        # The engine-type pre-check ignores `migrate <sub> --schema` and would download an engine.
        "PRISMA_SCHEMA": str(schema),
        "PRISMA_CLIENT_ENGINE_TYPE": "client",
        "CHECKPOINT_DISABLE": "1",
        "PRISMA_HIDE_UPDATE_MESSAGE": "1",
        "NO_COLOR": "1",
        "PRISMA_SHADOW_DB_NAME": shadow,
    }
