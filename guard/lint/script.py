"""A migration file as PostgreSQL's own parser (pglast) reads it: statements and `guard:allow` comments."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pglast
from pglast import parser

# A comment naming rule ids after this word silences them for the whole file:
#   -- guard:allow drop_column, rename_column: v2.3 no longer reads them
# (ids are separated by spaces or commas; words that are not rule ids are free text, a reason)
ALLOW = "guard:allow"
SHOWN = 120  # characters of a statement quoted in a finding's message


class ScriptError(Exception):
    """The parser refused the file; the message is the parser's, with the line."""


@dataclass(frozen=True)
class Statement:
    """One top-level statement: its parse tree, its text, and the line it starts on."""

    node: Any
    text: str
    line: int

    @property
    def shown(self) -> str:
        """Return the statement on one line, cut to SHOWN characters, for a message."""
        flat = " ".join(self.text.split())
        return flat if len(flat) <= SHOWN else flat[: SHOWN - 1] + "…"


@dataclass(frozen=True)
class Script:
    """A parsed migration file."""

    statements: tuple[Statement, ...]
    allowed: frozenset[str]  # every word of the `guard:allow` comments; the rule ids among them count


def parse_script(text: str) -> Script:
    """Parse a migration file into its statements and the rule ids its comments allow."""
    try:
        raws = pglast.parse_sql(text)
        tokens = parser.scan(text)
    except pglast.parser.ParseError as exc:
        message, *rest = exc.args
        where = f" (line {_line(text, rest[0])})" if rest and isinstance(rest[0], int) else ""
        raise ScriptError(f"{message}{where}") from None
    statements = []
    for raw in raws:
        # pglast reports offsets in characters of the str; a length of 0 means "to the end".
        begin = raw.stmt_location or 0
        end = begin + raw.stmt_len if raw.stmt_len else len(text)
        body = text[begin:end]
        start = begin + len(body) - len(body.lstrip())
        statements.append(Statement(raw.stmt, body.strip(), _line(text, start)))
    comments = [text[t.start : t.end + 1] for t in tokens if t.name in ("SQL_COMMENT", "C_COMMENT")]
    return Script(tuple(statements), frozenset(word for c in comments for word in _allowed(c)))


def _allowed(comment: str) -> list[str]:
    """Return the words after `guard:allow` in one comment (commas separate as well as spaces)."""
    body = comment.removeprefix("--").removeprefix("/*").removesuffix("*/").strip()
    if not body.startswith(ALLOW):
        return []
    return [word.strip(":;.") for word in body[len(ALLOW) :].replace(",", " ").split()]


def _line(text: str, offset: int) -> int:
    return text.count("\n", 0, offset) + 1
