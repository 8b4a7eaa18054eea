"""The fuzz targets of bench/fuzz.py: for each hostile-input reader, what it draws and what it asserts."""

from __future__ import annotations

import atexit
import hashlib
import json
import os
import posixpath
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

import psycopg
from hypothesis import strategies as st
from pydantic import SecretStr

from guard.backup.repo import manifest as manifest_module
from guard.backup.repo import packs
from guard.config.dburl import libpq_conninfo
from guard.config.settings import Settings, load_settings
from guard.errors import GuardError
from guard.fs import paths

SCALARS = {name: f for name, f in Settings.model_fields.items() if name != "rules"}
SCRATCH = Path(tempfile.mkdtemp(prefix="guard-fuzz-"))  # one folder for every file a target writes
atexit.register(shutil.rmtree, SCRATCH, ignore_errors=True)


@dataclass(frozen=True)
class Target:
    """What one target draws and the contract it checks on each drawn value."""

    name: str
    strategy: st.SearchStrategy[Any]
    check: Callable[[Any], None]


# Any code point, lone surrogates included: os.fsdecode makes some, and JSON "\ud800" makes any.
ANY_CHAR = st.characters(codec=None, exclude_categories=())
HOSTILE_TEXT = st.text(ANY_CHAR, max_size=12) | st.binary(max_size=12).map(os.fsdecode)
DEEP = st.integers(1, 5000)  # nesting depth for the readers that recurse


# --- stored paths (guard/fs/paths.py) ---------------------------------------------------------------

SEGMENT = st.sampled_from(["", ".", "..", "...", "a", "uploads", "ads", " ", "..\\..", "\\", "~", ". ."])
STORED = st.one_of(st.lists(SEGMENT | HOSTILE_TEXT, max_size=8).map("/".join), HOSTILE_TEXT)
ROOT = "/srv/public"


def check_stored_path(drawn: tuple[str, bool]) -> None:
    stored, backslash_ok = drawn
    reason = paths.unsafe_reason(stored, backslash_ok=backslash_ok)
    assert reason is None or isinstance(reason, str)
    if reason is None:
        key = paths.normalize(stored)
        joined = posixpath.normpath(posixpath.join(ROOT, key))
        assert joined == ROOT or joined.startswith(ROOT + "/"), f"{stored!r} judged safe leaves the root"
        assert "\x00" not in key and not key.startswith("/")
    shown = paths.printable(stored)
    assert shown.isprintable(), f"printable({stored!r}) = {shown!r}"
    safe = paths.json_safe(stored)
    json.dumps(safe, ensure_ascii=False).encode("utf-8")
    if not _lone_surrogates(stored):
        assert safe == stored


def _lone_surrogates(text: str) -> bool:
    """Whether text holds a lone surrogate (os.fsdecode's stand-in for a byte that is not UTF-8)."""
    return any("\ud800" <= c <= "\udfff" for c in text)


# --- DATABASE_URL (guard/config/dburl.py) ---------------------------------------------------------------

PASSWORD = st.text("QZXJVK#@ :/%", min_size=4, max_size=10).map(lambda s: "Pw" + s)
SCHEME = st.sampled_from(
    [
        "postgresql",
        "postgres",
        "postgresql+psycopg",
        "postgresql+asyncpg",
        "mysql",
        "sqlite",
        "",
        "postgresql+",
    ]
)
QUERY_KEY = st.sampled_from(
    ["schema", "options", "sslmode", "host", "connect_timeout", "application_name", "connection_limit", "x"]
)


@st.composite
def database_urls(draw: st.DrawFn) -> tuple[str, str | None]:
    """A URL in the shapes apps use, with hostile parts; and its password, when it has one."""
    text = st.text(max_size=10)
    part = text | text.map(quote)
    password = draw(st.none() | PASSWORD)
    user = draw(part)
    auth = f"{user}@"
    if password is not None:
        password = draw(st.sampled_from([password, quote(password)]))
        auth = f"{user}:{password}@"
    port = draw(st.none() | st.integers(-1, 70000).map(str) | text)
    host = draw(part) + (f":{port}" if port is not None else "")
    pairs = draw(st.lists(st.tuples(QUERY_KEY, part), max_size=4))
    query = "&".join(f"{k}={v}" for k, v in pairs)
    url = f"{draw(SCHEME)}://{draw(st.just('') | st.just(auth))}{host}/{draw(part)}" + (
        f"?{query}" if query else ""
    )
    return url, password


def keyword_conninfo(password: str) -> st.SearchStrategy[tuple[str, str | None]]:
    junk = st.text(max_size=20)
    return st.tuples(junk, junk).map(lambda j: (f"{j[0]} password={password} {j[1]}", password))


