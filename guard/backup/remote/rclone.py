"""The one seam to rclone (driven as a subprocess): list, send, fetch and delete files on a remote.

rclone's own config (RCLONE_CONFIG, or ~/.config/rclone/rclone.conf) holds every credential; guard
passes the remote path through and never stores or prints more of it than display() shows.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import tempfile
import threading
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import IO, Any

from guard.config.redact import redact
from guard.errors import ConfigError, UnreachableError
from guard.progress import Progress

NOT_FOUND = 3  # rclone's exit code for "directory not found"
# key=value parameters of a connection string (":sftp,host=h,pass=p:path") or in an error message
_PARAMS = re.compile(r"^(?P<name>:?[\w.-]*)(?:,[^:]*)?:(?P<path>.*)$", re.S)
_SECRET_KV = re.compile(
    r"\b(pass|password|key|secret|token|[a-z_]*_key|[a-z_]*_secret|sas_url|key_pem)\s*=\s*[^,:\s]+", re.I
)

_STAMP = re.compile(r"^\d{4}/\d{2}/\d{2} \d{2}:\d{2}:\d{2} (?:[A-Z]+ *: *)?")  # rclone's plain log prefix


class RemoteError(UnreachableError):
    """rclone could not reach the remote, or it refused what was asked (exit 3)."""


def display(remote: str) -> str:
    """Return a remote path without the parameters a connection string may carry (they hold secrets)."""
    found = _PARAMS.match(remote)
    if found is None:
        return remote  # a plain local path: nothing secret in it
    return f"{found['name']}:{found['path']}"


def _clean(text: str, remote: str) -> str:
    """Make rclone's message one safe line: no connection-string parameters, no password."""
    text = text.replace(remote, display(remote))
    text = _SECRET_KV.sub(lambda m: f"{m.group(1)}=***", text)
    return redact(" ".join(text.split()))


@dataclass(frozen=True, slots=True)
class Entry:
    """One file on the remote: its path under the remote root, its size, the hashes it offers."""

    path: str
    size: int
    hashes: dict[str, str]
    modified: datetime | None = None  # only when listed with times


def _time(value: object) -> datetime | None:
    """rclone's ModTime (RFC 3339, nanoseconds); None when absent or not a time."""
    try:
        return datetime.fromisoformat(str(value)) if value else None
    except ValueError:
        return None


def _binary() -> str:
    found = shutil.which("rclone")
    if found is None:
        raise ConfigError("rclone is not installed: apt-get install rclone (Debian), then try again")
    return found


