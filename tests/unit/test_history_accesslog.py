"""The ad route's requests and 404s per ISO week, read from access logs: plain, gzip, rotated, malformed."""

from __future__ import annotations

import gzip
from datetime import UTC, date, datetime
from pathlib import Path

import pytest

from guard.errors import UsageError
from guard.history.accesslog import expand, parse_time, tally

ROUTE = r"^/ad/[^/]+/?$"
MON_W48 = date(2026, 11, 23)  # ISO 2026-W48 starts Monday 23 Nov
MON_W49 = date(2026, 11, 30)


def line(when: str, request: str, status: int, size: str = "512") -> str:
    return (
        f'203.0.113.9 - - [{when}] "{request}" {status} {size} "https://ref.example/" "Mozilla/5.0 (X11)"\n'
    )


def test_parse_time_reads_the_offset_into_utc() -> None:
    assert parse_time(b"10/Oct/2026:13:55:36 -0700") == datetime(2026, 10, 10, 20, 55, 36, tzinfo=UTC)
    assert parse_time(b"10/Oct/2026:13:55:36 +0530") == datetime(2026, 10, 10, 8, 25, 36, tzinfo=UTC)
    for bad in (
        b"10/Foo/2026:13:55:36 +0000",
        b"yesterday",
        b"10/Oct/2026:13:55:36",
        b"99/Oct/2026:13:55:36 +0000",
    ):
        assert parse_time(bad) is None


def test_requests_and_404s_are_counted_per_week_with_malformed_lines_counted_not_fatal(
    tmp_path: Path,
) -> None:
    log = tmp_path / "access.log"
    log.write_text(
        line("22/Nov/2026:23:59:59 +0000", "GET /ad/honda-city-1 HTTP/1.1", 200)  # Sunday: W47
        + line("23/Nov/2026:00:00:00 +0000", "GET /ad/honda-city-1 HTTP/1.1", 200)  # Monday 00:00: W48
        # 01:30 on Monday in +0200 is still Sunday 23:30 UTC: W47
        + line("23/Nov/2026:01:30:00 +0200", "GET /ad/gone-2 HTTP/1.1", 404)
        + line("24/Nov/2026:10:00:00 +0000", "GET /ad/gone-2?utm=x HTTP/1.1", 404)
        + line("24/Nov/2026:10:00:01 +0000", "HEAD /ad/gone-2/ HTTP/1.1", 404)
        + line("24/Nov/2026:10:00:02 +0000", "POST /ad/gone-2 HTTP/1.1", 404)  # not a page view
        + line("24/Nov/2026:10:00:03 +0000", "GET /ad/gone-2/edit HTTP/1.1", 404)  # another route
        + line("24/Nov/2026:10:00:04 +0000", "GET /search?q=ad HTTP/1.1", 404)
        + line("24/Nov/2026:10:00:05 +0000", "\\x16\\x03\\x01", 400, "-")  # TLS on the HTTP port: not ours
        + "this is not a log line\n"
        + '203.0.113.9 - - [24/Nov/2026:10:00:06 +0000] "GET /ad/x HTTP/1.1" abc 1\n'  # status not a number
        + line("31/Nov/2026:10:00:00 +0000", "GET /ad/x-3 HTTP/1.1", 404)  # no such day: malformed
        + line("30/Nov/2026:08:00:00 +0000", 'GET /ad/quote\\"d-4 HTTP/1.1', 200)  # nginx escapes quotes
    )
    counted = tally([log], ROUTE)
    assert counted.lines == 13
    assert counted.malformed == 3
    assert counted.ad_requests == 6
    assert counted.weeks == {date(2026, 11, 16): (2, 1), MON_W48: (3, 2), MON_W49: (1, 0)}


def test_a_rotated_glob_reads_plain_and_gzip_files_by_their_bytes(tmp_path: Path) -> None:
    (tmp_path / "access.log").write_text(line("30/Nov/2026:08:00:00 +0000", "GET /ad/a-1 HTTP/1.1", 404))
    (tmp_path / "access.log.1").write_text(line("29/Nov/2026:08:00:00 +0000", "GET /ad/a-1 HTTP/1.1", 200))
    with gzip.open(tmp_path / "access.log.2.gz", "wt") as handle:
        for n in range(1000):
            handle.write(line("24/Nov/2026:08:00:00 +0000", f"GET /ad/a-{n} HTTP/1.1", 404 if n < 3 else 200))
    with gzip.open(tmp_path / "access.log.3", "wt") as handle:  # compressed without the .gz name
        handle.write(line("23/Nov/2026:08:00:00 +0000", "GET /ad/a-1 HTTP/1.1", 404))
    files = expand([str(tmp_path / "access.log*")])
    assert [f.name for f in files] == ["access.log", "access.log.1", "access.log.2.gz", "access.log.3"]
    counted = tally(files, ROUTE)
    assert counted.weeks == {MON_W48: (1002, 4), MON_W49: (1, 1)}
    assert counted.malformed == 0 and counted.lines == 1003


def test_the_route_is_configurable(tmp_path: Path) -> None:
    log = tmp_path / "a.log"
    log.write_text(
        line("24/Nov/2026:08:00:00 +0000", "GET /annonce/velo-1 HTTP/1.1", 404)
        + line("24/Nov/2026:08:00:00 +0000", "GET /ad/velo-1 HTTP/1.1", 404)
    )
    assert tally([log], r"^/annonce/[^/]+$").weeks == {MON_W48: (1, 1)}


def test_a_glob_matching_nothing_a_missing_file_and_a_broken_gzip_are_bad_input(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="no file matches"):
        expand([str(tmp_path / "nothing*")])
    with pytest.raises(UsageError, match="not a readable file"):
        expand([str(tmp_path / "missing.log")])
    broken = tmp_path / "broken.log.gz"
    whole = gzip.compress(line("24/Nov/2026:08:00:00 +0000", "GET /ad/a-1 HTTP/1.1", 404).encode() * 500)
    broken.write_bytes(whole[: len(whole) // 2])
    with pytest.raises(UsageError, match="broken.log.gz: cannot read"):
        tally([broken], ROUTE)
