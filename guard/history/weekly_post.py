"""The weekly report as one Slack message: the week that just ended against its targets and the week before.

Sent by beat (REPORT_CRON, Monday 08:00 UTC by default) through the one Slack seam, guard/alerts/slack.py,
which never lets the webhook URL into a log line or an error.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import timedelta

from guard.alerts.slack import SlackTransport, webhook_url
from guard.config.settings import Settings
from guard.db.database import Database
from guard.errors import ConfigError, UsageError
from guard.history import accesslog
from guard.history.accesslog import AccessTally
from guard.history.weekly import (
    LABELS,
    MET,
    MISSED,
    NAMES,
    TARGETS,
    Week,
    expects_daily_backups,
    weekly_numbers,
)

MARKS = {MET: ":white_check_mark:", MISSED: ":red_circle:"}
NO_DATA_MARK = ":grey_question:"
WEEKS = 3  # the week before last, last week (the report), and this week so far


def summary(weeks: Sequence[Week], access: AccessTally | None = None) -> str:
    """Say last week's five numbers, each against its target and the week before; then this week so far."""
    reported, before, now = weeks[-2], weeks[-3], weeks[-1]
    misses = len(reported.misses)
    verdict = (
        f"{misses} target{'s' if misses != 1 else ''} missed" if misses else "every target with data met"
    )
    lines = [
        f"incident-guard weekly report, {reported.label} "
        f"({reported.start:%a %d %b} to {reported.end - timedelta(days=1):%a %d %b}): {verdict}"
    ]
    for name in NAMES:
        number = reported.number(name)
        mark = MARKS.get(number.status, NO_DATA_MARK)
        lines.append(
            f"{mark} {LABELS[name]}: {number.shown()} (target {TARGETS[name]}; "
            f"{before.label}: {before.number(name).shown()}; {now.label} so far: {now.number(name).shown()})"
        )
    method = "the access log" if access is not None else "ads whose slug cannot resolve"
    lines.append(f"404s measured from {method}. Details: guard report --html FILE")
    return "\n".join(lines)


def post_weekly(settings: Settings) -> str:
    """Compute the report and post it to Slack; return the text sent."""
    if not settings.slack_webhook_url:
        raise ConfigError("SLACK_WEBHOOK_URL is not set: nowhere to post the weekly report")
    access, unread = None, ""
    if settings.access_log:
        try:
            access = accesslog.tally(accesslog.expand([settings.access_log]), settings.ad_route)
        except UsageError as exc:  # a rotated-away or torn log must not cost the week its report
            unread = f"\nACCESS_LOG not read ({exc}); 404s measured from slugs instead."
    with Database(settings.require_database_url(), application_name="guard-report") as db:
        weeks = weekly_numbers(db, WEEKS, access=access, daily_backups=expects_daily_backups(settings))
    text = summary(weeks, access) + unread
    SlackTransport(webhook_url(settings)).post(text)
    return text
