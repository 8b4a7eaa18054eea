"""Slack: at most one digest per interval of what opened and what resolved, via an incoming webhook."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from collections.abc import Sequence

from guard.alerts import Notice, TransportError
from guard.alerts.sentry import scrub_event
from guard.fs.paths import printable

TIMEOUT_S = 5
MAX_LINES = 20


class SlackTransport:
    """Posts one digest message; raises TransportError so the notices stay queued on failure."""

    name = "slack"
    column = "slack_sent_at"
    events: tuple[str, ...] = ("opened", "resolved")

    def __init__(self, webhook_url: str, min_interval: int = 60) -> None:
        self.webhook_url = webhook_url
        self.min_interval = min_interval

    def notify(self, notices: Sequence[Notice]) -> None:
        body = json.dumps({"text": digest(notices)}).encode("utf-8")
        request = urllib.request.Request(
            self.webhook_url, data=body, headers={"Content-Type": "application/json"}, method="POST"
        )
        try:
            with urllib.request.urlopen(request, timeout=TIMEOUT_S) as response:
                response.read()
        except (urllib.error.URLError, OSError, ValueError) as exc:
            raise TransportError(f"slack webhook: {type(exc).__name__}: {exc}") from None


def digest(notices: Sequence[Notice]) -> str:
    """Summarize notices in one message: counts, then up to MAX_LINES examples."""
    opened = [n for n in notices if n.event == "opened"]
    resolved = [n for n in notices if n.event == "resolved"]
    lines = [f"incident-guard: {len(opened)} opened, {len(resolved)} resolved"]
    for notice in [*opened, *resolved][:MAX_LINES]:
        mark = ":red_circle:" if notice.event == "opened" else ":white_check_mark:"
        text = f"{mark} {notice.check}/{notice.kind} {notice.subject}: {notice.message}"
        lines.append(printable(scrub_event(text))[:300])  # Sentry's scrubber: same rules
    if len(notices) > MAX_LINES:
        lines.append(f"... and {len(notices) - MAX_LINES} more (guard findings --open)")
    return "\n".join(lines)
