"""`guard report`: the five weekly numbers against their targets, in a table, JSON or an HTML file."""

from __future__ import annotations

import argparse
import json
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psycopg
from rich.text import Text

from guard.cli.bars import terminal_progress
from guard.cli.tables import console_for, new_table, print_rstripped
from guard.config.settings import Settings
from guard.continuous.capture import VERSION, installed_version
from guard.db.database import Database
from guard.errors import EXIT_FINDINGS, EXIT_OK, ConfigError, UsageError
from guard.fs.paths import printable
from guard.history import accesslog, weekly_html
from guard.history.accesslog import AccessTally
from guard.history.weekly import (
    LABELS,
    MISSED,
    NAMES,
    NO_DATA,
    TARGETS,
    Week,
    expects_daily_backups,
    weekly_numbers,
)

MAX_WEEKS = 520
EXIT_CODES = (
    "exit codes: 0 this week meets every target it has data for, 1 this week misses a target, "
    "2 bad input (a bad --weeks or --ad-route, an access log that cannot be read, guard not installed), "
    "3 the database cannot be reached"
)


def register(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add report to the guard command."""
    report = commands.add_parser(
        "report",
        help="the five weekly numbers against their targets",
        description="Show, per ISO week (Monday 00:00 UTC), the write-up's five numbers against their "
        "targets: schema drift incidents (0), 404s on ad pages (< 0.1%), missing image ratio (< 0.5%), "
        "backup success rate (100%) and pre-deploy pass rate (> 95%), from the history guard keeps. A "
        "week without the rows a number needs says 'no data', never a pass. 404s are the share of ads "
        "whose /ad/<slug> cannot resolve, or, with --access-log, the share of real requests to the ad "
        "route that got a 404.",
        epilog="examples:\n  guard report\n  guard report --weeks 12 --html weekly.html\n"
        "  guard report --access-log '/var/log/nginx/access.log*' --json\n\n" + EXIT_CODES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    report.add_argument(
        "--weeks", type=_weeks, default=8, metavar="N", help="weeks to show, this one included (default 8)"
    )
    report.add_argument("--json", action="store_true", help="print one JSON object")
    report.add_argument(
        "--html", type=Path, metavar="FILE", help="also write a self-contained HTML file (a chart; mail it)"
    )
    report.add_argument(
        "--access-log",
        action="extend",
        nargs="+",
        metavar="FILE",
        help="the app's access logs (nginx/Apache combined format; globs of rotated files, .gz read too): "
        "count real requests to the ad route and their 404s (default: $ACCESS_LOG, else the slugs)",
    )
    report.add_argument(
        "--ad-route",
        metavar="REGEX",
        help="the ad page route, a regular expression over a request's path (default ^/ad/[^/]+/?$, "
        "or ad_route in the config)",
    )
    report.set_defaults(handler=run_report)


def _weeks(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None
    if not 1 <= value <= MAX_WEEKS:
        raise argparse.ArgumentTypeError(f"must be from 1 to {MAX_WEEKS}: {value}")
    return value


def run_report(args: argparse.Namespace, settings: Settings) -> int:
    if args.ad_route is not None:
        settings = settings.replace(ad_route=args.ad_route)
    patterns = args.access_log or ([settings.access_log] if settings.access_log else [])
    access = None
    if patterns:
        bars = terminal_progress()
        access = accesslog.tally(accesslog.expand(patterns), settings.ad_route, bars)
    with Database(settings.require_database_url(), application_name="guard-report") as db:
        version = installed_version(db)
        if version is None:
            raise ConfigError("guard is not installed in this database: run 'guard install' first")
        try:
            weeks = weekly_numbers(
                db, args.weeks, access=access, daily_backups=expects_daily_backups(settings)
            )
        except psycopg.errors.UndefinedTable:
            raise ConfigError(
                f"guard schema version {version} keeps no history: run 'guard install' (version {VERSION})"
            ) from None
    generated = datetime.now(UTC)
    if args.html is not None:
        _write(args.html, weekly_html.render(weeks, generated_at=generated, access=access))
    if args.json:
        sys.stdout.write(json.dumps(document(weeks, access, generated), ensure_ascii=False) + "\n")
    else:
        write_table(weeks, access)
    return EXIT_FINDINGS if weeks[-1].misses else EXIT_OK


def _write(path: Path, text: str) -> None:
    try:
        path.write_text(text, encoding="utf-8")
    except OSError as exc:
        raise UsageError(f"--html {printable(str(path))}: cannot write: {exc.strerror or exc}") from None


def document(weeks: list[Week], access: AccessTally | None, generated: datetime) -> dict[str, Any]:
    this = weeks[-1]
    return {
        "ok": not this.misses,
        "generated_at": generated.isoformat(),
        "ad_404_method": "access_log" if access is not None else "slugs",
        "access_log": access.to_json() if access is not None else None,
        "this_week": {"week": this.label, "misses": this.misses},
        "weeks": [w.to_json() for w in weeks],
    }


def write_table(weeks: list[Week], access: AccessTally | None) -> None:
    console = console_for(sys.stdout)
    headers = ["WEEK", *(f"{LABELS[n].upper()} ({TARGETS[n]})" for n in NAMES)]
    table = new_table(*headers, right=headers[1:])
    for week in weeks:
        cells: list[Text | str] = [week.label + ("" if week.complete else " (so far)")]
        for name in NAMES:
            number = week.number(name)
            if number.status == MISSED:
                cells.append(Text(f"{number.shown()} MISSED", style="bold red"))
            elif number.status == NO_DATA:
                cells.append(Text(number.shown(), style="dim"))
            else:
                cells.append(Text(number.shown(), style="green"))
        table.add_row(*cells)
    print_rstripped(console, table)
    if access is None:
        console.print(
            "404s on ad pages: measured from the slugs (ads whose /ad/<slug> cannot resolve, daily snapshots)"
        )
    else:
        console.print(
            f"404s on ad pages: measured from the access log: {access.ad_requests:,} ad requests in "
            f"{access.lines:,} lines of {len(access.files)} file(s); "
            f"{access.malformed:,} malformed lines skipped"
        )
    this = weeks[-1]
    if this.misses:
        missed = ", ".join(LABELS[n] for n in this.misses)
        console.print(f"this week ({this.label}) misses {missed}")
    else:
        console.print(f"this week ({this.label}) meets every target it has data for")
