"""The HTML report is one self-contained file: inline CSS and SVG, no script, no outside URL, all escaped."""

from __future__ import annotations

import re
from datetime import UTC, date, datetime
from html.parser import HTMLParser

from guard.history.accesslog import AccessTally
from guard.history.weekly import (
    AD_404,
    BACKUPS,
    DRIFT,
    MISSED,
    MISSING_IMAGES,
    NO_DATA,
    PREDEPLOY,
    Number,
    Week,
)
from guard.history.weekly_html import render

HOSTILE = '/var/log/<script>alert("x")</script>&.log'


def _weeks() -> list[Week]:
    full = (
        Number(DRIFT, 0, None, "met"),
        Number(AD_404, 3, 1000, MISSED, "access_log"),
        Number(MISSING_IMAGES, 1, 1000, "met"),
        Number(BACKUPS, 6, 7, MISSED),
        Number(PREDEPLOY, 20, 20, "met"),
    )
    empty = tuple(Number(n.name, None, None if n.name == DRIFT else 0, NO_DATA, n.method) for n in full)
    return [
        Week(datetime(2026, 11, 16, tzinfo=UTC), empty, True),
        Week(datetime(2026, 11, 23, tzinfo=UTC), full, False),
    ]


class _Tags(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict[str, str | None]]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))


def test_the_file_needs_nothing_from_outside_and_escapes_what_it_shows() -> None:
    access = AccessTally(
        files=[HOSTILE], lines=10, malformed=2, ad_requests=1000, weeks={date(2026, 11, 23): (1000, 3)}
    )
    page = render(_weeks(), generated_at=datetime(2026, 11, 24, 8, tzinfo=UTC), access=access)
    parsed = _Tags()
    parsed.feed(page)
    names = [t for t, _ in parsed.tags]
    assert "script" not in names and "link" not in names and "img" not in names and "iframe" not in names
    assert names.count("svg") == 5 and "style" in names
    for _, attrs in parsed.tags:  # no attribute loads anything (the SVG namespace is a name, not a load)
        assert not any(k in ("src", "href") for k in attrs)
        assert not any(k.startswith("on") for k in attrs)
    assert "<script>" not in page and "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;&amp;.log" in page
    assert not re.search(r"https?://(?!www\.w3\.org/2000/svg)", page)
    assert "measured from the access log" in page and "2 malformed lines skipped" in page


def test_the_table_shows_each_number_against_its_target_and_no_data_as_such() -> None:
    page = render(_weeks(), generated_at=datetime(2026, 11, 24, 8, tzinfo=UTC), access=None)
    assert "measured from the slugs" in page
    assert '<td class="missed" title="missed (3 of 1000)">0.3%</td>' in page
    assert '<td class="missed" title="missed (6 of 7)">85.71%</td>' in page
    assert '<td class="met" title="met (20 of 20)">100%</td>' in page
    assert page.count('<td class="nodata" title="no data">no data</td>') == 5
    assert "2026-W48 (so far)" in page and "2026-W47<" in page
