"""`guard serve`: the status page, Prometheus metrics, /api/status and /healthz, over uvicorn."""

from __future__ import annotations

import argparse

from guard.config.settings import Settings
from guard.errors import EXIT_OK


def register(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add serve to the guard command."""
    from guard.web import DEFAULT_HOST, DEFAULT_PORT

    serve = commands.add_parser(
        "serve",
        help="serve the status page and Prometheus metrics",
        description="Serve, until stopped: / (a status page: what is open, the weekly numbers, open "
        "findings over the last weeks, backups and drills, the continuous path's health; it refreshes "
        "itself), /metrics (Prometheus text format, incident_guard_*), /api/status (the page's numbers "
        "as JSON) and /healthz (200 while the database answers, 503 when not). The numbers are read "
        "from guard's own tables, the broker's queue lengths and BACKUP_DIR, at most once per "
        "WEB_CACHE_SECONDS (5), never from the app's tables. Bound to 127.0.0.1 unless --host says "
        "otherwise; any other address needs GUARD_WEB_TOKEN, and with it every page but /healthz asks "
        "for the token (Authorization: Bearer TOKEN, or the page's sign-in form, which sets an "
        "HttpOnly cookie).",
        epilog="examples:\n  guard serve\n"
        "  GUARD_WEB_TOKEN=$(openssl rand -hex 24) guard serve --host 0.0.0.0 --port 8077\n"
        "  curl -s localhost:8077/metrics | grep incident_guard_findings_open\n\n"
        "exit codes: 0 stopped, 2 usage or configuration (an address beyond loopback without "
        "GUARD_WEB_TOKEN), 3 the port cannot be bound",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    serve.add_argument("--host", default=DEFAULT_HOST, help=f"address to listen on (default {DEFAULT_HOST})")
    serve.add_argument(
        "--port",
        type=_port,
        default=DEFAULT_PORT,
        help=f"port to listen on (default {DEFAULT_PORT}; 0: any free)",
    )
    serve.set_defaults(handler=run_serve)


def _port(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a port number: {text!r}") from None
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"not a port number: {value}")
    return value


def run_serve(args: argparse.Namespace, settings: Settings) -> int:
    from guard.web.serving import serve

    serve(settings, args.host, args.port)
    return EXIT_OK
