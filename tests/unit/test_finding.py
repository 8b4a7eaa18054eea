from __future__ import annotations

import json

from guard.config.redact import redact
from guard.findings.finding import CheckResult, Finding, FindingSink
from guard.findings.report import as_json, exit_code


def finding(kind: str, n: int) -> Finding:
    return Finding("files", kind, f"ad_images:{n}", "m", path=f"uploads/ads/{n}.webp")


def test_sink_counts_everything_and_keeps_limit_per_kind() -> None:
    sink = FindingSink("files", 2, ["missing_file", "orphan_file", "unsafe_path"])
    for n in range(5):
        sink.add(finding("missing_file", n))
    sink.add(finding("orphan_file", 9))
    result = sink.result(0.5)
    assert result.counts == {"missing_file": 5, "orphan_file": 1, "unsafe_path": 0}
    assert [f.kind for f in result.findings] == ["missing_file", "missing_file", "orphan_file"]
    assert not result.ok


def test_json_shape() -> None:
    sink = FindingSink("files", 10, ["missing_file"])
    sink.add(finding("missing_file", 17))
    document = json.loads(as_json([sink.result(1.234)]))
    assert document == {
        "ok": False,
        "checks": [
            {
                "name": "files",
                "ok": False,
                "duration_s": 1.234,
                "counts": {"missing_file": 1},
                "findings": [
                    {
                        "check": "files",
                        "kind": "missing_file",
                        "subject": "ad_images:17",
                        "path": "uploads/ads/17.webp",
                        "message": "m",
                    }
                ],
            }
        ],
    }


def test_exit_codes() -> None:
    clean = CheckResult("files", {"missing_file": 0}, ())
    dirty = CheckResult("files", {"missing_file": 1}, ())
    broken = CheckResult("integrity", {}, (), error="cannot reach")
    down = CheckResult("health", {"database_unreachable": 1}, ())
    assert exit_code([clean]) == 0
    assert exit_code([clean, dirty]) == 1
    assert exit_code([dirty, broken]) == 3
    assert exit_code([down]) == 3


def test_redact_hides_passwords() -> None:
    assert redact("postgresql://app:s3cr%40t@db:5432/x") == "postgresql://app:***@db:5432/x"
    assert "s3cret" not in redact("host=db password=s3cret dbname=x")
    assert redact("postgresql://app@db/x") == "postgresql://app@db/x"


def test_merging_per_table_sinks_keeps_exact_counts_and_each_kinds_first_examples() -> None:
    ads, images = FindingSink("integrity", 2, ["ads.slug.required"]), FindingSink("integrity", 2, ["img.req"])
    for n in range(3):
        ads.add(Finding("integrity", "ads.slug.required", f"ads:{n}", "slug is NULL"))
    images.add(Finding("integrity", "img.req", "ad_images:9", "file_path is blank"))
    total = FindingSink("integrity", 2, ["ads.slug.required", "img.req", "untouched"])
    total.merge(ads)
    total.merge(images)
    result = total.result(0.0)
    assert result.counts == {"ads.slug.required": 3, "img.req": 1, "untouched": 0}
    assert [f.subject for f in result.findings] == ["ads:0", "ads:1", "ad_images:9"]


def test_warnings_are_counted_and_shown_but_do_not_fail() -> None:
    sink = FindingSink("migrations", 10, ["index_not_concurrent", "lock_timeout_missing"])
    sink.add(Finding("migrations", "lock_timeout_missing", "migration:1_a:2", "m", severity="warn"))
    warned = sink.result(0.0)
    assert warned.ok and warned.warnings == 1 and warned.counts["lock_timeout_missing"] == 1
    assert exit_code([warned]) == 0
    document = json.loads(as_json([warned]))
    assert document["ok"] is True
    assert document["checks"][0]["warn_kinds"] == ["lock_timeout_missing"]
    assert document["checks"][0]["findings"][0]["severity"] == "warn"
    sink.add(Finding("migrations", "index_not_concurrent", "migration:1_a:5", "m", severity="error"))
    failed = sink.result(0.0)
    assert not failed.ok and exit_code([failed]) == 1
    assert json.loads(as_json([failed]))["checks"][0]["findings"][1]["severity"] == "error"


def test_warnings_survive_a_limit_of_zero_and_merging() -> None:
    part = FindingSink("migrations", 0, ["lock_timeout_missing"])
    part.add(Finding("migrations", "lock_timeout_missing", "migration:1_a:2", "m", severity="warn"))
    total = FindingSink("migrations", 0, ["lock_timeout_missing"])
    total.merge(part)
    result = total.result(0.0)
    assert result.findings == () and result.ok and result.warnings == 1


def test_tallying_past_the_examples_equals_adding() -> None:
    added, tallied = FindingSink("c", 2, ["a", "b"]), FindingSink("c", 2, ["a", "b"])
    for n in range(5):
        finding = Finding("c", "a", f"t:{n}", "m")
        added.add(finding)
        if tallied.keeps("a"):
            tallied.add(finding)
        else:
            tallied.tally("a")
    assert tallied.result(0).to_json() == added.result(0).to_json()
    assert FindingSink("c", None).keeps("a") and not FindingSink("c", 0).keeps("a")
