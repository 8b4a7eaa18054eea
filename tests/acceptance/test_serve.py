"""`guard serve` on a demo world: every metric equals what the database, Redis and BACKUP_DIR hold;
the token gate; the refusal to bind beyond loopback without a token; a hostile file name."""

from __future__ import annotations

import http.client
import json
import socket
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from guard.backup.repo.repository import Repository
from tests.acceptance.cli import guard
from tests.acceptance.serve_support import (
    DB_PASSWORD,
    DSN,
    HOSTILE,
    QUEUED,
    WEBHOOK,
    Server,
    World,
    queue_length,
    rows,
    running_serve,
    secrets,
    serve_world,
)

pytestmark = pytest.mark.acceptance
TOKEN = "token-for-the-serve-test-5d2e"


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    with serve_world(tmp_path_factory.mktemp("serve")) as made:
        yield made


@pytest.fixture(scope="module")
def server(world: World) -> Iterator[Server]:
    with running_serve(world.env) as running:
        yield running


@pytest.fixture(scope="module")
def gated(world: World) -> Iterator[Server]:
    with running_serve({**world.env, "GUARD_WEB_TOKEN": TOKEN}, "--host", "0.0.0.0") as running:
        yield running


def scrape(server: Server) -> dict[str, dict[tuple[tuple[str, str], ...], float]]:
    """Return {sample name: {sorted labels: value}} from /metrics, parsed by prometheus_client."""
    status, text, headers = server.get("/metrics")
    assert status == 200 and headers["content-type"].startswith("text/plain; version=0.0.4")
    samples: dict[str, dict[tuple[tuple[str, str], ...], float]] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            samples.setdefault(sample.name, {})[tuple(sorted(sample.labels.items()))] = sample.value
    return samples


def by_check_kind(found: list[tuple[Any, ...]]) -> dict[tuple[tuple[str, str], ...], float]:
    return {(("check", str(c)), ("kind", str(k))): float(n) for c, k, n in found}


def test_findings_metrics_equal_the_ledger(world: World, server: Server) -> None:
    m = scrape(server)
    assert m["incident_guard_up"] == {(): 1.0}
    open_rows = rows(
        world.plain_url,
        "SELECT check_name, kind, count(*) FROM guard.findings WHERE resolved_at IS NULL GROUP BY 1, 2",
    )
    ever = rows(world.plain_url, "SELECT check_name, kind, count(*) FROM guard.findings GROUP BY 1, 2")
    resolved = rows(
        world.plain_url,
        "SELECT check_name, kind, count(*) FILTER (WHERE resolved_at IS NOT NULL) FROM guard.findings"
        " GROUP BY 1, 2",
    )
    # every kind ever opened has a series; a kind with nothing open now reads 0 (it does not vanish)
    zeros = {labels: 0.0 for labels in by_check_kind(ever)}
    assert m["incident_guard_findings_open"] == {**zeros, **by_check_kind(open_rows)}
    assert m["incident_guard_findings_opened_total"] == by_check_kind(ever)
    assert m["incident_guard_findings_resolved_total"] == by_check_kind(resolved)
    total = rows(world.plain_url, "SELECT count(*) FROM guard.findings WHERE resolved_at IS NULL")[0][0]
    assert sum(m["incident_guard_findings_open"].values()) == total > 0
    assert m["incident_guard_pipeline_stalled"] == {(): 0.0}
    fixed = (("check", "integrity"), ("kind", "ads.title.required"))
    assert (
        m["incident_guard_findings_resolved_total"][fixed]
        == m["incident_guard_findings_opened_total"][fixed]
        > 0
    )
    assert m["incident_guard_findings_open"][fixed] == 0


def test_check_outbox_and_queue_metrics_equal_their_sources(world: World, server: Server) -> None:
    m = scrape(server)
    runs = rows(
        world.plain_url,
        "SELECT details->>'check', extract(epoch FROM max(at))::float8, "
        "extract(epoch FROM max(at) FILTER (WHERE outcome = 'ok'))::float8, "
        "(array_agg((details->>'seconds')::float8 ORDER BY at DESC))[1] "
        "FROM guard.history_events WHERE kind = 'sweep' GROUP BY 1",
    )
    assert {c for c, *_ in runs} == {"integrity", "files", "migrations", "drift"}
    for check, ended, succeeded, seconds in runs:
        label = (("check", check),)
        assert m["incident_guard_check_last_run_timestamp_seconds"][label] == pytest.approx(ended)
        assert m["incident_guard_check_last_success_timestamp_seconds"][label] == pytest.approx(succeeded)
        assert m["incident_guard_check_duration_seconds"][label] == pytest.approx(seconds)
    backlog = rows(
        world.plain_url,
        "SELECT (SELECT count(*) FROM guard.outbox WHERE processed_at IS NULL AND dead_at IS NULL)"
        " + (SELECT count(*) FROM guard.capture)",
    )[0][0]
    assert m["incident_guard_outbox_backlog"] == {(): float(backlog)}
    assert backlog > 0  # the hostile row's insert was captured and no listener runs here
    assert m["incident_guard_outbox_dead"] == {(): 0.0}
    # no listener runs here, so the canaries wait in guard.capture: the oldest one's age is the lag
    age = m["incident_guard_outbox_oldest_age_seconds"][()]
    waited = rows(
        world.plain_url,
        "SELECT extract(epoch FROM now() - min(c.sent_at))::float8 FROM guard.capture k "
        "JOIN guard.canary c ON c.id::text = k.row_key WHERE k.tbl = 'guard.canary'",
    )[0][0]
    assert 0 < age <= waited
    assert age == pytest.approx(waited, abs=30)  # the scrape came first, by the few seconds above
    prefix = world.env["BROKER_PREFIX"]
    for queue in ("events", "sweeps", "alerts"):
        expected = float(queue_length(prefix, queue))
        assert m["incident_guard_queue_depth"][(("queue", queue),)] == expected == QUEUED.get(queue, 0)


