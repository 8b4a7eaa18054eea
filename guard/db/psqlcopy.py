"""Read a one-column query's values through psql's COPY: a C client streams them in big chunks.

psycopg hands over a million values as a million Python calls (one per row, COPY or not); psql reads
the same COPY stream in C and writes it to a pipe we read a megabyte at a time, so a million values
cost one decode and one split per chunk, or nothing in Python at all where the chunks go straight to
guard.fs.pathsets' compiled index. The connection goes to psql only in its environment
(readable by its owner alone), never on its command line. Where psql is missing, or the connection
needs a setting libpq reads from no environment variable, the caller reads through psycopg instead.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import re
import shutil
import subprocess
from collections.abc import Iterator

import psycopg

from guard.config.redact import redact
from guard.errors import UnreachableError

CHUNK = 1 << 20
# The connection settings an older libpq (the system's psql) also reads from the environment.
_ENVIRONMENT = {
    "host": "PGHOST",
    "hostaddr": "PGHOSTADDR",
    "port": "PGPORT",
    "dbname": "PGDATABASE",
    "user": "PGUSER",
    "password": "PGPASSWORD",
    "passfile": "PGPASSFILE",
    "service": "PGSERVICE",
    "options": "PGOPTIONS",
    "application_name": "PGAPPNAME",
    "connect_timeout": "PGCONNECT_TIMEOUT",
    "sslmode": "PGSSLMODE",
    "sslcert": "PGSSLCERT",
    "sslkey": "PGSSLKEY",
    "sslrootcert": "PGSSLROOTCERT",
    "sslcrl": "PGSSLCRL",
    "requirepeer": "PGREQUIREPEER",
    "gssencmode": "PGGSSENCMODE",
    "krbsrvname": "PGKRBSRVNAME",
    "target_session_attrs": "PGTARGETSESSIONATTRS",
    "channel_binding": "PGCHANNELBINDING",
}
# COPY's text format writes a backslash, and the control characters that would break a line or a
# field, as backslash escapes (the octal and hex forms are only ever read, never written).
_ESCAPE = re.compile(r"\\(.)", re.S)
_ESCAPED = {"b": "\b", "f": "\f", "n": "\n", "r": "\r", "t": "\t", "v": "\v"}


def psql_environment(url: str) -> dict[str, str] | None:
    """Return the environment that connects psql as `url` does, or None when psql cannot be used."""
    if shutil.which("psql") is None:
        return None
    try:
        info = psycopg.conninfo.conninfo_to_dict(url)
    except psycopg.ProgrammingError:
        return None
    if not set(info) <= set(_ENVIRONMENT):
        return None
    # What the URL leaves out comes from the same PG* variables psycopg's own connection reads.
    env = {**os.environ, "PGAPPNAME": "incident-guard"}
    env.update({_ENVIRONMENT[k]: str(v) for k, v in info.items()})
    env["PGCLIENTENCODING"] = "UTF8"
    return env


def copy_values(env: dict[str, str], query: str) -> Iterator[list[str]]:
    """Yield the values of a one-column query (no NULLs), a chunk's worth at a time, in text."""
    for chunk in copy_chunks(env, query):
        yield lines_of(chunk.decode("utf-8"))


def copy_chunks(env: dict[str, str], query: str) -> Iterator[bytes]:
    """Yield a one-column query's COPY text output (no NULLs) as it comes, in chunks of whole lines."""
    command = ["psql", "-X", "-q", "-v", "ON_ERROR_STOP=1", "-c", f"COPY ({query}) TO STDOUT"]
    proc = subprocess.Popen(
        command, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    assert proc.stdout is not None and proc.stderr is not None
    out = proc.stdout.fileno()
    _widen(out)
    try:
        rest = b""
        while data := os.read(out, CHUNK):
            data = rest + data if rest else data
            cut = data.rfind(b"\n") + 1
            rest = data[cut:]
            if cut:
                yield data[:cut] if rest else data
        error = proc.stderr.read().decode("utf-8", "replace").strip()
        if proc.wait() != 0 or rest:
            last = error.splitlines()[-1] if error else f"exit code {proc.returncode}"
            raise UnreachableError(f"psql could not read the stored paths: {redact(last)}")
    finally:
        if proc.poll() is None:  # left early: nobody reads the rest
            proc.kill()
            proc.wait()
        proc.stdout.close()
        proc.stderr.close()


def _widen(fd: int) -> None:
    """Let the pipe hold a chunk: at the default 64 KiB, psql waits on us every few hundred rows."""
    # Over /proc/sys/fs/pipe-max-size for this user it stays as it is: smaller reads, the same data.
    with contextlib.suppress(OSError):
        fcntl.fcntl(fd, getattr(fcntl, "F_SETPIPE_SZ", 1031), CHUNK)


def lines_of(text: str) -> list[str]:
    """Split whole COPY text lines into values; only a line holding a backslash is unescaped."""
    values = text.split("\n")
    values.pop()  # after the last newline
    if "\\" in text:
        values = [unescape(v) if "\\" in v else v for v in values]
    return values


def unescape(field: str) -> str:
    """Return the value a COPY text field spells ('a\\\\b\\n' -> 'a\\b' + newline)."""
    return _ESCAPE.sub(lambda m: _ESCAPED.get(m.group(1), m.group(1)), field)
