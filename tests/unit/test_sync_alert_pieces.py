"""Alert pieces with no I/O: scrubbing, grouping, the digest, the beat schedule."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from guard.alerts import Notice
from guard.alerts.sentry import event_for, scrub_event
from guard.alerts.slack import digest
from guard.config.settings import Settings
from guard.errors import ConfigError
from workers.schedule import beat_schedule, cron


def notice(event: str = "opened", subject: str = "ads:1") -> Notice:
    return Notice(
        1,
        event,
        7,
        "integrity",
        "ads.slug.format",
        subject,
        "slug 'X' bad",
        None,
        datetime(2024, 1, 1, tzinfo=UTC),
    )


def test_scrub_removes_passwords_and_connection_strings() -> None:
    event = {
        "message": "cannot reach postgresql://app:s3cret@db/prod",
        "extra": {"dsn": ["host=db password=hunter2 dbname=x"]},
    }
    text = str(scrub_event(event))
    assert "s3cret" not in text and "hunter2" not in text and "postgresql://" not in text


def test_event_groups_by_check_and_kind_with_the_subject_as_a_tag() -> None:
    one, two = event_for(notice(subject="ads:1")), event_for(notice(subject="ads:2"))
    assert one["fingerprint"] == two["fingerprint"] == ["incident-guard", "integrity", "ads.slug.format"]
    assert (one["tags"]["subject"], two["tags"]["subject"]) == ("ads:1", "ads:2")


def test_digest_counts_opened_and_resolved_and_caps_examples() -> None:
    text = digest([notice()] * 30 + [notice("resolved")])
    assert text.splitlines()[0] == "incident-guard: 30 opened, 1 resolved"
    assert "and 11 more" in text


def test_beat_schedule_follows_settings() -> None:
    plain = beat_schedule(Settings())
    assert {"sweep-integrity", "sweep-files"} <= set(plain) and "backup" not in plain
    from pathlib import Path

    full = beat_schedule(Settings(migrations_dir=Path("m"), backup_dir=Path("b")))
    assert {"sweep-migrations", "sweep-drift", "backup", "prune", "drill"} <= set(full)
    assert full["backup"]["schedule"] == cron("0 2 * * *", "backup_cron")
    with pytest.raises(ConfigError, match="SWEEP_CRON"):
        beat_schedule(Settings(sweep_cron="hourly"))
