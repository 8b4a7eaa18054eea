"""Backup readers given hostile bytes: each is one ManifestError, never another exception (bench/fuzz.py)."""

from __future__ import annotations

import json
from typing import Any

import pytest

from guard.backup.repo.manifest import CANONICAL_FORMAT, ManifestError, PageRef, checksum, page_rows, parse

DEEP = b"[" * 100_000 + b"]" * 100_000


def test_a_deeply_nested_manifest_is_a_manifest_error() -> None:
    """Found by bench/fuzz.py (manifest): json.loads raised RecursionError, a traceback."""
    with pytest.raises(ManifestError, match="not a guard backup manifest"):
        parse(DEEP, "backup x")


def test_a_deeply_nested_folder_list_is_a_manifest_error() -> None:
    page = PageRef(0, "ab" * 32, len(DEEP), 0, 0, None)
    with pytest.raises(ManifestError, match="is not the list named"):
        page_rows(DEEP, "uploads/ads", page, "backup x")


def _signed(body: dict[str, Any]) -> bytes:
    """A manifest whose checksum matches its (hostile) body: format 1, checksum over canonical JSON."""
    body = {**body, "format": CANONICAL_FORMAT}
    return json.dumps({"checksum": "sha256:" + checksum(body), **body}).encode()


def _body(**changes: Any) -> dict[str, Any]:
    sha = "ab" * 32
    body: dict[str, Any] = {
        "id": "b1",
        "started_at": "t0",
        "finished_at": "t1",
        "versions": {},
        "database": {},
        "dump": {"name": "dump.pgc", "size": 10, "sha256": sha},
        "counts": {},
        "migrations": None,
        "schema_sha256": sha,
        "app_commit": None,
        "scope": {},
        "consistency": {"ok": True, "missing": []},
        "files": [],
    }
    return {**body, **changes}


def test_a_signed_manifest_reads_back() -> None:
    assert parse(_signed(_body()), "backup x").dump.size == 10


@pytest.mark.parametrize(
    "changes",
    [
        {"counts": None},
        {"dump": {"name": "d", "size": float("inf"), "sha256": "x"}},
        {"folders": [[None] * 3]},
    ],
)
def test_a_signed_manifest_with_a_bad_value_is_a_manifest_error(changes: dict[str, Any]) -> None:
    """Found by bench/fuzz.py (manifest): AttributeError and OverflowError escaped, a traceback."""
    with pytest.raises(ManifestError, match="missing a field or has a bad value"):
        parse(_signed(_body(**changes)), "backup x")


@pytest.mark.parametrize(
    "second",
    [
        pytest.param(["b", 0, 1, 0, 0, 0], id="0 as the content hash, once read as the file before's"),
        pytest.param(["b", False, 1, 0, 0, 0], id="false as the content hash"),
        pytest.param(["b", [], 1, 0, 0, 0], id="[] as the content hash"),
        pytest.param(["b", "", 1, 0.5, 0, 0], id="a float as a time difference"),
        pytest.param(["b", "", 1.5, 0, 0, 0], id="a float as a size"),
        pytest.param(["b", "", float("nan"), 0, 0, 0], id="NaN as a size"),
        pytest.param(["b", "", 1, float("inf"), 0, 0], id="Infinity as a time difference"),
    ],
)
def test_a_name_ordered_page_with_a_value_of_the_wrong_type_is_a_manifest_error(second: list[Any]) -> None:
    """Format 5's pages (guard-files/2) spell "same content as the file before" as "" and numbers as
    whole differences; anything else is not a page guard wrote."""
    first = ["a", "ab" * 32, 1, 10, 10, 10]
    data = json.dumps(["guard-files/2", [first, second]]).encode()
    page = PageRef(0, "cd" * 32, len(data), 2, 0, None, "a")
    with pytest.raises(ManifestError, match="is not the list named"):
        page_rows(data, "uploads/ads", page, "backup x")