DBURL = st.one_of(
    database_urls(),
    st.text(ANY_CHAR, max_size=40).map(lambda u: (u, None)),
    st.text("QZXJVK#@:/%", min_size=4, max_size=10).map(lambda s: "Pw" + s).flatmap(keyword_conninfo),
)


def check_database_url(drawn: tuple[str, str | None]) -> None:
    url, password = drawn
    try:
        result = libpq_conninfo(url)
    except GuardError as exc:
        # A password must never be shown (unless it also appears as another part of the URL).
        if password is not None and url.count(password) == 1:
            assert password not in str(exc), f"the password is in the error: {exc}"
        return
    psycopg.conninfo.conninfo_to_dict(result)  # what we return, libpq reads


# --- settings (guard/config/settings.py): a TOML file and the environment --------------------------------

KEYS = sorted(SCALARS) + ["rules", "use_default_rules", "nonsense"]
TOML_SCALAR = st.one_of(
    st.integers(-(2**63), 2**63 - 1).map(str),
    st.floats().map(lambda f: "nan" if f != f else ("inf" if f == float("inf") else repr(f))),
    st.floats().map(lambda f: "-inf" if f == float("-inf") else "1.5"),
    st.sampled_from(["true", "false", "1979-05-27", "07:32:00", "1979-05-27T07:32:00Z"]),
    st.text(st.characters(exclude_categories=("Cs",)), max_size=12).map(
        lambda s: json.dumps(s, ensure_ascii=False)
    ),
    st.sampled_from(['"~nosuchuser/x"', '"uploads/ads"', '"./a"', '"/abs"', '"a/../b"', '""']),
)
TOML_VALUE = st.recursive(
    TOML_SCALAR,
    lambda inner: st.one_of(
        st.lists(inner, max_size=3).map(lambda xs: "[" + ", ".join(xs) + "]"),
        st.dictionaries(
            st.sampled_from(["table", "column", "type", "pattern", "references", "enabled", "a.b.c"]),
            inner,
            max_size=3,
        ).map(lambda d: "{" + ", ".join(f"{json.dumps(k)} = {v}" for k, v in d.items()) + "}"),
    ),
    max_leaves=6,
)
TOML_DOC = st.one_of(
    st.dictionaries(st.sampled_from(KEYS), TOML_VALUE, max_size=5).map(
        lambda d: "".join(f"{k} = {v}\n" for k, v in d.items()).encode("utf-8")
    ),
    st.binary(max_size=60),
    DEEP.map(lambda n: ("orphan_grace = " + "[" * n + "]" * n).encode()),
)
ENV = st.dictionaries(
    st.sampled_from([k.upper() for k in SCALARS]),
    st.text(st.characters(exclude_categories=("Cs",), exclude_characters="\x00"), max_size=12)
    | st.sampled_from(["~nosuchuser", "-1", "1.5", "a,b", "uploads/ads,", "99999999999999999999999"]),
    max_size=4,
)


def check_settings(drawn: tuple[bytes | None, dict[str, str]]) -> None:
    document, env = drawn
    config = SCRATCH / "guard.toml"
    if document is not None:
        config.write_bytes(document)
    try:
        loaded = load_settings(env, config if document is not None else None)
    except GuardError:
        return
    assert isinstance(loaded, Settings)
    for name, spec in SCALARS.items():
        value, kind = getattr(loaded, name), str(spec.annotation)
        if "SecretStr" in kind:
            assert value is None or isinstance(value, SecretStr), f"{name} is not secret"
        elif "int" in kind:
            assert type(value) is int and value >= 0, f"{name} = {value!r}"
        elif "tuple" in kind:
            assert value and all(isinstance(v, str) and paths.unsafe_reason(v) is None for v in value)
        elif "Path" in kind:
            assert value is None or isinstance(value, Path), f"{name} = {value!r}"
        else:
            assert value is None or isinstance(value, str), f"{name} = {value!r}"


# --- the manifest reader (guard/backup/repo/manifest.py) ------------------------------------------------

JSON_LEAF = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(), st.text(ANY_CHAR, max_size=8))
JSON_ANY = st.recursive(
    JSON_LEAF,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=6), inner, max_size=4),
    max_leaves=12,
)


def _good_body() -> dict[str, Any]:
    sha = "ab" * 32
    return {
        "format": manifest_module.FORMAT,
        "id": "20260101T000000Z-abcd",
        "started_at": "2026-01-01T00:00:00Z",
        "finished_at": "2026-01-01T00:01:00Z",
        "versions": {"guard": "0.1.0"},
        "database": {"name": "app"},
        "dump": {"name": "dump.pgc", "size": 10, "sha256": sha},
        "counts": {"files": 1},
        "migrations": None,
        "schema_sha256": sha,
        "app_commit": None,
        "scope": {"scan_dirs": ["uploads/ads"]},
        "consistency": {"ok": True, "missing": []},
        "file_fields": list(manifest_module.FILE_FIELDS),
        "files": [["uploads/x.webp", sha, 3, 1, 2, 3]],
        "folders": [["uploads/ads", 1, [[0, sha, 10, 1, 3, None]]]],
    }


