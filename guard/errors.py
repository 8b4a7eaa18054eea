"""The project's one exception family; each carries the exit code the CLI returns for it."""

from __future__ import annotations

EXIT_OK = 0
EXIT_FINDINGS = 1
EXIT_USAGE = 2
EXIT_UNREACHABLE = 3


class GuardError(Exception):
    """Base of every error a user can cause; the CLI prints its message as one line."""

    exit_code = EXIT_USAGE


class ConfigError(GuardError):
    """Bad configuration: unknown key, bad rule, missing setting."""

    exit_code = EXIT_USAGE


class UsageError(GuardError):
    """Bad command-line input."""

    exit_code = EXIT_USAGE


class UnreachableError(GuardError):
    """The database, a folder or another service cannot be reached."""

    exit_code = EXIT_UNREACHABLE
