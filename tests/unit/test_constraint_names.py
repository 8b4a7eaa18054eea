"""Constraint names: stable, derived from the rule id, within PostgreSQL's 63 bytes, never shared."""

from __future__ import annotations

import pytest

from guard.constraints.enforcement import MAX_NAME_BYTES, base_name, not_null_name


def test_a_plain_rule_id_reads_as_itself() -> None:
    assert base_name("ads.slug.required") == "guard_ads_slug_required"
    assert not_null_name("ads.slug.required") == "guard_ads_slug_required_not_null"


@pytest.mark.parametrize(
    "rule_id",
    [
        "listings.a_very_long_column_name_that_goes_on_and_on.required",
        "Ads.Slug.required",
        "ads.slug-with-dashes.format",
        "tables.naïve_column.required",
    ],
)
def test_other_ids_keep_a_prefix_gain_a_hash_and_fit_63_bytes(rule_id: str) -> None:
    name = not_null_name(rule_id)
    assert len(name.encode("utf-8")) <= MAX_NAME_BYTES
    assert name.startswith("guard_") and name.isascii()
    assert base_name(rule_id) == base_name(rule_id)  # stable from run to run


def test_ids_cut_or_folded_alike_get_different_names() -> None:
    long = "listings." + "x" * 80
    assert base_name(long + ".required") != base_name(long + ".format")
    assert base_name("Ads.slug.unique") != base_name("ads.slug.unique")


def test_no_name_ends_as_one_prisma_manages() -> None:
    for rule_id in ("ads.slug.unique", "ad_images.ad_id.references", "users.id.required"):
        for name in (base_name(rule_id), not_null_name(rule_id)):
            assert not name.endswith(("_pkey", "_key", "_fkey", "_idx"))
