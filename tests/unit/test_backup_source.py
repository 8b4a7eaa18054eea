"""Which database a backup came from: recorded in the manifest, read back, and matched to --source."""

from __future__ import annotations

import hashlib
import json
from dataclasses import replace

import pytest
from test_backup_manifest import manifest

from guard.backup.repo.manifest import parse
from guard.backup.source import BACKUP, SAFETY, Source, Wanted
from guard.errors import UsageError

SHOP = Source("shop", "7714269041046444155", 16384)


def written_before_sources(target: str) -> bytes:
    """A format 3 manifest as guard wrote it before it recorded sources: no source, no purpose."""
    body = json.loads(manifest().to_bytes())
    for key in ("checksum", "source", "purpose"):
        body.pop(key)
    body["database"] = {"target": target}
    raw = json.dumps(body, ensure_ascii=True, separators=(",", ":")).encode("ascii")
    return b'{"checksum":"sha256:' + hashlib.sha256(raw).hexdigest().encode() + b'",' + raw[1:]


def test_the_source_and_purpose_are_recorded_under_the_checksum() -> None:
    made = replace(manifest(), source=SHOP, purpose=SAFETY)
    read = parse(made.to_bytes(), "test")
    assert (read.source, read.purpose) == (SHOP, SAFETY)
    assert json.loads(made.to_bytes())["source"] == {
        "system_identifier": "7714269041046444155",
        "database": "shop",
        "oid": 16384,
    }


def test_an_older_manifest_is_the_database_its_target_names_on_an_unknown_server() -> None:
    read = parse(written_before_sources("database 'shop' on db.example:5432"), "old")
    assert (read.source, read.purpose) == (Source("shop"), BACKUP)
    assert Wanted.of(SHOP).matches(read.source)  # still the configured database's backup
    assert not Wanted("shop_copy", SHOP.system_identifier).matches(read.source)
    assert parse(written_before_sources("the database"), "old").source is None  # unknown: matches nothing


def test_a_source_is_its_name_on_its_server_whatever_its_oid() -> None:
    wanted = Wanted.of(SHOP)
    assert wanted.matches(replace(SHOP, oid=99999))  # recreated in place by a restore: still shop
    assert not wanted.matches(replace(SHOP, system_identifier="1"))  # shop on another server
    assert not wanted.matches(replace(SHOP, database="shop_copy"))
    assert not wanted.matches(None)
    assert Wanted("shop").matches(replace(SHOP, system_identifier="1"))  # a name alone: any server


def test_source_flag_text_reads_a_name_or_name_at_system_identifier() -> None:
    assert Wanted.parse("shop") == Wanted("shop")
    assert Wanted.parse(SHOP.label) == Wanted.of(SHOP)
    assert Wanted.parse(Wanted.of(SHOP).label) == Wanted.of(SHOP)
    for bad in ("", "@123", "shop@abc"):
        with pytest.raises(UsageError, match="--source"):
            Wanted.parse(bad)
