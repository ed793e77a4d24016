"""`agentbus --help` and every subcommand's help read like a man page's synopsis: each
option with its default, and an example to copy."""

from __future__ import annotations

import argparse
import re

import pytest

from agent.main import SERVICES, SUBCOMMANDS, build_parser
from core import registry

#: every subcommand ``agentbus --help`` lists
COMMANDS = [n for n in SUBCOMMANDS if n != SERVICES] + [
    s.name for s in registry.SERVICES if s.name not in SUBCOMMANDS
]


def _help(argv: list[str], capsys: pytest.CaptureFixture[str]) -> str:
    with pytest.raises(SystemExit) as exit_:
        build_parser().parse_args([*argv, "--help"])
    assert exit_.value.code == 0
    return capsys.readouterr().out


def _check(text: str, command: str) -> None:
    assert re.search(r"^examples?:\n  agentbus ", text, re.M) or re.search(
        rf"^examples?:\n(  .*\n)*  .*agentbus {re.escape(command.split()[0])}", text, re.M
    ), f"no example in the help of {command}:\n{text}"
    assert "default" in text, f"no default in the help of {command}:\n{text}"


@pytest.mark.parametrize(
    "command",
    [c for c in COMMANDS],
)
def test_each_subcommand_shows_defaults_and_an_example(
    command: str, capsys: pytest.CaptureFixture[str]
) -> None:
    _check(_help([command], capsys), command)


@pytest.mark.parametrize(
    "argv",
    [
        ["config", "show"],
        ["quarantine", "list"],
        ["quarantine", "retry"],
        ["server", "events"],
        ["server", "command"],
        ["server", "stop"],
        ["server", "fault"],
    ],
)
def test_actions_show_an_example(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    text = _help(argv, capsys)
    assert re.search(r"^examples?:\n  agentbus ", text, re.M), text


def test_an_option_shows_its_default(capsys: pytest.CaptureFixture[str]) -> None:
    assert re.search(
        r"--timeout SECONDS\s+seconds to wait .*\(default: 10\.0\)", _help(["send"], capsys)
    )
    text = _help(["server"], capsys)
    assert "--port PORT" in text and "(default: 27000)" in text


def test_diagnostics_help() -> None:
    from agent.cli import diagnostics

    parser = argparse.ArgumentParser(prog="agentbus diagnostics")
    diagnostics.add_arguments(parser)
    text = parser.format_help()
    _check(text, "diagnostics")
    assert "(default 200; at most 500)" in " ".join(text.split())


def test_top_level_help_has_an_example(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        build_parser().parse_args(["--help"])
    text = capsys.readouterr().out
    assert re.search(r"^examples?:\n  agentbus ", text, re.M), text
