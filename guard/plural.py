"""Count words for messages people read: "1 way", "2 ways"."""

from __future__ import annotations


def plural(count: int, word: str, many: str | None = None) -> str:
    """Return the count and the word, in its plural form (word + 's' unless `many` is given) unless 1."""
    return f"{count:,} {word if count == 1 else (many or word + 's')}"
