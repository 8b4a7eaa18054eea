"""guard serve's pure pieces: who may bind where, the token check, the metric names, the escaping."""

from __future__ import annotations

from datetime import date, timedelta

import pytest

from guard.errors import ConfigError
from guard.web import access
from guard.web.chart import open_findings_svg
from guard.web.exposition import families, names
from guard.web.page import status_page
from guard.web.readings import Canary, CheckRun, DayCount, Example, FindingCount, Outbox, ProcessBeat, Reading


@pytest.mark.parametrize("host", ["127.0.0.1", "127.0.0.2", "::1", "[::1]", "localhost"])
def test_loopback_needs_no_token(host: str) -> None:
    assert access.is_loopback(host)
    access.require_token_for(host, None)


@pytest.mark.parametrize("host", ["0.0.0.0", "::", "10.0.0.5", "example.org", ""])
def test_anything_else_needs_a_token(host: str) -> None:
    assert not access.is_loopback(host)
    with pytest.raises(ConfigError, match="GUARD_WEB_TOKEN"):
        access.require_token_for(host, None)
    access.require_token_for(host, "t0ken")


def test_the_token_comes_as_a_bearer_or_as_the_session_cookie() -> None:
    token = "s3cret-token"
    assert access.allowed(token, f"Bearer {token}", None)
    assert access.allowed(token, f"bearer {token}", None)
    assert not access.allowed(token, f"Basic {token}", None)
    assert not access.allowed(token, "Bearer s3cret-toke", None)
    assert not access.allowed(token, None, None)
    assert access.allowed(token, None, access.session_value(token))
    assert not access.allowed(token, None, token)  # the cookie holds a value made from it, not the token
    assert access.session_value(token) != access.session_value(token + "x")


def reading() -> Reading:
    today = date(2026, 12, 1)
    return Reading(
        taken_at=1_796_000_000.0,
        up=True,
        installed=True,
        findings=(
            FindingCount("files", "missing_file", 2, 5, 3),
            FindingCount("sync", "pipeline_stalled", 1, 1, 0),
        ),
        checks=(CheckRun("files", 1.0, 2.0, 1.0),),
        outbox=Outbox(4, 1.5, 0),
        queues={"events": 1, "sweeps": 0, "alerts": 0},
        backups=(),
        predeploy={"pass": 3},
        canary=Canary(10.0, 0.4, 11.0),
        heartbeats=(ProcessBeat("worker", 9.0, 2),),
        examples=(
            Example("files", "missing_file", "ad_images:1", "uploads/<script>x</script>.webp", "m&m", 1.0),
        ),
        open_daily=tuple(DayCount(today - timedelta(days=i), i) for i in range(14, -1, -1)),
    )


def test_every_metric_written_is_a_contract_name() -> None:
    written = {f.name + ("_total" if f.type == "counter" else "") for f in families(reading())}
    assert written <= set(names())
    assert "incident_guard_predeploy_runs_total" in written
    stalled = next(f for f in families(reading()) if f.name == "incident_guard_pipeline_stalled")
    assert stalled.samples[0].value == 1


def test_a_reading_that_failed_writes_only_up() -> None:
    assert [f.name for f in families(Reading(taken_at=0.0, up=False, error="x"))] == ["incident_guard_up"]


def test_the_page_escapes_what_the_database_holds() -> None:
    html = status_page(reading(), 30)
    assert "<script" not in html
    assert "uploads/&lt;script&gt;x&lt;/script&gt;.webp" in html and "m&amp;m" in html
    assert '<meta http-equiv="refresh" content="30">' in html
    assert "pipeline stalled" in html


def test_the_chart_is_inline_svg() -> None:
    svg = open_findings_svg(reading().open_daily)
    assert svg.startswith("<svg") and "<polyline" in svg and "http" not in svg.replace("http://www.w3", "")
    assert "no findings" in open_findings_svg(())
