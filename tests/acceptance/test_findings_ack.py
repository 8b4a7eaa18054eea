"""The real `guard findings ack`: shown by every listing, honoured by predeploy, expiring by itself."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from guard.config.settings import Settings
from guard.continuous import liveness
from guard.continuous.process import process_rows
from guard.db.database import Database
from tests.acceptance.cli import guard

pytestmark = pytest.mark.acceptance


@pytest.fixture
def env(db_url: str) -> dict[str, str]:
    """An installed database with one open finding: ads:1's slug 'Bad' fails ads.slug.format."""
    settings = {"DATABASE_URL": db_url, "BROKER_PREFIX": "guardtest-ack:", "HEARTBEAT_STALE_SECONDS": "3600"}
    assert guard("install", env=settings).returncode == 0
    with Database(db_url) as db:
        for process in ("listener", "worker", "beat"):  # as if they ran, so status judges only findings
            liveness.record(db, process, "here", "localhost", os.getpid())
        db.execute("INSERT INTO users (id, email) VALUES (1, 'a@example.com')")
        db.execute("INSERT INTO categories (id, name, slug) VALUES (1, 'Cars', 'cars')")
        db.execute("INSERT INTO ads (id, title, slug, category_id, user_id) VALUES (1, 't', 'Bad', 1, 1)")
    process_rows(Settings(database_url=db_url), "ads", ["1"])
    return settings


def _finding_id(env: dict[str, str]) -> int:
    listed = json.loads(guard("findings", "--json", env=env).stdout)
    [finding] = listed["findings"]
    return int(finding["id"])


def predeploy(env: dict[str, str], *args: str) -> tuple[int, dict[str, object]]:
    done = guard("predeploy", "--only", "integrity", "--json", *args, env=env)
    return done.returncode, json.loads(done.stdout)


def test_an_acknowledged_finding_is_listed_with_who_why_and_until_and_passes_predeploy(
    env: dict[str, str], db_url: str
) -> None:
    assert predeploy(env)[0] == 1  # not acknowledged yet: it blocks
    fid = _finding_id(env)
    acked = guard(
        "findings",
        "ack",
        str(fid),
        "--reason",
        "known, fix in #12",
        "--by",
        "alice",
        "--until",
        "7d",
        env=env,
    )
    assert acked.returncode == 0, acked.stderr
    assert "alice" in acked.stdout and "known, fix in #12" in acked.stdout

    listed = guard("findings", "--json", env=env)
    assert listed.returncode == 0  # only acknowledged findings are open
    [finding] = json.loads(listed.stdout)["findings"]
    assert finding["ack"]["by"] == "alice" and finding["ack"]["reason"] == "known, fix in #12"
    assert finding["ack"]["until"] is not None
    human = guard("findings", env=env).stdout
    assert "acked" in human and "1 open (1 acknowledged), 0 resolved" in human
    status = guard("status", "--json", env=env)
    assert status.returncode == 0 and json.loads(status.stdout)["acknowledged_findings"] == {"integrity": 1}

    code, document = predeploy(env)
    assert code == 0 and document["ok"] is True
    [known] = document["acknowledged"]  # type: ignore[misc]
    assert known["subject"] == "ads:1" and known["ack"]["reason"] == "known, fix in #12"
    human = guard("predeploy", "--only", "integrity", env=env).stdout
    assert "acknowledged (1, not failing the deploy)" in human and "alice" in human and "PASSED" in human

    with Database(db_url) as db:  # a second bad row is not covered by an acknowledgement of ads:1
        db.execute("INSERT INTO ads (id, title, slug, category_id, user_id) VALUES (2, 't', 'Worse', 1, 1)")
    code, document = predeploy(env)
    failing = [f["subject"] for c in document["checks"] for f in c["findings"]]  # type: ignore[attr-defined]
    assert code == 1 and failing == ["ads:2"]


def test_an_acknowledgement_expires_by_itself(env: dict[str, str], db_url: str) -> None:
    fid = _finding_id(env)
    assert guard("findings", "ack", str(fid), "--reason", "for now", "--until", "1h", env=env).returncode == 0
    assert predeploy(env)[0] == 0
    with Database(db_url) as db:  # an hour passes
        db.execute("UPDATE guard.acks SET until = now() - interval '1 second'")
    assert guard("findings", env=env).returncode == 1
    code, document = predeploy(env)
    assert code == 1 and document["acknowledged"] == []


def test_a_kind_is_acknowledged_for_every_subject_now_and_later(env: dict[str, str], db_url: str) -> None:
    done = guard("findings", "ack", "--kind", "ads.slug.format", "--reason", "legacy slugs", env=env)
    assert done.returncode == 0 and "every ads.slug.format finding (1 open now)" in done.stdout
    with Database(db_url) as db:
        db.execute("INSERT INTO ads (id, title, slug, category_id, user_id) VALUES (2, 't', 'Worse', 1, 1)")
    code, document = predeploy(env)
    assert code == 0 and sorted(k["subject"] for k in document["acknowledged"]) == ["ads:1", "ads:2"]  # type: ignore[attr-defined]


def test_ack_refuses_an_unknown_id_a_past_date_and_no_reason(env: dict[str, str]) -> None:
    unknown = guard("findings", "ack", "999999", "--reason", "x", env=env)
    assert unknown.returncode == 2 and unknown.stderr.count("\n") == 1 and "999999" in unknown.stderr
    assert guard("findings", "ack", "1", "--reason", "x", "--until", "2001-01-01", env=env).returncode == 2
    assert guard("findings", "ack", "1", env=env).returncode == 2


def test_predeploy_only_and_skip_choose_the_checks(env: dict[str, str], tmp_path: Path) -> None:
    env = {**env, "UPLOADS_ROOT": str(tmp_path)}
    code, document = predeploy(env)
    assert code == 1 and [c["name"] for c in document["checks"]] == ["integrity"]  # type: ignore[attr-defined]
    assert document["skipped"] == ["health", "files", "migrations", "drift"]
    done = guard("predeploy", "--skip", "integrity", "files", "migrations", "drift", "--json", env=env)
    assert done.returncode == 0, done.stdout
    assert [c["name"] for c in json.loads(done.stdout)["checks"]] == ["health"]
    both = guard("predeploy", "--only", "health", "--skip", "drift", env=env)
    assert both.returncode == 2
    assert guard("predeploy", "--only", "nosuch", env=env).returncode == 2
