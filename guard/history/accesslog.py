"""Real requests to the ad route, and their 404s, per ISO week, from the app's access logs.

Reads nginx's and Apache's combined (or common) format, plain or gzip (told by its first bytes, not
its name), one line at a time: a log of any size costs the memory of one line. A line that is not in
that format, or whose time cannot be read, is counted as malformed and skipped, never fatal; a file
that cannot be read (or a glob that matches nothing) is bad input, named.
"""

from __future__ import annotations

import glob
import gzip
import re
import zlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta, timezone
from io import BufferedReader
from pathlib import Path
from typing import Any

from guard.errors import UsageError
from guard.fs.paths import printable
from guard.progress import Progress, ProgressFactory, no_progress

# host ident user [time] "request" status bytes ...: the request may hold \" (nginx escapes quotes)
LINE = re.compile(rb'^\S+ \S+ (?:\S+|"[^"]*") \[([^\]]+)\] "((?:[^"\\]|\\.)*)" (\d{3}) (?:\d+|-)(?:\s|$)')
MONTHS = {m: n for n, m in enumerate(b"Jan Feb Mar Apr May Jun Jul Aug Sep Oct Nov Dec".split(), 1)}
METHODS = (b"GET", b"HEAD")  # a page view; a POST to the route is not someone opening an ad
GZIP_MAGIC = b"\x1f\x8b"
BAR_STEP = 10_000  # lines between two moves of the progress bar


@dataclass
class AccessTally:
    """What the logs held: per week start (a Monday, UTC) the ad route's requests and 404s."""

    files: list[str] = field(default_factory=list)
    lines: int = 0
    malformed: int = 0
    ad_requests: int = 0
    weeks: dict[date, tuple[int, int]] = field(default_factory=dict)

    def add(self, week: date, not_found: bool) -> None:
        requests, missing = self.weeks.get(week, (0, 0))
        self.weeks[week] = (requests + 1, missing + int(not_found))
        self.ad_requests += 1

    def to_json(self) -> dict[str, Any]:
        return {
            "files": self.files,
            "lines": self.lines,
            "malformed": self.malformed,
            "ad_requests": self.ad_requests,
        }


def expand(patterns: Sequence[str]) -> list[Path]:
    """Return the files the arguments name: each a path or a glob (rotated logs), sorted, once each."""
    found: dict[str, Path] = {}
    for pattern in patterns:
        if glob.has_magic(pattern):
            matched = sorted(glob.glob(pattern))
            if not matched:
                raise UsageError(f"--access-log {printable(pattern)}: no file matches")
            found.update((m, Path(m)) for m in matched)
        else:
            found[pattern] = Path(pattern)
    for path in found.values():
        if not path.is_file():
            raise UsageError(f"--access-log {printable(str(path))}: not a readable file")
    return list(found.values())


def tally(paths: Iterable[Path], route: str, progress: ProgressFactory = no_progress) -> AccessTally:
    """Count every file's requests to the route (a regular expression over the path) by ISO week."""
    pattern = re.compile(route)
    counted = AccessTally()
    bar = progress("log lines", None)
    try:
        for path in paths:
            counted.files.append(str(path))
            try:
                with _open(path) as handle:
                    _tally_lines(handle, pattern, counted, bar)
            except (OSError, EOFError, zlib.error) as exc:
                why = getattr(exc, "strerror", None) or str(exc) or type(exc).__name__
                raise UsageError(f"--access-log {printable(str(path))}: cannot read: {why}") from None
    finally:
        bar.close()
    return counted


def _open(path: Path) -> gzip.GzipFile | BufferedReader:
    with path.open("rb") as probe:
        magic = probe.read(2)
    if magic == GZIP_MAGIC:
        return gzip.open(path, "rb")
    return path.open("rb")


def _tally_lines(lines: Iterable[bytes], route: re.Pattern[str], counted: AccessTally, bar: Progress) -> None:
    weeks = _WeekCache()
    for line in lines:
        counted.lines += 1
        if counted.lines % BAR_STEP == 0:
            bar.advance(BAR_STEP)
        match = LINE.match(line)
        if match is None:
            counted.malformed += 1
            continue
        raw_time, request, status = match.groups()
        parts = request.split(b" ")
        if len(parts) < 2 or parts[0] not in METHODS:
            continue
        path = parts[1].split(b"?", 1)[0].split(b"#", 1)[0].decode("latin-1")
        if route.search(path) is None:
            continue
        week = weeks.of(raw_time)
        if week is None:
            counted.malformed += 1
            continue
        counted.add(week, status == b"404")


class _WeekCache:
    """The ISO week of a log time, worked out once per minute and offset (its seconds cannot move the
    day): a busy log has thousands of lines a minute, and reading a time is most of a line's cost."""

    LIMIT = 100_000

    def __init__(self) -> None:
        self.known: dict[bytes, date | None] = {}

    def of(self, raw: bytes) -> date | None:
        seconds = raw[18:20]
        if len(raw) != 26 or raw[17:18] != b":" or not seconds.isdigit() or int(seconds) > 60:
            return None
        key = raw[:17] + raw[20:]
        if key not in self.known:
            if len(self.known) >= self.LIMIT:
                self.known.clear()
            moment = parse_time(raw[:18] + b"00" + raw[20:])
            self.known[key] = None if moment is None else moment.date() - timedelta(days=moment.weekday())
        return self.known[key]


def parse_time(raw: bytes) -> datetime | None:
    """Read '10/Oct/2026:13:55:36 -0700' as a UTC time (None when it is not one)."""
    try:
        text = raw.decode("ascii")
        month = MONTHS[raw[3:6]]
        sign = -1 if text[21] == "-" else 1
        if len(text) != 26 or text[2] != "/" or text[6] != "/" or text[11] != ":" or text[21] not in "+-":
            return None
        offset = timedelta(hours=int(text[22:24]), minutes=int(text[24:26])) * sign
        local = datetime(
            int(text[7:11]),
            month,
            int(text[0:2]),
            int(text[12:14]),
            int(text[15:17]),
            int(text[18:20]),
            tzinfo=timezone(offset),
        )
    except (KeyError, ValueError, IndexError, UnicodeDecodeError):
        return None
    return local.astimezone(UTC)
