"""Alerts: every channel sits behind one Transport.notify() interface, fed from guard.notifications."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

from guard.config.settings import Settings
from guard.db.database import Row


class TransportError(Exception):
    """A channel could not take the notices; they stay queued and are tried again later."""


@dataclass(frozen=True)
class Notice:
    """One finding that opened or resolved, as a transport sees it."""

    id: int
    event: str
    finding_id: int
    check: str
    kind: str
    subject: str
    message: str
    path: str | None
    first_seen: datetime

    @classmethod
    def from_row(cls, row: Row) -> Notice:
        return cls(*row)


class Transport(Protocol):
    """A channel: which sent-column it owns, which events it wants, how often it may speak."""

    name: str
    column: str
    events: tuple[str, ...]
    min_interval: int

    def notify(self, notices: Sequence[Notice]) -> None: ...


def transports(settings: Settings) -> list[Transport]:
    """Return the configured channels (none when neither Sentry nor Slack is set)."""
    found: list[Transport] = []
    if settings.sentry_dsn:
        from guard.alerts.sentry import SentryTransport

        found.append(SentryTransport())
    if settings.slack_webhook_url:
        from guard.alerts.slack import SlackTransport

        found.append(
            SlackTransport(settings.slack_webhook_url.get_secret_value(), settings.slack_digest_seconds)
        )
    return found
