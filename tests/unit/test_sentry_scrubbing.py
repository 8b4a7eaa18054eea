"""Sentry sees no configured secret, and guard learns of lost events through the SDK's public API."""

from __future__ import annotations

from typing import Any

import sentry_sdk
from sentry_sdk.envelope import Envelope

from guard.alerts.sentry import DeliveryTransport, Scrubber
from guard.config.settings import load_settings

SECRETS = {
    "DATABASE_URL": "postgresql://app:hunter2-db-pw@db.internal/app",
    "SENTRY_DSN": "https://dsnkey4242@o1.ingest.example/42",
    "SLACK_WEBHOOK_URL": "https://hooks.slack.example/services/T0/B0/webhook-secret-99",
}


def test_configured_secrets_are_scrubbed_anywhere_in_the_event_frame_vars_included() -> None:
    scrub = Scrubber(load_settings(environ=SECRETS).secret_values())
    event: dict[str, Any] = {
        "message": "posting to https://hooks.slack.example/services/T0/B0/webhook-secret-99 failed",
        "exception": {
            "values": [
                {
                    "value": "auth failed for app:hunter2-db-pw",
                    "stacktrace": {
                        "frames": [{"vars": {"dsn": "'https://dsnkey4242@o1.ingest.example/42'"}}]
                    },
                }
            ]
        },
        "extra": {"password only": ("hunter2-db-pw",)},
    }
    text = repr(scrub(event))
    assert not [s for s in ("hunter2-db-pw", "dsnkey4242", "webhook-secret-99") if s in text]
    assert "failed" in text  # the rest of the event is kept


def test_the_transport_counts_a_lost_error_event_and_not_other_losses() -> None:
    client = sentry_sdk.Client(dsn="http://public@127.0.0.1:9/1", transport=DeliveryTransport)
    transport = client.transport
    assert isinstance(transport, DeliveryTransport)
    try:
        envelope = Envelope()
        envelope.add_event({"message": "x"})
        transport.record_lost_event("network_error", item=envelope.items[0])
        transport.record_lost_event("ratelimit_backoff", data_category="session")
        assert transport.lost_events == 1
    finally:
        client.close()
