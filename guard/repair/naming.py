"""Slugs from titles: `<slugified title>-<id>` (a template), transliterated, `ad-<id>` when nothing is left.

Devanagari goes through anyascii, the rest through unidecode (python-slugify's own): unidecode spells
each Devanagari letter with its inherent vowel doubled ("बिक्रीमा होन्डा सिटी" -> "bikriimaa-honddaa-
sittii"), anyascii as a Nepali reader would ("bikrima-honda-siti"); for Chinese and most other scripts
unidecode separates the syllables and anyascii runs them together, so each gets the script it is better at.
"""

from __future__ import annotations

import re

from anyascii import anyascii
from slugify import slugify

DEVANAGARI = re.compile(r"[\u0900-\u097F\uA8E0-\uA8FF]+")
TITLE_MAX = 80  # characters of the title part; the whole slug stays well under ads.slug's 300


def transliterate(title: str) -> str:
    """Spell the Devanagari runs of a title in Latin letters; other scripts are left to slugify."""
    return DEVANAGARI.sub(lambda m: f" {anyascii(m.group())} ", title)


def title_part(title: str | None) -> str:
    """Return the slugified title: lower-case ASCII words joined by '-', possibly empty."""
    return str(slugify(transliterate(title or ""), max_length=TITLE_MAX, word_boundary=True))


def fallback(key: str) -> str:
    """The slug for a title that leaves nothing usable."""
    return f"ad-{key}"


def render(template: str, title: str | None, key: str) -> str:
    """Render the template for one ad, or the fallback when the title gives nothing."""
    part = title_part(title)
    if not part:
        return fallback(key)
    return template.format_map({"title": part, "id": key})
