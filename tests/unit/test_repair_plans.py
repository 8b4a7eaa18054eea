"""The repair plan builders: slugs from titles (Devanagari too), the fallback, uniqueness, the template."""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path

import pytest

from guard.config.rules import SLUG_PATTERN
from guard.config.settings import Settings
from guard.errors import ConfigError, UsageError
from guard.repair.naming import render, title_part
from guard.repair.quarantine import Quarantine, parse_age
from guard.repair.slugplan import DUPLICATE, MALFORMED, MISSING, Flagged, plan_slugs

FORMAT = re.compile(SLUG_PATTERN)


def matches(candidates: Sequence[str]) -> list[bool]:
    return [FORMAT.fullmatch(c) is not None for c in candidates]


def nothing_taken(candidates: Sequence[str]) -> set[str]:
    return set()


def flagged(key: str, slug: str | None, title: str | None, kind: str) -> Flagged:
    return Flagged(key, slug, title, kind == MISSING, kind == MALFORMED, kind == DUPLICATE)


def test_a_devanagari_title_is_transliterated_as_a_nepali_reader_would() -> None:
    assert render("{title}-{id}", "बिक्रीमा होन्डा सिटी", "42") == "bikrima-honda-siti-42"


def test_unidecode_alone_would_double_every_inherent_vowel() -> None:
    # What python-slugify's own unidecode makes of the same title: why Devanagari goes through anyascii.
    from slugify import slugify

    assert slugify("बिक्रीमा होन्डा सिटी") == "bikriimaa-honddaa-sittii"


def test_mixed_scripts_keep_every_word() -> None:
    assert render("{title}-{id}", "Honda City बिक्रीमा 2019", "7") == "honda-city-bikrima-2019-7"
    assert title_part("中文标题") == "zhong-wen-biao-ti"


@pytest.mark.parametrize("title", [None, "", "   ", "😀😀", "!!!", "—"])
def test_a_title_with_nothing_usable_falls_back_to_ad_id(title: str | None) -> None:
    assert render("{title}-{id}", title, "42") == "ad-42"


def test_a_long_title_is_cut_at_a_word_boundary() -> None:
    slug = render("{title}-{id}", "word " * 100, "9")
    assert slug.endswith("-9") and len(slug) <= 83 and "--" not in slug and FORMAT.fullmatch(slug)


def test_the_template_is_used() -> None:
    planned = plan_slugs(
        [flagged("5", None, "Sofa Set", MISSING)],
        "ad-{id}-{title}-{id}",
        lambda c: [True] * len(c),
        nothing_taken,
    )
    assert planned[0].new == "ad-5-sofa-set-5"


def test_a_template_result_the_format_rule_rejects_falls_back() -> None:
    planned = plan_slugs([flagged("5", None, "Sofa", MISSING)], "{id}_{title}", matches, nothing_taken)
    assert planned[0].new == "ad-5"


def test_a_fallback_the_format_rule_rejects_is_a_configuration_error() -> None:
    with pytest.raises(ConfigError, match="fallback"):
        plan_slugs(
            [flagged("5", None, "Sofa", MISSING)], "{title}-{id}", lambda c: [False] * len(c), nothing_taken
        )


def test_the_lowest_id_keeps_a_shared_valid_slug_and_the_others_are_rewritten() -> None:
    rows = [
        flagged("10", "sofa-set-3", "Sofa", DUPLICATE),
        flagged("3", "sofa-set-3", "Sofa", DUPLICATE),
        flagged("9", "sofa-set-3", "Sofa", DUPLICATE),
    ]
    planned = plan_slugs(rows, "{title}-{id}", matches, nothing_taken)
    assert [(c.key, c.old, c.new, c.reason) for c in planned] == [
        ("9", "sofa-set-3", "sofa-9", DUPLICATE),
        ("10", "sofa-set-3", "sofa-10", DUPLICATE),
    ]
    assert all(c.redirect for c in planned)


def test_missing_and_malformed_are_always_rewritten_and_only_malformed_redirects() -> None:
    rows = [
        flagged("1", None, "A", MISSING),
        flagged("2", "", "B", MISSING),
        flagged("3", "B_3", "B", MALFORMED),
    ]
    planned = plan_slugs(rows, "{title}-{id}", matches, nothing_taken)
    assert [c.new for c in planned] == ["a-1", "b-2", "b-3"]
    assert [c.redirect for c in planned] == [False, False, True]


def test_a_slug_another_row_holds_gets_a_further_suffix() -> None:
    held = {"sofa-12", "sofa-12-2"}
    planned = plan_slugs(
        [flagged("12", None, "Sofa", MISSING)], "{title}-{id}", matches, lambda c: held & set(c)
    )
    assert planned[0].new == "sofa-12-3" and FORMAT.fullmatch(planned[0].new)


def test_new_slugs_are_unique_among_themselves() -> None:
    # '{title}-{id}' can meet: title "a-1", id 23 and title "a-1-23"... the plan never repeats one.
    rows = [flagged("23", None, "a 1", MISSING), flagged("5", None, "a 1 23", MISSING)]
    planned = plan_slugs(rows, "{title}-{id}-{id}", lambda c: [True] * len(c), nothing_taken)
    news = [c.new for c in planned]
    assert len(set(news)) == len(news)


def test_numeric_ids_sort_as_numbers() -> None:
    rows = [flagged(k, None, "x", MISSING) for k in ("10", "9", "100")]
    assert [c.key for c in plan_slugs(rows, "{title}-{id}", matches, nothing_taken)] == ["9", "10", "100"]


@pytest.mark.parametrize("template", ["{title}", "{title}-{slug}", "{id", "plain"])
def test_a_template_without_id_or_with_other_fields_is_refused(template: str) -> None:
    with pytest.raises(ValueError):
        Settings(slug_template=template)


def test_ages_read_with_their_unit() -> None:
    assert parse_age("30d") == 30 * 86400 and parse_age("12h") == 43200 and parse_age("90s") == 90
    with pytest.raises(UsageError):
        parse_age("30 days")


def test_purge_deletes_only_guard_runs_older_than_asked(tmp_path: Path) -> None:
    quarantine = Quarantine(tmp_path / "q")
    quarantine.create()
    quarantine.write_manifest("old-run", [], {})
    (quarantine.run_folder("old-run") / "f.webp").write_bytes(b"x")
    (tmp_path / "q" / "not-ours").mkdir()
    (tmp_path / "q" / "not-ours" / "keep.txt").write_text("keep")
    assert quarantine.purge(3600) == []
    assert quarantine.purge(0, now=10**12) == [("old-run", 0)]
    assert not quarantine.run_folder("old-run").exists()
    assert (tmp_path / "q" / "not-ours" / "keep.txt").exists()
