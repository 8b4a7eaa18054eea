"""The `guard` command: parse arguments, load settings, run checks, print, and exit with a documented code."""

from __future__ import annotations

import argparse
import importlib
import json
import os
import signal
import sys
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path
from types import FrameType

import psycopg

from guard import __version__
from guard.checks import CheckContext, registry, run_checks
from guard.cli.bars import StepBars, terminal_progress
from guard.config.redact import redact
from guard.config.settings import Settings, load_settings
from guard.errors import EXIT_UNREACHABLE, EXIT_USAGE, GuardError
from guard.findings.finding import CheckResult
from guard.findings.report import as_json, exit_code
from guard.fs.gcpause import no_cyclic_gc
from guard.plural import plural

EXIT_CODES = """exit codes:
  0  nothing found
  1  findings
  2  usage or configuration error
  3  the database or a folder cannot be reached"""

DEFAULT_SERVER_URL = "postgresql://postgres@127.0.0.1:5432/postgres"

# Modules that add their own subcommands: each has `register(commands)`, which adds parsers and sets
# `handler=function(args, settings) -> exit code` on them with set_defaults.
COMMAND_MODULES: tuple[str, ...] = (
    "guard.cli.continuous",
    "guard.cli.status",
    "guard.cli.requeue",
    "guard.cli.sweep",
    "guard.cli.schema",
    "guard.cli.backup",
    "guard.cli.repair",
    "guard.cli.constraints",
    "guard.cli.weekly_report",
    "guard.cli.serve",
)
# The commands defined here. For these the modules above are not loaded: their parsers import what
# their handlers need (pglast, tenacity, the backup store, ...), about a fifth of `guard check`'s start.
OWN_COMMANDS = ("check", "predeploy", "demo")


