"""Sentry: one event per newly opened finding, grouped per check and kind, passwords scrubbed."""

from __future__ import annotations

import re
import time
from collections.abc import Iterable, Sequence
from typing import Any

import sentry_sdk
from sentry_sdk.envelope import Item
from sentry_sdk.transport import HttpTransport

from guard.alerts import Notice, TransportError
from guard.config.redact import redact

FLUSH_TIMEOUT_S = 5.0
TAG_LIMIT = 200  # Sentry drops tag values longer than this
_CONNECTION_URL = re.compile(r"\b(?:postgres(?:ql)?|redis|rediss|amqp)://[^\s'\"]+", re.I)
SECRET_MARK = "<secret>"


def init_sentry(
    dsn: str, integrations: Sequence[Any] = (), environment: str | None = None, secrets: Iterable[str] = ()
) -> None:
    """Start the SDK with the scrubber and no frame locals; workers/ passes the Celery integration in."""
    sentry_sdk.init(
        dsn=dsn,
        integrations=list(integrations),
        before_send=Scrubber([dsn, *secrets]),
        send_default_pii=False,
        include_local_variables=False,  # a frame's locals may hold a URL or a conninfo with its password
        environment=environment,
        shutdown_timeout=2,
        transport=DeliveryTransport,
    )


class Scrubber:
    """Redact every string in an event: passwords, connection strings and the configured secrets."""

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        self.secrets = sorted({s for s in secrets if s}, key=len, reverse=True)  # longest first

    def __call__(self, event: Any, hint: Any = None) -> Any:
        """Return the event with nothing secret left in any of its strings (keys included)."""
        if isinstance(event, str):
            return self._text(event)
        if isinstance(event, dict):
            return {self(key): self(value) for key, value in event.items()}
        if isinstance(event, list):
            return [self(value) for value in event]
        if isinstance(event, tuple):
            return tuple(self(value) for value in event)
        return event

    def _text(self, text: str) -> str:
        for secret in self.secrets:
            text = text.replace(secret, SECRET_MARK)
        return _CONNECTION_URL.sub("<connection string>", redact(text))


scrub_event = Scrubber()  # passwords and connection strings only: for events built before the SDK starts


class DeliveryTransport(HttpTransport):
    """The SDK's HTTP transport, counting the error events it gives up on through its public hook."""

    def __init__(self, options: dict[str, Any]) -> None:
        super().__init__(options)
        self.lost_events = 0

    def record_lost_event(
        self,
        reason: str,
        data_category: Any = None,
        item: Item | None = None,
        *,
        quantity: int = 1,
    ) -> None:
        """Count a lost error event (an alert), then let the SDK report the loss as ever."""
        category = item.data_category if item is not None else data_category
        if category == "error":
            self.lost_events += quantity
        super().record_lost_event(reason, data_category, item, quantity=quantity)


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
        transport = client.transport
        if not client.is_active() or not isinstance(transport, DeliveryTransport):
            raise TransportError("sentry: the SDK is not initialised (guard.alerts.sentry.init_sentry)")
        lost_before = transport.lost_events
        not_captured = 0
        for notice in notices:
            if sentry_sdk.capture_event(scrub_event(event_for(notice))) is None:
                not_captured += 1
        started = time.monotonic()
        sentry_sdk.flush(timeout=FLUSH_TIMEOUT_S)
        # flush() returns once the queue is empty or the timeout has passed: a full wait means unsent work
        drained = time.monotonic() - started < FLUSH_TIMEOUT_S
        lost = transport.lost_events - lost_before + not_captured
        if lost:
            raise TransportError(f"sentry: {lost} event(s) not delivered")
        if not drained:
            raise TransportError(f"sentry: events still queued after {FLUSH_TIMEOUT_S}s")
