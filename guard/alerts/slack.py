"""Slack: at most one digest per interval of what opened and what resolved, via an incoming webhook."""

from __future__ import annotations

import logging
from collections.abc import Sequence

from slack_sdk.http_retry import RateLimitErrorRetryHandler, RetryState
from slack_sdk.http_retry.request import HttpRequest
from slack_sdk.http_retry.response import HttpResponse
from slack_sdk.webhook import WebhookClient

from guard.alerts import Notice, TransportError
from guard.alerts.sentry import scrub_event
from guard.config.settings import Settings
from guard.fs.paths import printable

TIMEOUT_S = 5
MAX_LINES = 20
MAX_RETRY_AFTER_S = 30  # wait out a 429 this long at most; a longer one is retried on the next run
# slack_sdk logs the full webhook URL at DEBUG and INFO; the URL is a password, so its logger says
# nothing and our own TransportError (with the URL scrubbed) tells what went wrong.
_SDK_LOG = logging.getLogger("guard.alerts.slack_sdk")
_SDK_LOG.setLevel(logging.CRITICAL + 1)
_SDK_LOG.propagate = False


def webhook_url(settings: Settings) -> str:
    """Return the webhook URL from the settings: the one place that reads the secret."""
    secret = settings.slack_webhook_url
    return secret.get_secret_value() if secret is not None else ""


class PatientRateLimitRetry(RateLimitErrorRetryHandler):
    """Wait out one 429 as Retry-After asks, unless it asks for longer than MAX_RETRY_AFTER_S."""

    def _can_retry(
        self,
        *,
        state: RetryState,
        request: HttpRequest,
        response: HttpResponse | None = None,
        error: Exception | None = None,
    ) -> bool:
        if response is None or not super()._can_retry(
            state=state, request=request, response=response, error=error
        ):
            return False
        asked = next((v for k, v in response.headers.items() if k.lower() == "retry-after"), ["1"])
        try:
            return int(asked[0]) <= MAX_RETRY_AFTER_S
        except (ValueError, IndexError):
            return True  # no usable number: the SDK waits about a second


class SlackTransport:
    """Posts one digest message; raises TransportError so the notices stay queued on failure."""

    name = "slack"
    column = "slack_sent_at"
    events: tuple[str, ...] = ("opened", "resolved")

    def __init__(self, webhook_url: str, min_interval: int = 60) -> None:
        self._client = WebhookClient(
            webhook_url, timeout=TIMEOUT_S, logger=_SDK_LOG, retry_handlers=[PatientRateLimitRetry()]
        )
        self.min_interval = min_interval

    def __repr__(self) -> str:
        return f"SlackTransport(min_interval={self.min_interval})"  # never the webhook

    def notify(self, notices: Sequence[Notice]) -> None:
        self.post(digest(notices))

    def post(self, text: str) -> None:
        """Send one message (a digest, the weekly report); TransportError, scrubbed, when Slack refuses."""
        try:
            response = self._client.send(text=text)
        except Exception as exc:  # urllib and the SDK raise many kinds; each becomes one scrubbed line
            raise TransportError(f"slack webhook: {type(exc).__name__}: {self._scrub(str(exc))}") from None
        if response.status_code != 200:
            body = self._scrub(str(response.body))[:200]
            raise TransportError(f"slack webhook: HTTP {response.status_code}: {body}")

    def _scrub(self, text: str) -> str:
        """Remove the webhook URL and its path (the secret part, with or without `services/`) from a text."""
        url = self._client.url
        path = url.split("://", 1)[-1].partition("/")[2]
        text = text.replace(url, "<webhook>")
        for secret in (path, path.partition("/")[2]):
            if secret:
                text = text.replace(secret, "<webhook>")
        return text


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
