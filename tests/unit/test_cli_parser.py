"""The command line loads only the module of the command being run, and parses as before."""

from __future__ import annotations

import pytest

from guard.cli.main import build_parser, command_word


@pytest.mark.parametrize(
    ("argv", "word"),
    [
        (["check", "files"], "check"),
        (["--config", "check", "backup"], "backup"),  # a file named 'check'
        (["--config=guard.toml", "predeploy"], "predeploy"),
        (["--conf", "x.toml", "demo"], "demo"),  # argparse takes a prefix of --config
        (["--version"], None),
        (["-h"], None),
        (["--", "check"], "check"),
        ([], None),
    ],
)
def test_the_command_word_is_what_argparse_takes_for_the_command(argv: list[str], word: str | None) -> None:
    assert command_word(argv) == word


def test_a_check_parses_without_the_other_commands_and_they_parse_when_named() -> None:
    args = build_parser(["check", "files", "--json"]).parse_args(["check", "files", "--json"])
    assert (args.command, args.name, args.json) == ("check", "files", True)
    argv = ["--config", "check", "backup", "list"]
    args = build_parser(argv).parse_args(argv)
    assert args.command == "backup" and args.config.name == "check"


def test_without_a_command_every_command_is_listed() -> None:
    helped = build_parser([]).format_help()
    for command in ("check", "predeploy", "backup", "repair", "serve"):
        assert command in helped
