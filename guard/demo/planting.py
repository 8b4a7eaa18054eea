"""Decide a demo world's incidents up front, as plain values, so the truth is what was planted."""

from __future__ import annotations

import random
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from functools import partial
from itertools import count, cycle, islice
from typing import Any

# Slugs that are not blank but break ^[a-z0-9]+(-[a-z0-9]+)*-[0-9]+$; {id} keeps each one unique.
BAD_SLUG_FORMATS = (
    "Honda City {id}",
    "abc{id}",
    "x--y-{id}",
    "honda_city_{id}",
    "honda-city-{id}-",
    "-honda-{id}",
    "honda-city-{id}x",
    "ñandú-{id}",
)
BLANK_SLUGS: tuple[str | None, ...] = (None, "", "   ")
BLANK_TEXTS = ("", " ", "   ")
BLANK_PATHS: tuple[str | None, ...] = (None, "", "   ")

# Referenced files with awkward names: every one exists and none is a finding.
CLEAN_ODD_NAMES = (
    "ad-1759979208010-photo 1.webp",
    "ad-1759979208010-it's mine.webp",
    'ad-1759979208010-say "cheese".webp',
    "ad-1759979208010-line\nbreak.webp",
    "ad-1759979208010-tab\there.webp",
    "ad-1759979208010-ñandú.webp",
    "ad-1759979208010-日本の車.webp",
    "ad-1759979208010-🚗 fast.webp",
    "-leading-dash.webp",
    "ad-1759979208010-v2..final.webp",
)
ODD_MISSING_NAMES = (
    "ad-1759979208011-missing photo.webp",
    "ad-1759979208011-gone'quote.webp",
    "ad-1759979208011-ñandú-missing.webp",
    "ad-1759979208011-new\nline-missing.webp",
)
ODD_ORPHAN_NAMES = (
    "ad-1759979208012-orphan copy (1).webp",
    "ad-1759979208012-日本-orphan.webp",
    "-dash-orphan.webp",
    "ad-1759979208012-tab\torphan.webp",
)
SHARED_TARGET = "placeholder.webp"  # the real file in uploads/shared/
SHARED_LINK = "ad-shared-placeholder.webp"  # referenced symlink in uploads/ads -> ../shared/
STRAY_LINK = "ad-stray-placeholder.webp"  # unreferenced symlink in uploads/ads -> ../shared/
DANGLING_AD_BASE = 2_000_000_000  # ad ids far above any serial value the world or its users reach
PLANT_STAMP_MS = 1_759_979_208_010

AdPicker = Callable[[], int]

# How a planted image row's file is laid down.
FILE_NONE = "none"
FILE_REGULAR = "regular"
FILE_LINK_SHARED = "link-shared"
FILE_LINK_OUT_ABSOLUTE = "link-outside-absolute"
FILE_LINK_OUT_RELATIVE = "link-outside-relative"


def kind_count(bad_rate: float, base: int) -> int:
    """Return how many incidents of one kind to plant over `base` candidates."""
    return 0 if bad_rate <= 0 else max(1, round(bad_rate * base))


@dataclass(frozen=True)
class AdPlan:
    """Per-ad overrides: planted slugs and titles, duplicate-slug groups, and their counts."""

    slugs: dict[int, str | None]
    titles: dict[int, str]
    duplicate_of: dict[int, int]  # follower ad id -> leader ad id whose good slug it reuses
    leaders: frozenset[int]
    counts: dict[str, int]


@dataclass(frozen=True)
class PlantedImage:
    """One ad_images row the planter adds, and how its file is laid down."""

    id: int
    ad_id: int
    filename: str
    file_path: str | None
    file: str = FILE_NONE


@dataclass(frozen=True)
class ImagePlan:
    """Planted image rows, unreferenced files, and the counts they make."""

    rows: list[PlantedImage]
    dangling: list[PlantedImage]  # rows whose ad_id names no ad
    orphans: list[str]
    fresh: list[str]
    counts: dict[str, int]

    @property
    def last_id(self) -> int:
        return max((row.id for row in self.rows + self.dangling), default=0)


def plan_ads(rng: random.Random, ads: int, bad_rate: float) -> AdPlan:
    """Pick disjoint ads for each slug kind (capped by how many ads there are) and blank titles."""
    want = kind_count(bad_rate, ads)
    picked = rng.sample(range(1, ads + 1), min(ads, 4 * want + 2))
    required = picked[: min(want, len(picked))]
    formats = picked[len(required) : len(required) + want]
    rest = picked[len(required) + len(formats) :]
    groups = _duplicate_groups(rest, max(2, want) if want else 0)
    used = len(required) + len(formats) + sum(len(g) for g in groups)
    titled = (picked[used:] + picked[:used])[:want]  # overlaps a slug kind only when ads run out
    slugs: dict[int, str | None] = dict(zip(required, cycle(BLANK_SLUGS), strict=False))
    slugs.update({i: t.format(id=i) for i, t in zip(formats, cycle(BAD_SLUG_FORMATS), strict=False)})
    duplicate_of = {ad: min(g) for g in groups for ad in g if ad != min(g)}
    counts = {
        "ads.slug.required": len(required),
        "ads.slug.format": len(formats),
        "ads.slug.unique": sum(len(g) for g in groups),
        "ads.title.required": len(titled),
    }
    titles = dict(zip(titled, cycle(BLANK_TEXTS), strict=False))
    return AdPlan(slugs, titles, duplicate_of, frozenset(min(g) for g in groups), counts)


