"""Fixtures every test folder may use.

``MMALIGN_THREADS`` defaults to 1 for the whole session: the CLI run in-process sets torch's thread count
(:mod:`mmalign.threads`), and tiny models gain nothing from threads while test workers share 2 cores.
"""

from __future__ import annotations

import importlib.util
import os
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import torch

from mmalign.cli.main import main

os.environ.setdefault("MMALIGN_THREADS", "1")

JUDGE_SERVER = "mmalign_tests_judge_server"
"""The judge tests' fake server (``tests/judge/conftest.py``) as an importable module: test modules cannot import a
conftest, so it is loaded here once, before any test module, and they ``import mmalign_tests_judge_server``."""
if JUDGE_SERVER not in sys.modules:
    _spec = importlib.util.spec_from_file_location(JUDGE_SERVER, Path(__file__).parent / "judge" / "conftest.py")
    sys.modules[JUDGE_SERVER] = importlib.util.module_from_spec(_spec)  # type: ignore[arg-type]
    _spec.loader.exec_module(sys.modules[JUDGE_SERVER])  # type: ignore[union-attr]


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


@pytest.fixture(scope="module")
def one_thread() -> Iterator[None]:
    """One torch thread for a module (``pytestmark = pytest.mark.usefixtures("one_thread")``): tiny models gain
    nothing from threads, and lose a lot when test workers share 2 cores. Restored after the module."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="session")
def tiny_dir(tmp_path_factory: pytest.TempPathFactory) -> Callable[[str], Path]:
    """``tiny_dir(preset)``: the directory of a tiny model, built on first use and shared by the session (tests
    only read it)."""
    from mmalign.models.tiny import save_tiny, spec_for

    root = tmp_path_factory.mktemp("tiny-models")
    built: dict[str, Path] = {}

    def get(preset: str) -> Path:
        if preset not in built:
            built[preset] = save_tiny(spec_for(preset), root / preset, preset=preset)
        return built[preset]

    return get