def test_backup_and_drill_metrics_equal_the_repository(world: World, server: Server) -> None:
    m = scrape(server)
    repo = Repository.open(world.backup_dir, create=False)
    (newest_id,) = repo.ids()
    manifest = repo.load(newest_id)
    finished = datetime.fromisoformat(manifest.finished_at).timestamp()
    assert m["incident_guard_backup_newest_timestamp_seconds"][()] == pytest.approx(finished)
    assert m["incident_guard_backup_last_success_timestamp_seconds"][()] == pytest.approx(finished)
    assert m["incident_guard_backup_newest_files"][()] == manifest.counts["files"]
    assert m["incident_guard_backup_newest_size_bytes"][()] == manifest.dump.size + manifest.counts["bytes"]
    drill = json.loads((world.backup_dir / "drills.jsonl").read_text().splitlines()[-1])
    assert drill["backup"] == newest_id and drill["ok"] is True
    assert m["incident_guard_backup_newest_verified"][()] == 1.0
    assert m["incident_guard_drill_last_success"][()] == 1.0
    assert m["incident_guard_drill_restore_seconds"][()] == pytest.approx(drill["restore_s"])
    assert m["incident_guard_drill_last_timestamp_seconds"][()] == pytest.approx(
        datetime.fromisoformat(drill["at"]).timestamp()
    )


def test_api_status_has_the_same_numbers(world: World, server: Server) -> None:
    m = scrape(server)
    status, text, _ = server.get("/api/status")
    assert status == 200
    document = json.loads(text)
    assert document["up"] is True and document["installed"] is True
    assert {
        (("check", f["check"]), ("kind", f["kind"])): float(f["open"]) for f in document["findings"]
    } == m["incident_guard_findings_open"]
    assert document["open_total"] == sum(m["incident_guard_findings_open"].values())
    assert document["queues"] == {"events": 3, "sweeps": 1, "alerts": 0}
    assert document["backups"][0]["verified"] is True
    assert document["open_daily"][-1]["open"] == document["open_total"]


def test_a_hostile_file_name_is_escaped_on_the_page_and_exact_in_json(server: Server) -> None:
    status, html, headers = server.get("/")
    assert status == 200 and headers["content-type"].startswith("text/html")
    assert "<script>" not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;.webp" in html
    document = json.loads(server.get("/api/status")[1])
    assert f"uploads/ads/{HOSTILE}" in {e["path"] for e in document["examples"]}


def test_no_secret_on_any_page(world: World, server: Server) -> None:
    """An open finding whose text holds every secret the world is configured with (as a failure's
    error text could): the pages show the finding, and none of the secrets."""
    leak = f"could not reach postgresql://postgres:{DB_PASSWORD}@db/app; {WEBHOOK}; {DSN}"
    [(finding,)] = rows(
        world.plain_url,
        "INSERT INTO guard.findings (check_name, kind, subject, message, path)"
        " VALUES ('backup', 'backup_failed', 'secret-test-subject', %s, %s) RETURNING id",
        (leak, leak),
    )
    try:
        for path in ("/", "/metrics", "/api/status", "/healthz"):
            body = server.get(path)[1]
            if path in ("/", "/api/status"):
                assert "secret-test-subject" in body, path  # the finding is on the page
            for secret in secrets():
                assert secret not in body, (path, secret)
    finally:
        # resolved, not deleted: the tally (which counts a deleted open finding as resolved) and the
        # ledger then agree for the tests that compare them, whatever order they run in
        rows(
            world.plain_url,
            "UPDATE guard.findings SET resolved_at = now() WHERE id = %s RETURNING id",
            (finding,),
        )


def test_healthz_answers_for_a_load_balancer(server: Server) -> None:
    assert server.get("/healthz")[:2] == (200, "ok\n")


def test_the_token_gates_every_page_but_healthz(gated: Server) -> None:
    for path in ("/", "/metrics", "/api/status"):
        status, body, headers = gated.get(path)
        assert status == 401, path
        assert TOKEN not in body
        assert headers["www-authenticate"].startswith("Bearer")
        assert gated.get(path, {"Authorization": "Bearer wrong-token"})[0] == 401
        assert gated.get(path, {"Authorization": f"Bearer {TOKEN}"})[0] == 200
    assert gated.get("/healthz")[0] == 200
    assert 'name="token"' in gated.get("/")[1]  # a person gets the sign-in form