def _duplicate_groups(ids: list[int], rows: int) -> list[list[int]]:
    """Split `rows` of `ids` into pairs and some triples (fewer rows if ids run short)."""
    rows = min(rows, len(ids)) if len(ids) >= 2 else 0
    triples = (rows // 10) * 2 + rows % 2
    sizes = [3] * triples + [2] * ((rows - 3 * triples) // 2)
    groups, start = [], 0
    for size in sizes:
        groups.append(sorted(ids[start : start + size]))
        start += size
    return groups


def plan_categories(rng: random.Random, categories: int, bad_rate: float) -> dict[int, str]:
    """Return category id -> planted blank name."""
    chosen = rng.sample(range(1, categories + 1), min(categories, kind_count(bad_rate, categories)))
    return dict(zip(sorted(chosen), cycle(BLANK_TEXTS), strict=False))


def plan_images(rng: random.Random, ads: int, base: int, first_id: int, bad_rate: float) -> ImagePlan:
    """Plan extra image rows (bad, and awkward but clean) and unreferenced files."""
    want = kind_count(bad_rate, base)
    ids = count(first_id)
    some_ad = partial(rng.randint, 1, ads)
    rows = [
        *_blank_path_rows(ids, some_ad, want),
        *_missing_rows(ids, some_ad, want),
        *_unsafe_rows(ids, some_ad, want),
        *_clean_odd_rows(ids, some_ad),
    ]
    dangling = [
        PlantedImage(i, DANGLING_AD_BASE + n, _name(i), _path(_name(i)), FILE_REGULAR)
        for n, i in enumerate(islice(ids, want))
    ]
    orphans = _orphan_names(ids, want)
    fresh = [_name(i) for i in islice(ids, max(1, len(orphans) // 5) if want else 0)]
    counts = {
        "ad_images.file_path.required": want,
        "ad_images.ad_id.references": len(dangling),
        "missing_file": want,
        "orphan_file": len(orphans),
        "unsafe_path": want,
        "fresh_upload": len(fresh),
    }
    return ImagePlan(rows, dangling, orphans, fresh, counts)


def _name(image_id: int) -> str:
    return f"ad-{PLANT_STAMP_MS + image_id}-{image_id}.webp"


def _path(name: str) -> str:
    return f"uploads/ads/{name}"


def _blank_path_rows(ids: Iterator[int], some_ad: AdPicker, want: int) -> list[PlantedImage]:
    """Rows whose file_path is NULL, '' or spaces; no file is written for them."""
    return [
        PlantedImage(i, some_ad(), _name(i), blank)
        for i, blank in zip(islice(ids, want), cycle(BLANK_PATHS), strict=False)
    ]


def _missing_rows(ids: Iterator[int], some_ad: AdPicker, want: int) -> list[PlantedImage]:
    """Rows with safe paths whose files are never written; the first few have odd names."""
    rows = []
    for n, i in enumerate(islice(ids, want)):
        name = ODD_MISSING_NAMES[n] if n < len(ODD_MISSING_NAMES) else _name(i)
        rows.append(PlantedImage(i, some_ad(), name, _path(name)))
    return rows


def _unsafe_path(n: int, image_id: int) -> tuple[str, str]:
    """Return the n-th unsafe path form and how its file is laid down."""
    name = _name(image_id)
    forms = (
        ("/etc/passwd" if n == 0 else f"/uploads/ads/{name}", FILE_NONE),
        (f"uploads/ads/../../secret-{image_id}.webp", FILE_NONE),
        (f"uploads\\ads\\{name}", FILE_NONE),
        (_path(name), FILE_LINK_OUT_RELATIVE if n // 6 % 2 else FILE_LINK_OUT_ABSOLUTE),
        (f"../outside-{image_id}.webp", FILE_NONE),
        (f"uploads/ads/../ads/../../{name}", FILE_NONE),
    )
    return forms[n % len(forms)]


def _unsafe_rows(ids: Iterator[int], some_ad: AdPicker, want: int) -> list[PlantedImage]:
    """Rows whose paths are absolute, climb with '..', use backslashes or link outside the root."""
    rows = []
    for n, i in enumerate(islice(ids, want)):
        path, file = _unsafe_path(n, i)
        rows.append(PlantedImage(i, some_ad(), path.rsplit("/", 1)[-1], path, file))
    return rows


def _clean_odd_rows(ids: Iterator[int], some_ad: AdPicker) -> list[PlantedImage]:
    """Good rows with awkward file names, plus one whose file is a symlink into uploads/shared."""
    rows = [
        PlantedImage(i, some_ad(), name, _path(name), FILE_REGULAR)
        for name, i in zip(CLEAN_ODD_NAMES, ids, strict=False)
    ]
    rows.append(PlantedImage(next(ids), some_ad(), SHARED_LINK, _path(SHARED_LINK), FILE_LINK_SHARED))
    return rows


def _orphan_names(ids: Iterator[int], want: int) -> list[str]:
    """Names of old unreferenced regular files; the first few are odd."""
    return [
        ODD_ORPHAN_NAMES[n] if n < len(ODD_ORPHAN_NAMES) else _name(i)
        for n, i in enumerate(islice(ids, want))
    ]


def planted_counts(ad_plan: AdPlan, blank_names: dict[int, str], plan: ImagePlan) -> dict[str, Any]:
    """Return the ground truth's counts, taken from the plans rather than from a query."""
    image_rules = ("ad_images.file_path.required", "ad_images.ad_id.references")
    return {
        "integrity": {
            **ad_plan.counts,
            "categories.name.required": len(blank_names),
            **{rule: plan.counts[rule] for rule in image_rules},
        },
        "files_check": {k: plan.counts[k] for k in ("missing_file", "orphan_file", "unsafe_path")},
        "not_counted": {"fresh_upload": plan.counts["fresh_upload"]},
    }