def build_parser(argv: Sequence[str] | None = None) -> argparse.ArgumentParser:
    """Build the command line; only the command being run needs its module loaded."""
    parser = argparse.ArgumentParser(
        prog="guard",
        description="Find schema drift, broken rows and database/uploads mismatches before users do.",
        epilog="settings come from GUARD_CONFIG (a TOML file) and the environment "
        "(DATABASE_URL, UPLOADS_ROOT, ...); see README.md.\n\n" + EXIT_CODES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--config", type=Path, help="TOML settings file (default: $GUARD_CONFIG)")
    parser.add_argument("--version", action="version", version=f"incident-guard {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    _add_check(commands)
    _add_predeploy(commands)
    _add_demo(commands)
    if command_word(sys.argv[1:] if argv is None else argv) not in OWN_COMMANDS:
        for module in COMMAND_MODULES:
            importlib.import_module(module).register(commands)
    return parser


def command_word(argv: Sequence[str]) -> str | None:
    """Return the subcommand argparse will see, or None when it cannot tell (then all are loaded).

    Before the command only --config (or a prefix argparse accepts for it) takes a value.
    """
    words = iter(argv)
    for word in words:
        if word == "--":
            return next(words, None)
        if word.startswith("-"):
            if len(word) > 2 and "--config".startswith(word):
                next(words, None)  # its value, whatever it looks like
            continue
        return word
    return None


def _output_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true", help="print exactly one JSON object on stdout")
    parser.add_argument(
        "--limit",
        type=_non_negative,
        default=20,
        metavar="N",
        help="examples kept per kind of finding (default 20); counts are always exact",
    )
    parser.add_argument(
        "--orphan-grace",
        type=_non_negative,
        metavar="SECONDS",
        help="an unreferenced file younger than this is not an orphan "
        "(default 600, or orphan_grace in the config)",
    )


def _add_check(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    names = [*registry(), "all"]
    check = commands.add_parser(
        "check",
        help="run one check or all of them",
        description="Run a check: health (database and uploads root reachable), integrity (row "
        "rules), files (rows <-> uploads), migrations (Prisma history, and a lint of the pending "
        "migrations: what they would lock or break), drift (live schema vs the "
        "migrations), or all of them in that order. migrations and drift need MIGRATIONS_DIR.",
        epilog="examples:\n  guard check all\n  guard check files --json --limit 5\n\n" + EXIT_CODES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    check.add_argument("name", nargs="?", default="all", choices=names, help="default: all")
    _output_flags(check)


def _add_predeploy(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    gate = commands.add_parser(
        "predeploy",
        help="every check, then your commands: one verdict for CI",
        description="Run every check (or those --only names, or all but --skip), then each --run "
        "command in order; fail if anything fails. Findings acknowledged with 'guard findings ack' "
        "(and not expired) do not fail it: they are listed as acknowledged, with who, why and until.",
        epilog="examples:\n  guard predeploy --run 'npm test' --json\n  guard predeploy --skip drift files\n"
        "  guard predeploy --only integrity migrations\n\n" + EXIT_CODES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    which = gate.add_mutually_exclusive_group()
    checks = list(registry())
    which.add_argument(
        "--only", nargs="+", choices=checks, metavar="CHECK", help=f"run only these ({', '.join(checks)})"
    )
    which.add_argument(
        "--skip", nargs="+", choices=checks, default=[], metavar="CHECK", help="run all checks but these"
    )
    gate.add_argument(
        "--run",
        action="append",
        default=[],
        metavar="CMD",
        help="a shell command that must exit 0 (repeatable); its output goes to stderr",
    )
    _output_flags(gate)


def _add_demo(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    demo = commands.add_parser(
        "demo",
        help="create a demo world with planted incidents",
        description="Create a database with the thulobazaar migrations applied and recorded, ads "
        "with image rows and real files, and incidents of every kind planted at --bad. "
        "Prints the planted counts (the ground truth) as JSON.",
        epilog="example:\n  guard demo --ads 1000 --bad 0.02 --db guard_demo --uploads var/demo",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    demo.add_argument("--ads", type=int, default=1000, help="number of ads (default 1000)")
    demo.add_argument(
        "--bad",
        type=float,
        default=0.01,
        metavar="RATE",
        help="share of each kind of incident to plant (default 0.01)",
    )
    demo.add_argument(
        "--db",
        default="guard_demo",
        metavar="NAME",
        help="database to (re)create (default guard_demo)",
    )
    demo.add_argument(
        "--uploads",
        type=Path,
        default=Path("var/demo"),
        metavar="DIR",
        help="uploads root to (re)create (default var/demo)",
    )
    demo.add_argument("--seed", type=int, default=1, help="random seed (default 1)")
    demo.add_argument(
        "--server-url",
        default=os.environ.get("GUARD_SERVER_URL", DEFAULT_SERVER_URL),
        help=f"any database on the target server (default $GUARD_SERVER_URL or {DEFAULT_SERVER_URL})",
    )


def _non_negative(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be 0 or more: {value}")
    return value


class Terminated(SystemExit):
    """Raised by the `guard` command's SIGTERM handler, so every `finally` runs before the exit."""


def main(argv: Sequence[str] | None = None) -> int:
    with no_cyclic_gc():  # the command's module and its imports: nothing to collect yet
        args = build_parser(argv).parse_args(argv)
    with _terminate_raises():
        return _run(args)


def _run(args: argparse.Namespace) -> int:
    try:
        return dispatch(args)
    except Terminated:
        sys.stderr.write("guard: terminated\n")
        return 128 + signal.SIGTERM
    except GuardError as exc:
        return fail(str(exc), exc.exit_code, json_mode=getattr(args, "json", False))
    except psycopg.Error as exc:
        detail = redact(str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__)
        # The server failing us (timeout, cancel, lost connection) is unreachable, not misuse.
        code = EXIT_UNREACHABLE if isinstance(exc, psycopg.OperationalError) else EXIT_USAGE
        return fail(f"database error: {detail}", code, json_mode=getattr(args, "json", False))
    except KeyboardInterrupt:
        sys.stderr.write("guard: interrupted\n")
        return 130
    except BrokenPipeError:
        return 0


@contextmanager
def _terminate_raises() -> Iterator[None]:
    """Turn the first SIGTERM into an exception, so clean-up in `finally` (a shadow's drop) runs.

    Only the command installs this, never the library: a Celery worker or any other host process
    keeps its own handlers. The work to interrupt is often one long blocking query, and unwinding
    is the only way to reach the clean-up in time. A second SIGTERM kills outright.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGTERM, _raise_terminated)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def _raise_terminated(signum: int, frame: FrameType | None) -> None:
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    raise Terminated(128 + signum)


def fail(message: str, code: int, *, json_mode: bool) -> int:
    """Say what went wrong in one line; in --json mode also keep stdout one JSON object."""
    sys.stderr.write(f"guard: {message}\n")
    if json_mode:
        sys.stdout.write(json.dumps({"ok": False, "error": message, "exit_code": code}) + "\n")
    return code


def dispatch(args: argparse.Namespace) -> int:
    if args.command == "demo":
        return run_demo(args)
    if getattr(args, "handler", None) is not None:
        code: int = args.handler(args, load_settings(path=args.config))
        return code
    settings = _settings_for(args)
    context = CheckContext(settings, args.limit, terminal_progress())
    if args.command == "check":
        names = list(registry()) if args.name == "all" else [args.name]
        return report(run_checks(context, names), args.json)
    chosen = [n for n in registry() if n in (args.only or registry()) and n not in args.skip]
    return run_predeploy(context, chosen, args.run, args.json)


def _settings_for(args: argparse.Namespace) -> Settings:
    settings = load_settings(path=args.config)
    if args.orphan_grace is not None:
        settings = settings.replace(orphan_grace=args.orphan_grace)
    return settings


def report(results: Sequence[CheckResult], json_mode: bool, extra: dict[str, object] | None = None) -> int:
    """Say each error once on stderr, then print the results (no table when every check errored)."""
    failed: dict[str, list[str]] = {}
    for result in results:
        if result.error is not None:
            failed.setdefault(result.error, []).append(result.name)
    for error, names in failed.items():
        sys.stderr.write(f"guard: {', '.join(names)}: {error}\n")
    if json_mode:
        sys.stdout.write(as_json(results, extra) + "\n")
    elif not all(r.error is not None for r in results):
        from guard.cli.tables import write_human  # rich: only for tables, not for --json

        write_human(results, sys.stdout, show_errors=False)
    return exit_code(results)


def run_predeploy(
    context: CheckContext, names: Sequence[str], commands: Sequence[str], json_mode: bool
) -> int:
    from guard.cli.predeploy import acknowledgements, run_command, write_acknowledged
    from guard.findings.acks import capped, without_acknowledged
    from guard.history.events import record_predeploy

    acks = acknowledgements(context.settings)
    # With acknowledgements, every finding is needed to match them; the listing is capped afterwards.
    full = replace(context, limit=None, deploying=True) if acks else replace(context, deploying=True)
    results, known = without_acknowledged(run_checks(full, names), acks)
    results = [capped(r, context.limit) for r in results]
    results.extend(run_command(command) for command in commands)
    skipped = [n for n in registry() if n not in names]
    extra = {"skipped": skipped, "acknowledged": [k.to_json() for k in known]}
    code = report(results, json_mode, extra)  # the verdict: what is neither acknowledged nor skipped
    record_predeploy(context.settings, results, names, code)
    if not json_mode:
        write_acknowledged(known, skipped, sys.stdout)
        # Warnings (a lint rule set to "warn") are shown above but never fail the gate.
        warnings = sum(r.warnings for r in results)
        passed = f"PASSED with {plural(warnings, 'warning')}" if warnings else "PASSED"
        verdict = f"{passed}: safe to deploy" if code == 0 else "FAILED: fix the above before deploying"
        sys.stdout.write(f"\npredeploy {verdict}\n")
    return code


def run_demo(args: argparse.Namespace) -> int:
    from guard.demo.world import MIGRATIONS, build_world

    bars = StepBars(terminal_progress())
    try:
        truth = build_world(
            args.server_url,
            args.db,
            args.uploads.resolve(),
            args.ads,
            args.bad,
            seed=args.seed,
            progress=bars,
        )
    finally:
        bars.close()
    sys.stdout.write(json.dumps(truth, indent=2, ensure_ascii=False) + "\n")
    sys.stderr.write(
        f"guard: demo world ready; to check it:\n"
        f"  export DATABASE_URL='{truth['database_url']}' UPLOADS_ROOT='{truth['uploads_root']}'"
        f" MIGRATIONS_DIR='{MIGRATIONS}'\n"
        f"  guard check all\n"
    )
    return 0
