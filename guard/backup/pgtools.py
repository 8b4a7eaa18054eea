"""Run pg_dump and pg_restore for backups, with the password in the environment, never on a command line."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Any

import psycopg

from guard.config.redact import redact
from guard.db.database import Database
from guard.errors import ConfigError, GuardError, UnreachableError


def client_args(url: str) -> tuple[str, dict[str, str]]:
    """Return a conninfo without the password, and an environment that carries it instead."""
    try:
        info = psycopg.conninfo.conninfo_to_dict(url)
    except psycopg.ProgrammingError:
        raise ConfigError("DATABASE_URL is not a valid connection string") from None
    env = dict(os.environ)
    password = info.pop("password", None)
    if password is not None:
        env["PGPASSWORD"] = str(password)
    return psycopg.conninfo.make_conninfo(**{k: str(v) for k, v in info.items()}), env


def spawn(command: list[str], env: dict[str, str] | None, **kwargs: Any) -> subprocess.Popen[Any]:
    """Start a client program that the kernel kills when guard dies, so a killed backup leaves none behind.

    `setpriv --pdeathsig` sets the death signal in the child before it runs the program; a
    `preexec_fn` doing the same is unsafe in a process with threads (sentry-sdk runs one).
    """
    return subprocess.Popen([*_DIE_WITH_PARENT, *command], env=env, **kwargs)


def _die_with_parent() -> tuple[str, ...]:
    setpriv = shutil.which("setpriv")
    return (setpriv, "--pdeathsig", "KILL", "--") if setpriv else ()


_DIE_WITH_PARENT = _die_with_parent()


def tool_version(program: str) -> str:
    done = _run([program, "--version"], None)
    return done.stdout.strip()


def start_dump(url: str, snapshot: str, out: Path, app_name: str) -> subprocess.Popen[bytes]:
    """Start `pg_dump -Fc -Z0 --snapshot=...` writing a standard custom-format archive to `out`.

    app_name names pg_dump's session, so the snapshot's holder can see when pg_dump has taken it.

    Uncompressed: the backup cuts the archive into content-defined chunks and compresses each (zstd,
    guard.backup.repo.dumps), so a table that did not change is the same chunks in every backup; a
    compressed archive changes from the first changed row of a table to its end. zstd is also
    smaller than pg_dump's zlib level 1 and takes a third of its CPU.
    """
    conninfo, env = client_args(url)
    conninfo = psycopg.conninfo.make_conninfo(conninfo, application_name=app_name)
    command = ["pg_dump", "-Fc", "-Z0", f"--snapshot={snapshot}", "--file", str(out), f"--dbname={conninfo}"]
    try:
        return spawn(command, env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    except FileNotFoundError:
        raise ConfigError("pg_dump is not installed or not on PATH") from None


def finish_dump(process: subprocess.Popen[bytes]) -> None:
    """Wait for pg_dump and raise its last error line if it failed; again after it ended, no harm."""
    done = process.stderr is None or process.stderr.closed  # a second communicate() would raise
    err = b"" if done else process.communicate()[1]
    process.wait()
    if process.returncode != 0:
        raise tool_error("pg_dump", err)


def list_archive(dump: Path) -> str:
    """Return `pg_restore --list` of an archive, or raise naming why it cannot be read."""
    done = _run(["pg_restore", "--list", str(dump)], None)
    if done.returncode != 0:
        raise tool_error("pg_restore --list", done.stderr.encode())
    return done.stdout


def restore_archive(dump: Path, url: str) -> list[str]:
    """Restore an archive into an empty database; return notes on constraints the data violates.

    Everything but foreign keys is restored with --exit-on-error. Each foreign key is then added on
    its own: one that existing rows violate (rows the source database took in while its triggers were
    off) is added NOT VALID, as close to the source as PostgreSQL allows, and named in the notes.
    """
    toc = [line for line in list_archive(dump).splitlines() if line and not line.startswith(";")]
    foreign = [line for line in toc if " FK CONSTRAINT " in line]
    _restore_entries(dump, url, [line for line in toc if line not in foreign], check=True)
    notes = []
    for entry in foreign:
        failure = _restore_entries(dump, url, [entry], check=False)
        if failure is None:
            continue
        if "violates foreign key constraint" not in failure:
            raise GuardError(f"pg_restore failed: {failure}")
        notes.append(_add_not_valid(dump, url, entry))
    return notes


def _restore_entries(dump: Path, url: str, entries: list[str], *, check: bool) -> str | None:
    """Restore the listed archive entries; return the error text when check is off and it fails."""
    conninfo, env = client_args(url)
    with tempfile.NamedTemporaryFile("w", suffix=".list", encoding="utf-8") as listing:
        listing.write("\n".join(entries) + "\n")
        listing.flush()
        command = [
            "pg_restore",
            "--exit-on-error",
            "--no-owner",
            "--no-privileges",
            "--use-list",
            listing.name,
            f"--dbname={conninfo}",
            str(dump),
        ]
        done = _run(command, env)
    if done.returncode == 0:
        return None
    if check:
        raise tool_error("pg_restore", done.stderr.encode())
    return redact(done.stderr)


def _add_not_valid(dump: Path, url: str, entry: str) -> str:
    """Add one foreign key NOT VALID, from the statement the archive itself holds for it."""
    with tempfile.NamedTemporaryFile("w", suffix=".list", encoding="utf-8") as listing:
        listing.write(entry + "\n")
        listing.flush()
        script = _run(["pg_restore", "--use-list", listing.name, "--file", "-", str(dump)], None)
    lines = script.stdout.splitlines()
    start = next((i for i, line in enumerate(lines) if line.startswith("ALTER TABLE")), None)
    end = (
        None
        if start is None
        else next((i for i in range(start, len(lines)) if lines[i].rstrip().endswith(";")), None)
    )
    if start is None or end is None:
        raise GuardError(
            f"pg_restore gave no complete ALTER TABLE statement for {entry!r}; the archive may be damaged"
        )
    statement = "\n".join(lines[start : end + 1]).rstrip().rstrip(";") + " NOT VALID"
    with Database(url, application_name="guard-restore") as db:
        db.execute(statement.encode("utf-8"))  # type: ignore[arg-type]  # DDL from the archive
    name = entry.split(" FK CONSTRAINT ", 1)[1].split(" ")[:3]
    return (
        f"foreign key {'.'.join(name)}: rows in the backup violate it (as in the source "
        "database); added NOT VALID so new rows are still checked"
    )


def _run(command: list[str], env: dict[str, str] | None) -> subprocess.CompletedProcess[str]:
    try:
        with spawn(command, env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) as process:
            out, err = process.communicate()
        return subprocess.CompletedProcess(command, process.returncode, out, err)
    except FileNotFoundError:
        raise ConfigError(f"{command[0]} is not installed or not on PATH") from None


def tool_error(program: str, err: bytes) -> GuardError:
    """Turn a client program's stderr into one line: unreachable when it could not connect."""
    lines = [line for line in err.decode("utf-8", "replace").splitlines() if line.strip()]
    # the error line says what happened; libpq's "detail:"/"hint:" lines after it only add context
    errors = [line for line in lines if ": error: " in line]
    text = redact((errors or lines or ["no error message"])[-1].strip())
    if "could not connect" in text or "Connection refused" in text:
        return UnreachableError(f"{program} cannot reach the database: {text}")
    return GuardError(f"{program} failed: {text}")
