"""Fixtures every test folder may use."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from mmalign.cli.main import main


@pytest.fixture
def cli_run(capsys) -> Callable[[list[str]], tuple[int, str, str]]:
    """``cli_run(argv)`` runs ``mmalign ARGV`` in this process: (exit code, stdout, stderr)."""

    def run(argv: list[str]) -> tuple[int, str, str]:
        try:
            main(argv)
            code = 0
        except SystemExit as exit_:
            code = int(exit_.code or 0)
        captured = capsys.readouterr()
        return code, captured.out, captured.err

    return run
