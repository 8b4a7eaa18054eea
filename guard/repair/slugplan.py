"""The slug repair's plan, from plain values: which ads get which new slug, and why.

Only a slug that fails a rule is rewritten: NULL or blank (required), malformed (format), or shared
(unique). Of the ads sharing a valid slug the one with the lowest id (the oldest) keeps it, so the
link people have shared most likely still shows the ad it always did; the others are rewritten. A
new slug ends in the ad's id, is checked against the format rule (else `ad-<id>`), and against the
slugs already in the table and in the plan, so the plan cannot create a duplicate.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from guard.errors import ConfigError
from guard.repair.naming import fallback, render

MISSING, MALFORMED, DUPLICATE = "missing", "malformed", "duplicate"
Matcher = Callable[[Sequence[str]], list[bool]]  # which candidates match the format rule
Taken = Callable[[Sequence[str]], set[str]]  # which candidates some row already holds


@dataclass(frozen=True)
class Flagged:
    """An ad whose slug broke a rule, as the integrity check flagged it."""

    key: str
    slug: str | None
    title: str | None
    missing: bool
    malformed: bool
    duplicate: bool


@dataclass(frozen=True)
class SlugChange:
    """One planned rewrite."""

    key: str
    old: str | None
    new: str
    reason: str

    @property
    def redirect(self) -> bool:
        """A malformed or duplicated slug was a live link: its old value should redirect to the new."""
        return self.reason in (MALFORMED, DUPLICATE)

    def to_json(self) -> dict[str, Any]:
        return {"id": self.key, "old": self.old, "new": self.new, "reason": self.reason}


def plan_slugs(flagged: Iterable[Flagged], template: str, matches: Matcher, taken: Taken) -> list[SlugChange]:
    """Return the rewrites, in key order, each new slug valid and unique."""
    chosen = sorted(_to_rewrite(list(flagged)), key=lambda f: _order(f[0].key))
    candidates = [render(template, f.title, f.key) for f, _ in chosen]
    candidates = _valid(candidates, [f.key for f, _ in chosen], matches)
    finals = _unique(candidates, taken, matches)
    return [SlugChange(f.key, f.slug, new, reason) for (f, reason), new in zip(chosen, finals, strict=True)]


def _to_rewrite(flagged: list[Flagged]) -> list[tuple[Flagged, str]]:
    """Every missing or malformed slug, and every holder of a shared valid slug but the lowest id."""
    out: list[tuple[Flagged, str]] = []
    shared: dict[str, list[Flagged]] = {}
    for f in flagged:
        if f.missing:
            out.append((f, MISSING))
        elif f.malformed:
            out.append((f, MALFORMED))
        elif f.duplicate and f.slug is not None:
            shared.setdefault(f.slug, []).append(f)
    for holders in shared.values():
        holders.sort(key=lambda f: _order(f.key))
        out.extend((f, DUPLICATE) for f in holders[1:])
    return out


def _valid(candidates: list[str], keys: list[str], matches: Matcher) -> list[str]:
    """Replace a candidate the format rule rejects by the fallback; fail if the fallback fails too."""
    if not candidates:
        return candidates
    verdicts = matches(candidates)
    out = [c if ok else fallback(k) for c, ok, k in zip(candidates, verdicts, keys, strict=True)]
    rejected = [c for c, ok in zip(out, matches(out), strict=True) if not ok]
    if rejected:
        raise ConfigError(
            f"slug {rejected[0]!r} (the fallback) does not match the format rule; "
            "set slug_template or the rule so that slugs built from the id pass it"
        )
    return out


def _unique(candidates: list[str], taken: Taken, matches: Matcher) -> list[str]:
    """Give a candidate some row or an earlier candidate holds a suffix -2, -3, ... until it is free."""
    held = taken(candidates) if candidates else set()
    used: set[str] = set()
    out: list[str] = []
    for candidate in candidates:
        slug, n = candidate, 1
        while slug in held or slug in used:
            n += 1
            slug = f"{candidate}-{n}"
            held |= taken([slug])
        if slug != candidate and not matches([slug])[0]:
            raise ConfigError(f"slug {slug!r} (made unique) does not match the format rule")
        used.add(slug)
        out.append(slug)
    return out


def _order(key: str) -> tuple[int, int | str]:
    """Sort numeric keys as numbers ('9' before '10') and others as text."""
    return (0, int(key)) if key.isdigit() else (1, key)
