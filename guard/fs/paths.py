"""Pure rules for stored upload paths: which are unsafe, and the one spelling used to match files."""

from __future__ import annotations

import posixpath


def unsafe_reason(stored: str, *, backslash_ok: bool = False) -> str | None:
    """Return why a stored path must never be opened, or None when it may be resolved under the root."""
    if "\x00" in stored:
        return "contains a NUL byte"
    if "\\" in stored and not backslash_ok:
        return "contains a backslash"
    if stored.startswith("/"):
        return "is absolute"
    if ".." in stored.split("/"):
        return "has a '..' segment"
    return None


def normalize(stored: str) -> str:
    """Return the relative spelling a safe stored path is matched under ('./a//b' -> 'a/b')."""
    return posixpath.normpath(stored)


def is_blank(stored: str | None) -> bool:
    return stored is None or not stored.strip()


def printable(text: str) -> str:
    """Escape control characters and undecodable bytes so a path fits on one terminal line."""
    if text.isprintable():
        return text
    return _as_bytes(text).decode("utf-8", "backslashreplace").encode("unicode_escape").decode("ascii")


def json_safe(text: str) -> str:
    """Replace undecodable bytes (os.fsdecode surrogates) so the text can be encoded as JSON."""
    try:
        text.encode("utf-8")
        return text
    except UnicodeEncodeError:
        return _as_bytes(text).decode("utf-8", "backslashreplace")


def _as_bytes(text: str) -> bytes:
    """Return the bytes os.fsdecode read; a surrogate no file name makes (JSON's "\\ud800") is escaped."""
    try:
        return text.encode("utf-8", "surrogateescape")
    except UnicodeEncodeError:
        return text.encode("utf-8", "backslashreplace")
