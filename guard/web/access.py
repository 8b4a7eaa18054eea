"""Who may read the pages: anyone on loopback without a token; with GUARD_WEB_TOKEN, only its holders.

The token comes as `Authorization: Bearer <token>` (Prometheus' `authorization` scrape setting, curl)
or, for a person, through the login form, which sets an HttpOnly cookie holding an HMAC of the token
(never the token itself). Both are compared in constant time (hmac.compare_digest).
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
from typing import TYPE_CHECKING

from guard.errors import ConfigError

if TYPE_CHECKING:
    from starlette.types import ASGIApp, Receive, Scope, Send

COOKIE = "guard_session"
OPEN_PATHS = frozenset({"/healthz", "/login"})


def is_loopback(host: str) -> bool:
    """Tell whether an address to bind is loopback only (127.0.0.0/8, ::1, localhost)."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def require_token_for(host: str, token: str | None) -> None:
    """Refuse to serve beyond loopback without a token (exit 2, one line)."""
    if not token and not is_loopback(host):
        raise ConfigError(
            f"refusing to bind {host} without GUARD_WEB_TOKEN: set it (every page but /healthz then "
            "asks for it), or bind 127.0.0.1"
        )


def session_value(token: str) -> str:
    """The cookie a signed-in browser keeps: derived from the token, useless once the token changes."""
    return hmac.new(token.encode("utf-8"), b"incident-guard web session", hashlib.sha256).hexdigest()


def token_matches(token: str, offered: str) -> bool:
    return hmac.compare_digest(token.encode("utf-8"), offered.encode("utf-8"))


def allowed(token: str, authorization: str | None, cookie: str | None) -> bool:
    """Tell whether a request carries the token (bearer) or a session cookie made from it."""
    if authorization:
        scheme, _, offered = authorization.partition(" ")
        if scheme.lower() == "bearer" and token_matches(token, offered.strip()):
            return True
    return bool(cookie) and hmac.compare_digest(session_value(token).encode(), (cookie or "").encode())


class TokenGate:
    """ASGI middleware: 401 for any path but OPEN_PATHS without the token (a form for browsers)."""

    def __init__(self, app: ASGIApp, token: str) -> None:
        self.app = app
        self.token = token

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] in OPEN_PATHS:
            await self.app(scope, receive, send)
            return
        from starlette.requests import HTTPConnection

        conn = HTTPConnection(scope)
        if allowed(self.token, conn.headers.get("authorization"), conn.cookies.get(COOKIE)):
            await self.app(scope, receive, send)
            return
        await _refuse(scope, receive, send, wants_html=scope["path"] == "/")


async def _refuse(scope: Scope, receive: Receive, send: Send, *, wants_html: bool) -> None:
    from starlette.responses import HTMLResponse, PlainTextResponse, Response

    from guard.web.page import login_page

    response: Response
    headers = {"WWW-Authenticate": 'Bearer realm="incident-guard"', "Cache-Control": "no-store"}
    if wants_html:
        response = HTMLResponse(login_page(), status_code=401, headers=headers)
    else:
        response = PlainTextResponse("401 unauthorized: send the GUARD_WEB_TOKEN\n", 401, headers=headers)
    await response(scope, receive, send)
