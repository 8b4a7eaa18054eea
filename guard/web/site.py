"""The Starlette application `guard serve` runs: the page, /metrics, /api/status, /healthz, /login."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from urllib.parse import parse_qs

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, PlainTextResponse, RedirectResponse, Response
from starlette.routing import Route

from guard.config.settings import Settings
from guard.web import access
from guard.web.exposition import render
from guard.web.page import login_page, status_page
from guard.web.reader import Reader

PROMETHEUS_TEXT = "text/plain; version=0.0.4; charset=utf-8"
NO_STORE = {"Cache-Control": "no-store"}
MAX_FORM_BYTES = 4096
SESSION_SECONDS = 12 * 3600  # a signed-in browser signs in again after this (the cookie is the token's HMAC)


def build_app(settings: Settings, reader: Reader) -> Starlette:
    """Return the application over one Reader (its cache is shared by every route)."""
    token = settings.guard_web_token.get_secret_value() if settings.guard_web_token else None
    refresh = int(settings.web_refresh_seconds)

    def page(request: Request) -> Response:
        return HTMLResponse(status_page(reader.full(), refresh), headers=NO_STORE)

    def metrics(request: Request) -> Response:
        return Response(render(reader.light), media_type=PROMETHEUS_TEXT, headers=NO_STORE)

    def status(request: Request) -> Response:
        return JSONResponse(reader.full().to_json(), headers=NO_STORE)

    def healthz(request: Request) -> Response:
        up = reader.light().up
        return PlainTextResponse(
            "ok\n" if up else "database unreachable\n", 200 if up else 503, headers=NO_STORE
        )

    async def login_form(request: Request) -> Response:
        return RedirectResponse("/", 303) if token is None else HTMLResponse(login_page(), headers=NO_STORE)

    async def login(request: Request) -> Response:
        if token is None:
            return RedirectResponse("/", 303)
        body = await _bounded_body(request)
        offered = parse_qs(body.decode("utf-8", "replace")).get("token", [""])[0]
        if not access.token_matches(token, offered):
            return HTMLResponse(login_page("wrong token"), 401, headers=NO_STORE)
        response = RedirectResponse("/", 303)
        response.set_cookie(
            access.COOKIE,
            access.session_value(token),
            max_age=SESSION_SECONDS,
            httponly=True,
            secure=request.url.scheme == "https",
            samesite="strict",
            path="/",
        )
        return response

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        yield
        reader.close()

    middleware = [Middleware(access.TokenGate, token=token)] if token else []
    routes = [
        Route("/", page),
        Route("/metrics", metrics),
        Route("/api/status", status),
        Route("/healthz", healthz),
        Route("/login", login_form, methods=["GET"]),
        Route("/login", login, methods=["POST"]),
    ]
    return Starlette(routes=routes, middleware=middleware, lifespan=lifespan)


async def _bounded_body(request: Request) -> bytes:
    """Read a small form body; a larger one is cut (a token is never that long)."""
    body = b""
    async for chunk in request.stream():
        body += chunk
        if len(body) > MAX_FORM_BYTES:
            break
    return body[:MAX_FORM_BYTES]
