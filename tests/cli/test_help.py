"""``--help`` shows flags without a value type (typer 0.29's rich help prints ``--debug <bool>`` otherwise)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import typer

from mmalign.cli.help import hide_flag_types
from mmalign.cli.main import app, main


def help_text(capsys: pytest.CaptureFixture, *args: str) -> str:
    with pytest.raises(SystemExit) as exit_info:
        main([*args, "--help"])
    assert not exit_info.value.code
    return capsys.readouterr().out


def command_paths(command: typer.core.TyperGroup, path: tuple[str, ...] = ()) -> Iterator[tuple[str, ...]]:
    yield path
    for name, sub in (getattr(command, "commands", None) or {}).items():
        yield from command_paths(sub, (*path, name))


def test_root_help_shows_debug_without_a_type(capsys):
    out = help_text(capsys)
    assert "--debug" in out and "--help" in out
    assert "<bool>" not in out
    assert "<int>" in out  # --threads takes a value: its type stays


def test_a_subcommand_help_shows_flags_without_a_type(capsys):
    out = help_text(capsys, "train", "pref")
    assert "--show-options" in out and "--no-progress" in out
    assert "<bool>" not in out
    assert "<path>" in out  # --config takes a value


def test_no_command_shows_a_type_beside_a_flag(capsys):
    command = typer.main.get_command(app)
    hide_flag_types(command)
    paths = list(command_paths(command))
    assert ("train", "pref") in paths and ("data", "build") in paths
    for path in paths:
        assert "<bool>" not in help_text(capsys, *path), path