def post_login(server: Server, token: str) -> http.client.HTTPResponse:
    host, port = server.url.removeprefix("http://").rstrip("/").split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=30)
    conn.request(
        "POST", "/login", body=f"token={token}", headers={"Content-Type": "application/x-www-form-urlencoded"}
    )
    return conn.getresponse()


def test_the_login_form_sets_an_http_only_cookie(gated: Server) -> None:
    assert post_login(gated, "wrong").status == 401
    answer = post_login(gated, TOKEN)
    assert answer.status == 303
    cookie = answer.getheader("set-cookie") or ""
    assert "httponly" in cookie.lower() and "samesite=strict" in cookie.lower()
    assert TOKEN not in cookie
    value = cookie.split(";", 1)[0]
    status, body, _ = gated.get("/", {"Cookie": value})
    assert status == 200 and "Open now" in body
    assert gated.get("/metrics", {"Cookie": "guard_session=forged"})[0] == 401


def test_binding_beyond_loopback_without_a_token_is_refused(world: World) -> None:
    for host in ("0.0.0.0", "::", "192.0.2.10"):
        done = guard("serve", "--host", host, "--port", "0", env=world.env, timeout=60)
        assert done.returncode == 2, done.stderr
        assert done.stderr.count("\n") == 1 and "GUARD_WEB_TOKEN" in done.stderr


def test_a_port_in_use_is_one_line_and_exit_3(world: World) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        done = guard("serve", "--port", str(port), env=world.env, timeout=60)
    assert done.returncode == 3, done.stderr
    assert done.stderr.count("\n") == 1 and f"127.0.0.1:{port}" in done.stderr


def test_an_unreachable_database_is_up_0_and_healthz_503(world: World, tmp_path: Path) -> None:
    env = {**world.env, "DATABASE_URL": "postgresql://postgres@127.0.0.1:1/none"}
    with running_serve(env) as server:
        m = scrape(server)
        assert m == {"incident_guard_up": {(): 0.0}}
        assert server.get("/healthz")[0] == 503
        assert "database unreachable" in server.get("/")[1]


def test_a_reading_is_reused_for_web_cache_seconds(world: World) -> None:
    with running_serve({**world.env, "WEB_CACHE_SECONDS": "3600"}) as server:
        first = scrape(server)
        rows(
            world.plain_url,
            "INSERT INTO guard.findings (check_name, kind, subject, message) "
            "VALUES ('integrity', 'cache_probe', 'ads:0', 'probe') RETURNING id",
        )
        try:
            assert scrape(server) == first  # the kept reading: the new row is not read again
            taken = {json.loads(server.get("/api/status")[1])["taken_at"] for _ in range(3)}
            assert len(taken) == 1
        finally:
            rows(
                world.plain_url,
                "UPDATE guard.findings SET resolved_at = now() WHERE kind = 'cache_probe' RETURNING id",
            )


def test_history_heartbeat_and_canary_metrics_equal_their_tables(world: World, server: Server) -> None:
    m = scrape(server)
    verdicts = dict(
        rows(
            world.plain_url,
            "SELECT outcome, count(*) FROM guard.history_events WHERE kind = 'predeploy' GROUP BY 1",
        )
    )
    assert verdicts == {"fail": 1}
    assert m["incident_guard_predeploy_runs_total"] == {
        (("verdict", v),): float(verdicts.get(v, 0)) for v in ("pass", "warn", "fail")
    }
    beats = rows(
        world.plain_url,
        "SELECT process, extract(epoch FROM max(seen_at))::float8 FROM guard.heartbeats GROUP BY 1",
    )
    assert {p for p, _ in beats} == {"worker", "listener"}
    shown = m["incident_guard_process_last_heartbeat_timestamp_seconds"]
    assert shown == pytest.approx({(("process", p),): t for p, t in beats})
    ((seen, latency),) = rows(
        world.plain_url,
        "SELECT extract(epoch FROM seen_at)::float8, latency_seconds FROM guard.canary "
        "WHERE seen_at IS NOT NULL ORDER BY seen_at DESC LIMIT 1",
    )
    assert m["incident_guard_canary_last_seen_timestamp_seconds"][()] == pytest.approx(seen)
    assert m["incident_guard_canary_latency_seconds"][()] == pytest.approx(latency)


def test_the_weekly_numbers_are_on_the_page_and_in_json(server: Server) -> None:
    from guard.history.weekly import LABELS, NAMES

    document = json.loads(server.get("/api/status")[1])
    this_week = document["weekly"][-1]
    assert list(this_week["numbers"]) == list(NAMES)
    assert this_week["numbers"]["predeploy_pass_rate"]["numerator"] == 0  # the one run failed
    assert this_week["numbers"]["predeploy_pass_rate"]["status"] == "missed"
    html = server.get("/")[1]
    for label in LABELS.values():
        assert label in html
