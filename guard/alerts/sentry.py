"""Sentry: one event per newly opened finding, grouped per check and kind, passwords scrubbed."""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

import sentry_sdk

from guard.alerts import Notice, TransportError
from guard.config.redact import redact

FLUSH_TIMEOUT_S = 5.0
TAG_LIMIT = 200  # Sentry drops tag values longer than this
_CONNECTION_URL = re.compile(r"\b(?:postgres(?:ql)?|redis|rediss|amqp)://[^\s'\"]+", re.I)


def init_sentry(dsn: str, integrations: Sequence[Any] = (), environment: str | None = None) -> None:
    """Start the SDK with the scrubber; workers/ passes the Celery integration in."""
    sentry_sdk.init(
        dsn=dsn,
        integrations=list(integrations),
        before_send=scrub_event,
        send_default_pii=False,
        environment=environment,
        shutdown_timeout=2,
    )


def scrub_event(event: Any, hint: Any = None) -> Any:
    """Redact every string in the event: no password or connection string leaves."""
    if isinstance(event, str):
        return _CONNECTION_URL.sub("<connection string>", redact(event))
    if isinstance(event, dict):
        return {key: scrub_event(value) for key, value in event.items()}
    if isinstance(event, list):
        return [scrub_event(value) for value in event]
    if isinstance(event, tuple):
        return tuple(scrub_event(value) for value in event)
    return event


def event_for(notice: Notice) -> dict[str, Any]:
    """Build the event: one Sentry issue per check and kind; the subject is a tag, not the title."""
    return {
        "message": f"{notice.check}/{notice.kind}: {notice.message}",
        "level": "warning",
        "logger": "incident-guard",
        "fingerprint": ["incident-guard", notice.check, notice.kind],
        "tags": {
            "check": notice.check,
            "kind": notice.kind,
            "subject": notice.subject[:TAG_LIMIT],
        },
        "extra": {
            "finding_id": notice.finding_id,
            "path": notice.path,
            "first_seen": notice.first_seen.isoformat(),
        },
    }


class SentryTransport:
    """Hands events to the SDK, then waits for them to leave; raises TransportError if any did not."""

    name = "sentry"
    column = "sentry_sent_at"
    events: tuple[str, ...] = ("opened",)
    min_interval = 0

    def notify(self, notices: Sequence[Notice]) -> None:
        client = sentry_sdk.get_client()
        transport: Any = client.transport
        if not client.is_active() or transport is None:
            raise TransportError("sentry: the SDK is not initialised")
        dropped: list[str] = []
        original = transport.on_dropped_event  # the SDK's hook for every event it gives up on

        def count(reason: str) -> None:
            dropped.append(reason)
            original(reason)

        transport.on_dropped_event = count
        try:
            for notice in notices:
                if sentry_sdk.capture_event(scrub_event(event_for(notice))) is None:
                    dropped.append("not captured")
            sentry_sdk.flush(timeout=FLUSH_TIMEOUT_S)
        finally:
            del transport.on_dropped_event  # back to the class's method
        if dropped:
            raise TransportError(f"sentry: {len(dropped)} event(s) not delivered ({dropped[0]})")
        if _still_queued(transport):
            raise TransportError(f"sentry: events still queued after {FLUSH_TIMEOUT_S}s")


def _still_queued(transport: Any) -> bool:
    """Tell whether the SDK's background worker still holds unsent work after a flush."""
    queue = getattr(getattr(transport, "_worker", None), "_queue", None)
    return bool(queue is not None and getattr(queue, "unfinished_tasks", 0))
