"""Counts read as English: "1 way", "2 ways", and no message pastes an 's' after a count by hand."""

from __future__ import annotations

import re
from pathlib import Path

from guard.plural import plural

ROOT = Path(__file__).resolve().parents[2]
# A placeholder followed by a plural noun in an f-string: reads "1 ways" when the count is 1.
HAND_MADE = re.compile(
    r"\{[^{}]*\}\s+(?:\w+\s+)?(ways|objects|files|rows|bytes|migrations|findings|paths|sessions|were)\b"
)


def test_plural_agrees_with_the_count() -> None:
    assert plural(1, "way") == "1 way"
    assert plural(2, "way") == "2 ways"
    assert plural(0, "new object") == "0 new objects"
    assert plural(1_000, "file") == "1,000 files"
    assert plural(1, "was", "were") == "1 was" and plural(3, "was", "were") == "3 were"


def test_no_message_puts_a_plural_after_a_count_by_hand() -> None:
    found = [
        f"{path.relative_to(ROOT)}:{n}: {line.strip()}"
        for path in sorted((ROOT / "guard").rglob("*.py"))
        for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1)
        if 'f"' in line and HAND_MADE.search(line) and "plural(" not in line
    ]
    assert not found, "\n".join(found)
