"""Strip passwords from connection strings before they are shown or stored."""

from __future__ import annotations

import re

_URL_PASSWORD = re.compile(r"(?P<head>[a-z][a-z0-9+.-]*://[^:/@\s]*:)[^@\s]*(?P<tail>@)", re.I)
_KV_PASSWORD = re.compile(r"(?P<head>\bpassword\s*=\s*)('(?:[^'\\]|\\.)*'|\S+)", re.I)


def redact(text: str) -> str:
    """Return text with any password in a URL or key=value conninfo replaced by ***."""
    text = _URL_PASSWORD.sub(r"\g<head>***\g<tail>", text)
    return _KV_PASSWORD.sub(r"\g<head>***", text)
