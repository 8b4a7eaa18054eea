"""No secret leaves in a Sentry event: a real worker's task fails with secret settings all around it."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest
from sync_stack import FakeSentry, Stack, wait_for

from guard.config.settings import Settings
from guard.continuous.capture import install
from guard.db.database import Database

pytestmark = pytest.mark.integration


def test_a_failing_task_sends_sentry_no_password_dsn_or_webhook(db_url: str, tmp_path: Path) -> None:
    tag = uuid.uuid4().hex[:8]
    password = f"db-pw-{tag}"  # the server trusts local connections: any password connects
    part = dict(pair.split("=", 1) for pair in db_url.split())
    secret_url = f"postgresql://{part['user']}:{password}@{part['host']}:{part['port']}/{part['dbname']}"
    sentry = FakeSentry()
    dsn_key = f"dsnkey{tag}"
    dsn = sentry.dsn.replace("://public@", f"://{dsn_key}@")
    webhook = f"http://127.0.0.1:9/services/T0/B0/hook-{tag}"
    with Database(db_url) as db:
        install(db, Settings(database_url=db_url, uploads_root=tmp_path))
    stack = Stack(
        secret_url,
        tmp_path,
        tmp_path,
        sentry_dsn=dsn,
        slack_webhook_url=webhook,
        shadow_database_url=secret_url,
    )
    try:
        stack.worker()
        with stack.client() as client:  # a key that is no id: the task raises, Sentry captures it
            client.send_task("guard.check_rows", args=["ads", ["not-an-id"], [], []], queue="events")
        wait_for(lambda: sentry.exceptions, "the task's exception event")
    finally:
        stack.close()
        sentry.close()

    sent = b"\n".join(sentry.bodies).decode(errors="replace")
    assert "not-an-id" in sent  # the event is the task's failure
    leaked = [s for s in (password, dsn, webhook, f"hook-{tag}") if s in sent]
    assert leaked == []
    # the DSN's public key is the SDK's credential (the auth header, the envelope's trace header); no
    # event item carries it
    envelopes = [b.split(b"\n\n", 1)[-1].lstrip(b"\n") for b in sentry.bodies]
    events = b"\n".join(e.split(b"\n", 1)[-1] for e in envelopes).decode(errors="replace")
    assert dsn_key not in events