class Rclone:
    """rclone on one remote path (REMOTE: `name:path`, a local folder, or a crypt remote)."""

    def __init__(self, remote: str) -> None:
        if not remote.strip():
            raise ConfigError("an empty remote path: give an rclone remote such as `offsite:guard`")
        self.remote = remote.rstrip("/") if remote.rstrip("/") else remote
        self.label = display(self.remote)

    def at(self, path: str) -> str:
        """The rclone path of a file under the remote root."""
        sep = "" if self.remote.endswith(":") else "/"
        return f"{self.remote}{sep}{path}"

    def _run(
        self, args: list[str], what: str, *, missing_ok: bool = False, progress: Progress | None = None
    ) -> str:
        """Run rclone; raise RemoteError with its last error as one line (NOT_FOUND: "" if missing_ok)."""
        command = [_binary(), "--use-json-log", "--stats-log-level", "NOTICE", *args]
        if progress is not None:
            command[1:1] = ["--stats", "500ms"]
        process = subprocess.Popen(
            command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL
        )
        errors: list[str] = []
        reader = threading.Thread(target=_read_log, args=(process.stderr, errors, progress), daemon=True)
        reader.start()
        assert process.stdout is not None
        out = process.stdout.read().decode("utf-8", errors="replace")
        code = process.wait()
        reader.join()
        if code == 0:
            return out
        if code == NOT_FOUND and missing_ok:
            return ""
        why = errors[-1] if errors else f"rclone exited with {code}"
        raise RemoteError(f"cannot {what} {self.label}: {_clean(why, self.remote)}")

    def listing(
        self,
        *,
        hashes: bool = False,
        only: Iterable[str] | None = None,
        under: str | None = None,
        times: bool = False,
    ) -> dict[str, Entry]:
        """Every file under the remote root (or just `only`, or under one folder), with its size (and
        hashes, and times); paths are from the root; {} if none."""
        args = ["lsjson", "-R", "--files-only", "--no-mimetype", *([] if times else ["--no-modtime"])]
        if hashes:  # the two guard can compare; without --hash-type a local remote computes seven
            args += ["--hash-type", "md5", "--hash-type", "sha1"]
        prefix = f"{under}/" if under else ""
        with _file_list(only) as listed:
            if listed is not None:
                args += ["--files-from-raw", listed]
            out = self._run([*args, self.at(under) if under else self.remote], "list", missing_ok=True)
        items: list[dict[str, Any]] = json.loads(out) if out.strip() else []
        return {
            prefix + str(i["Path"]): Entry(
                prefix + str(i["Path"]), int(i["Size"]), dict(i.get("Hashes") or {}), _time(i.get("ModTime"))
            )
            for i in items
            if not i.get("IsDir")
        }

    def top(self) -> list[tuple[str, bool]]:
        """The names at the remote root, each with whether it is a folder ([] when empty or not there)."""
        out = self._run(["lsjson", "--no-mimetype", "--no-modtime", self.remote], "list", missing_ok=True)
        return [(str(i["Path"]), bool(i.get("IsDir"))) for i in (json.loads(out) if out.strip() else [])]

    def send(
        self, local_root: Path, paths: list[str], progress: Progress | None = None, *, force: bool = False
    ) -> None:
        """Copy these files (relative to local_root) to the same paths under the remote root.

        force: send even a file the remote holds at the same size and time (--ignore-times).
        """
        if not paths:
            return
        with _file_list(paths) as listed:
            self._run(
                ["copy", *(["--ignore-times"] if force else []), "--files-from-raw", str(listed)]
                + ["--no-traverse", str(local_root), self.remote],
                "copy to",
                progress=progress,
            )

    def fetch(self, paths: list[str], local_root: Path, progress: Progress | None = None) -> None:
        """Copy these files from under the remote root to the same paths under local_root."""
        if not paths:
            return
        with _file_list(paths) as listed:
            self._run(
                ["copy", "--files-from-raw", str(listed), "--no-traverse", self.remote, str(local_root)],
                "fetch from",
                progress=progress,
            )

    def delete(self, paths: list[str]) -> None:
        """Delete these files from the remote (a file already gone is not an error)."""
        if not paths:
            return
        with _file_list(paths) as listed:
            self._run(["delete", "--files-from-raw", str(listed), self.remote], "delete on", missing_ok=True)

    def rmdirs(self, path: str) -> None:
        """Remove empty folders under a path of the remote (what a delete left)."""
        self._run(["rmdirs", "--leave-root", self.at(path)], "tidy", missing_ok=True)


@contextmanager
def _file_list(paths: Iterable[str] | None) -> Iterator[str | None]:
    """A temporary file naming one path a line, for --files-from-raw; None when paths is None."""
    if paths is None:
        yield None
        return
    fd, name = tempfile.mkstemp(prefix="guard-rclone-", suffix=".txt")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.writelines(f"{p}\n" for p in paths)
        yield name
    finally:
        os.unlink(name)


def _read_log(stream: IO[bytes] | None, errors: list[str], progress: Progress | None) -> None:
    """Read rclone's JSON log: errors kept for the message, stats moving the progress bar."""
    if stream is None:
        return
    done = 0
    for raw in stream:
        line = raw.decode("utf-8", errors="replace").strip()
        try:
            entry = json.loads(line)
        except ValueError:
            if line:
                errors.append(_STAMP.sub("", line))
            continue
        if not isinstance(entry, dict):
            continue
        stats = entry.get("stats")
        if isinstance(stats, dict) and progress is not None:
            now = int(stats.get("bytes", 0))
            if now > done:
                progress.advance(now - done)
                done = now
        elif entry.get("level") in ("error", "critical", "fatal"):
            errors.append(str(entry.get("msg", "")))
