"""Run the status site with uvicorn: refuse an open address without a token, bind, serve until stopped."""

from __future__ import annotations

import socket
import sys

from guard.config.settings import Settings
from guard.errors import UnreachableError
from guard.web.access import require_token_for


def bind(host: str, port: int) -> socket.socket:
    """Bind the listening socket here, so a port in use is one line (exit 3), not uvicorn's traceback."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host.strip("[]"), port))
    except OSError as exc:
        sock.close()
        raise UnreachableError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None
    sock.listen(128)
    sock.set_inheritable(True)
    return sock


def address(host: str, port: int) -> str:
    shown = f"[{host}]" if ":" in host and not host.startswith("[") else host
    return f"http://{shown}:{port}/"


def serve(settings: Settings, host: str, port: int) -> None:
    """Serve the page, /metrics, /api/status and /healthz until SIGINT or SIGTERM."""
    import uvicorn

    from guard.web.reader import Reader
    from guard.web.site import build_app

    token = settings.guard_web_token.get_secret_value() if settings.guard_web_token else None
    require_token_for(host, token)
    url = settings.require_database_url()
    sock = bind(host, port)
    reader = Reader(settings, url)
    app = build_app(settings, reader)
    config = uvicorn.Config(app, log_level="warning", access_log=False, lifespan="on")
    bound_port = sock.getsockname()[1]
    sys.stderr.write(
        f"guard serve: {address(host, bound_port)} (metrics at /metrics"
        f"{', token required' if token else ''}; Ctrl-C stops)\n"
    )
    sys.stderr.flush()
    uvicorn.Server(config).run(sockets=[sock])