def _signed(body: dict[str, Any], canonical: bool) -> bytes:
    """Serialize a body with a checksum that matches it, in format 3's layout or format 1's."""
    if canonical:
        body = {**body, "format": manifest_module.CANONICAL_FORMAT}
        return json.dumps({"checksum": "sha256:" + manifest_module.checksum(body), **body}).encode()
    raw = json.dumps(body, ensure_ascii=True, separators=(",", ":")).encode("ascii")
    digest = hashlib.sha256(raw).hexdigest().encode("ascii")
    return manifest_module.HEAD + digest + b'",' + raw[1:]


GOOD_MANIFEST = _signed(_good_body(), canonical=False)
MUTATION = st.tuples(st.integers(0, len(GOOD_MANIFEST) - 1), st.integers(0, 255), st.sampled_from("rid"))
HOSTILE_BODY = st.tuples(
    st.dictionaries(st.sampled_from(sorted(_good_body())), JSON_ANY, max_size=4), st.booleans()
).map(lambda d: _signed({**_good_body(), **d[0]}, canonical=d[1]))
MANIFEST = st.one_of(
    st.lists(MUTATION, min_size=1, max_size=3).map(lambda ms: ("mutated", _mutate(GOOD_MANIFEST, ms))),
    HOSTILE_BODY.map(lambda b: ("signed", b)),
    st.binary(max_size=80).map(lambda b: ("raw", b)),
    DEEP.map(lambda n: ("raw", b"[" * n + b"]" * n)),
    JSON_ANY.map(lambda v: ("page", json.dumps(v).encode())),
)


def _mutate(data: bytes, mutations: list[tuple[int, int, str]]) -> bytes:
    out = bytearray(data)
    for at, byte, how in mutations:
        at %= max(len(out), 1)
        if how == "r":
            out[at] = byte
        elif how == "i":
            out.insert(at, byte)
        else:
            del out[at]
    return bytes(out)


def _read_page(sha: str, size: int) -> bytes:
    return json.dumps({"format": manifest_module.LIST_FORMAT, "folder": "uploads/ads", "files": []}).encode()


def check_manifest(drawn: tuple[str, bytes]) -> None:
    kind, data = drawn
    try:
        if kind == "page":
            page = manifest_module.PageRef(0, "ab" * 32, len(data), 0, 0, None)
            manifest_module.page_rows(data, "uploads/ads", page, "fuzz")
            return
        parsed = manifest_module.parse(data, "fuzz", _read_page)
    except GuardError:
        return
    if kind == "mutated":  # a changed byte is never read as a good manifest, unless it changed nothing
        assert parsed == manifest_module.parse(GOOD_MANIFEST, "fuzz", _read_page), "damage accepted"


# --- the pack index reader (guard/backup/repo/packs.py) ------------------------------------------------

ENTRIES = st.lists(
    st.tuples(
        st.binary(min_size=32, max_size=32).map(bytes.hex), st.integers(0, 2**20), st.integers(0, 2**20)
    ),
    max_size=5,
)
INDEX = st.one_of(
    st.tuples(ENTRIES, st.lists(MUTATION, max_size=3)).map(
        lambda em: (em[0], _mutate(packs.index_bytes(em[0]), em[1]) if em[1] else packs.index_bytes(em[0]))
    ),
    st.binary(max_size=120).map(lambda b: (None, b)),
    st.binary(max_size=120).map(lambda b: (None, packs.IDX_MAGIC + b)),
)


def check_pack_index(drawn: tuple[list[tuple[str, int, int]] | None, bytes]) -> None:
    written, data = drawn
    folder = SCRATCH / "packs"
    folder.mkdir(exist_ok=True)
    (folder / "p.idx").write_bytes(data)
    (folder / "p.pack").write_bytes(b"\0" * 4096)
    try:
        entries = packs.read_index(folder / "p.idx")
        where = packs.located(folder, "p")
    except GuardError:
        return  # a damaged index may also be reported as an error of the project's family
    if entries is None:
        assert where is None
        return
    if written is None or data != packs.index_bytes(written):
        raise AssertionError(f"an index that was never written whole was read: {entries!r}")
    assert entries == written
    assert where is not None and all(w.offset + w.size <= 4096 for w in where.values())


TARGETS = {
    target.name: target
    for target in (
        Target("paths", st.tuples(STORED, st.booleans()), check_stored_path),
        Target("dburl", DBURL, check_database_url),
        Target("settings", st.tuples(st.none() | TOML_DOC, ENV), check_settings),
        Target("manifest", MANIFEST, check_manifest),
        Target("packindex", INDEX, check_pack_index),
    )
}
